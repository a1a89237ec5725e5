"""Everything your own training loop needs, in one import (``examples/own_loop.py``).

The built-in loop (:func:`anpyc.loop.train.train_stream`) is one caller of a method's hooks;
your loop can be another. It needs a stream (:func:`make_stream`, or your own data with
:func:`anpyc.data.stream_from_datasets`), a model with a head per task (:func:`build_model`,
or your own network as the shared body: ``ContinualModel(body, feature_dim)``),
a method (:func:`create`), what each hook may know (:class:`HookContext`), the loss under
each example's head (:func:`task_loss`), the parameters to optimise (:func:`trainable`),
batches of a fractional number of epochs (:func:`iterate_epochs`: a method's ``retrain(n)``
may ask for 0.25 of an epoch) and the one way anpyc evaluates (:func:`evaluate`). Without
task labels at test time, the scenario (:func:`get_scenario`) says the stream's labels, the
model's head and each task's head (``scenario.begin_task``), as the built-in loop does.

Example:
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
    >>> model, method = build_model(ModelConfig(hidden=(16,)), stream.input_shape), create("ewc")
    >>> model.add_head(stream[0].n_outputs)
    0
    >>> 0.0 <= evaluate(model, method, stream[0]) <= 1.0
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anpyc.config import ModelConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.data.batches import iterate_epochs
from anpyc.loop.train import evaluate as evaluate_split
from anpyc.loop.train import task_loss, trainable
from anpyc.methods import create
from anpyc.models import ContinualModel, build_model
from anpyc.scenario import HookContext, get_scenario

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Method

__all__ = [
    "ContinualModel",
    "HookContext",
    "ModelConfig",
    "StreamConfig",
    "build_model",
    "create",
    "evaluate",
    "get_scenario",
    "iterate_epochs",
    "make_stream",
    "task_loss",
    "trainable",
]


def evaluate(model: ContinualModel, method: Method, task: Task, task_id_known: bool = True,
             split: str = "test", device: str = "cpu") -> float:
    """Accuracy of ``model`` on ``task``'s ``split`` as anpyc measures it: in eval mode, inside
    the method's evaluation context, through ``method.predict`` (mask methods show each task
    the weights it was trained with). ``task_id_known=False``: the task id is not given (the
    domain and class scenarios), as a method without task labels at test time meets it.

    Example:
        >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
        >>> model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
        >>> model.add_head(stream[0].n_outputs)
        0
        >>> 0.0 <= evaluate(model, create("finetune"), stream[0], split="val") <= 1.0
        True
    """
    cfg = TrainConfig(device=device)
    return evaluate_split(model, method, task.split(split), cfg, task.id if task_id_known else None)
