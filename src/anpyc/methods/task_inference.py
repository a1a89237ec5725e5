"""Task inference for any method that trains a network: ``task_inference=SCORE`` (every
method accepts it among its parameters; ``RunConfig.task_inference``).

:class:`TaskInferred` wraps a method. In training the method sees the task scenario: the loop
trains in the scenario's task-aware form (:meth:`anpyc.scenario.Scenario.with_task_inference`:
one head per task), every hook gets ``ctx.scenario`` = ``task`` and the task's data with its
own labels ``0..k-1`` (in the class scenario the stream's class ids are mapped, and mapped
back at test time). After each task, once the method's own ``after_task`` ran, the task's view
is recorded by :class:`anpyc.kernels.inference.TaskInference` (the statistics of the score,
from the task's training and validation data). At test time, with the task id hidden, the
inference picks a task for every input and the input is answered by that task's view: the
method's ``eval_context(model, k)`` and its own ``predict(model, x, k)`` (for a mask method:
its mask for task ``k``), the batch grouped by view. With a task id (the loop's validation of
the task in training) that task's view answers.

The same mechanism serves every method, so a ``<method>+inference`` row differs from the
``<method>`` row by this module alone; methods that train no network (``density``, ``slda``:
models of the inputs already) refuse it.

Example:
    >>> from anpyc.methods import create
    >>> m = TaskInferred(create("ewc"), "input_density")
    >>> m.name, m.inner.name, m.inference.score
    ('ewc', 'ewc', 'input_density')
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from anpyc.data.streams import Task
from anpyc.data.taskdata import relabel
from anpyc.errors import ConfigError
from anpyc.kernels.inference import TaskInference
from anpyc.methods.base import Method, MethodWrapper
from anpyc.scenario import TASK, HookContext
from anpyc.utils import eval_mode

if TYPE_CHECKING:
    from anpyc.data.batches import SplitData
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel

_INFERENCE_SALT = 7919  # the task inference's random draws: a stream of their own, apart from the method's


class MethodViews:
    """A method's per-task views of a model, as :class:`anpyc.kernels.inference.Views`:
    task ``k``'s logits are the method's own answer inside its evaluation context for ``k``.
    The views share the body when the method keeps the base class's ``eval_context`` and
    ``predict`` (no masks, no gates of its own)."""

    def __init__(self, method: Method, model: ContinualModel) -> None:
        self.method, self.model = method, model
        kind = type(method)
        self.plain_predict = kind.predict is Method.predict  # the head on the body's features
        self.shared_body = kind.eval_context is Method.eval_context and self.plain_predict

    def logits(self, k: int, x: Tensor) -> Tensor:
        with self.method.eval_context(self.model, k):
            return self.method.predict(self.model, x, k)

    def features(self, k: int, x: Tensor) -> Tensor:
        with self.method.eval_context(self.model, k):
            return self.model.features(x)

    def features_and_logits(self, k: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both at once: one pass of the body where the method's answer is its head on them."""
        with self.method.eval_context(self.model, k):
            feats = self.model.features(x)
            if self.plain_predict:
                return feats, self.model.head_forward(feats, k)
            return feats, self.method.predict(self.model, x, k)

    def head_logits(self, k: int, features: Tensor) -> Tensor:
        return self.model.head_forward(features, k)


