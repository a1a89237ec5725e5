"""The one interface every continual-learning method implements.

A training loop (the built-in :func:`anpyc.train.fit` or your own) calls, per task::

    method.before_task(model, task)
    for x, y, t in batches(method.training_data(task, seen_tasks)):
        loss = task_loss(model, x, y, t) + method.penalty(model, x, t)
        optimizer.zero_grad(); loss.backward()
        method.before_step(model)            # gate / scale gradients
        optimizer.step()
        method.after_step(model, optimizer)  # undo any update of frozen weights
    method.after_task(model, task, retrain)  # importance, pruning (+ retrain), anchors

and evaluates task ``j`` inside ``with method.eval_context(model, j): ...``.
Method state (importance, anchors, masks) lives in registered buffers, so ``state_dict()``
is the whole state and checkpoints are plain tensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from anpyc.data.taskdata import ConcatData, TaskData

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.models.heads import ContinualModel

Retrain = Callable[[int], Any]  # retrain(epochs): run the loop again on the current task


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """A method without hyper-parameters."""


class Method(nn.Module):
    """Base class: every hook is a no-op, so a subclass overrides only what it needs.

    Example:
        >>> from anpyc.methods import create
        >>> method = create("finetune")
        >>> method.name
        'finetune'
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type] = NoConfig
    #: True when the method needs the whole history (joint training): excluded from fair
    #: "same budget" claims and reported as an upper bound.
    upper_bound: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_cls()
        self.register_buffer("tasks_seen", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ hooks
    def before_task(self, model: ContinualModel, task: Task) -> None:
        """Called once the model has the new task's head, before any training step."""

    def training_data(self, task: Task, seen: Sequence[Task]) -> TaskData | ConcatData:
        """What to train on for ``task``; ``seen`` is every task so far, ``task`` included."""
        return task.train

    def penalty(self, model: ContinualModel, x: Tensor, t: Tensor) -> Tensor | None:
        """Extra loss added to the task loss for this batch (``None``: nothing)."""
        return None

    def before_step(self, model: ContinualModel) -> None:
        """Gradients are computed; gate or scale them before the optimizer step."""

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer has stepped; restore entries that must not move (masks the update,
        not only the gradient, so momentum and weight decay cannot leak into them)."""

    def after_task(self, model: ContinualModel, task: Task, retrain: Retrain | None = None) -> None:
        """Training on ``task`` is over: estimate importance, prune, anchor. Subclasses that
        override this must call ``super().after_task`` last (it counts the task)."""
        self.tasks_seen += 1

    @contextlib.contextmanager
    def eval_context(self, model: ContinualModel, task_id: int) -> Iterator[None]:
        """Wrap evaluation of task ``task_id`` (e.g. apply that task's weight mask)."""
        yield

    def summary(self) -> dict:
        """Extra per-run figures for ``metrics.json`` (free capacity, importance stats...)."""
        return {}

    # ------------------------------------------------------------------ state
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load state, first creating buffers that appear only after a task (importance...)."""
        own = dict(self.named_buffers())
        for key, value in state_dict.items():
            if "." not in key and key not in own and isinstance(value, Tensor):
                self.register_buffer(key, torch.empty_like(value))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return repr(self.config)


def shared_params(model: ContinualModel) -> list[tuple[str, nn.Parameter]]:
    """Named shared (body) parameters that methods score and protect."""
    return model.shared_parameters()