class TaskInferred(MethodWrapper):
    """``inner`` trained task-aware, its task inferred at test time by ``score``."""

    def __init__(self, inner: Method, score: str) -> None:
        if not inner.trains_network:
            raise ConfigError(f"task_inference: {inner.name} trains no network (it is a model of the inputs "
                              "already); task inference is for methods that train one")
        super().__init__(inner)
        self.inference = TaskInference(score)
        self.history = {"labels": {}}  # per task: the stream's label of each output of its head
        self._local: dict[int, Task] = {}  # each task with its own labels (derived, never saved)

    # ------------------------------------------------------------------ what the method sees
    def _task(self, task: Task, ctx: HookContext) -> Task:
        """``task`` as the method sees it: with its own labels ``0..k-1`` where the stream's
        are global (its head's outputs are the task's classes, in this order)."""
        self.history["labels"].setdefault(str(task.id), self._labels(task, ctx))
        if not ctx.scenario.global_labels:
            return task
        if task.id not in self._local:
            splits = {s: relabel(task.split(s), task.classes) for s in ("train", "val", "test")}
            self._local[task.id] = dataclasses.replace(task, classes=tuple(range(len(task.classes))),
                                                       n_outputs=len(task.classes), **splits)
        return self._local[task.id]

    @staticmethod
    def _labels(task: Task, ctx: HookContext) -> list[int]:
        return list(task.classes) if ctx.scenario.global_labels else list(range(task.n_outputs))

    @staticmethod
    def _ctx(ctx: HookContext) -> HookContext:
        return dataclasses.replace(ctx, scenario=TASK)

    # ------------------------------------------------------------------ hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.inner.before_task(model, self._task(task, ctx), self._ctx(ctx))

    def training_data(self, task: Task, seen: Sequence[Task],
                      ctx: HookContext) -> SplitData:
        return self.inner.training_data(self._task(task, ctx), [self._task(s, ctx) for s in seen], self._ctx(ctx))

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """The method's own end of task, then the task's view is recorded for inference."""
        local = self._task(task, ctx)
        self.inner.after_task(model, local, self._ctx(ctx), retrain)
        with eval_mode(model):
            self.inference.record(ctx.task, local.train, local.val, self._labels(task, ctx),
                                  MethodViews(self.inner, model), next(model.parameters()).device,
                                  generator=ctx.generator(_INFERENCE_SALT))

    def eval_context(self, model: ContinualModel,
                     task_id: int | None) -> contextlib.AbstractContextManager[None]:
        """Task ``task_id``'s view (``None``: :meth:`predict` enters the view of each input's task)."""
        if task_id is None:
            return contextlib.nullcontext()
        return self.inner.eval_context(model, task_id)

    def predict(self, model: ContinualModel, x: Tensor, task_id: int | None) -> Tensor:
        """Logits over the stream's labels: those of the inferred task's view for each input
        (``task_id=None``), else of task ``task_id``'s."""
        if task_id is None and self.inference.n_views:
            return self.inference.predict(x, MethodViews(self.inner, model))
        if task_id is None:  # nothing recorded yet: the newest head answers
            task_id = len(model.heads) - 1
            with self.inner.eval_context(model, task_id):
                return self._stream_logits(self.inner.predict(model, x, task_id), task_id)
        return self._stream_logits(self.inner.predict(model, x, task_id), task_id)

    def _stream_logits(self, logits: Tensor, k: int) -> Tensor:
        """Task ``k``'s own logits placed at its labels among the stream's (``-inf`` elsewhere)."""
        labels = self.history["labels"].get(str(k), list(range(logits.shape[1])))
        if labels == list(range(logits.shape[1])):
            return logits
        out = torch.full((len(logits), max(labels) + 1), float("-inf"), device=logits.device, dtype=logits.dtype)
        out[:, labels] = logits
        return out

    def inferred_tasks(self) -> Tensor | None:
        return self.inference.last_views

    def summary(self) -> dict:
        cost = {"task_inference_cost": self.inference.cost()} if self.inference.n_views else {}
        return {**self.inner.summary(), **cost}

    # ------------------------------------------------------------------ budget and state
    def decision_examples(self, task: int) -> int:
        """The method's own, and the inference's (calibration, the ``combined`` weight) after ``task``."""
        spent = self.inference.history["decision_passes"]
        return super().decision_examples(task) + (int(spent[task]) if task < len(spent) else 0)

    def extra_repr(self) -> str:
        return f"task_inference={self.inference.score!r}"
