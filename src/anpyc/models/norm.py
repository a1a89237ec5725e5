"""Batch norm across tasks: running statistics are learnt on the first task, then frozen.

Decision (issue #5). A continual-learning method protects *parameters*; batch-norm running
statistics are buffers that every training step on a new task would silently overwrite, so
old tasks would drift even when every shared weight is frozen. Per-task BN would avoid that
but needs the task id inside the body, and mixed-task batches (joint training, replay) run
the body once for all tasks. So anpyc uses one BN per layer whose running mean and variance
are estimated while training the first task and kept fixed afterwards:

* task 0: :class:`TaskBatchNorm2d` behaves like ``nn.BatchNorm2d`` (batch statistics in
  training, running averages updated);
* from the second task on it normalises with the frozen running statistics in training as in
  evaluation, and never updates them. :meth:`ContinualModel.add_head` freezes them when the
  head of a later task is added, so the built-in runner and hand-written loops both get it;
* the affine scale and shift (``weight``, ``bias``) stay ordinary shared parameters: each
  method protects, gates or prunes them like any conv weight.

The frozen flag is a buffer, so it travels with ``state_dict()``.

Example:
    >>> import torch
    >>> bn = TaskBatchNorm2d(3)
    >>> _ = bn(torch.randn(4, 3, 2, 2))          # task 0: statistics move
    >>> freeze_bn_stats(bn)  # how many layers were frozen
    1
    >>> before = bn.running_mean.clone()
    >>> _ = bn(torch.randn(4, 3, 2, 2) + 5)      # later task: they do not
    >>> bool(torch.equal(before, bn.running_mean))
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from typing import Any


class TaskBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose running statistics can be frozen (see the module docstring)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.register_buffer("stats_frozen", torch.zeros((), dtype=torch.bool))
        self._frozen = False  # host copy of the buffer: no device sync in every forward

    def set_frozen(self, frozen: bool) -> None:
        self.stats_frozen.fill_(bool(frozen))
        self._frozen = bool(frozen)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args,
                              **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._frozen = bool(self.stats_frozen)

    def forward(self, x: Tensor) -> Tensor:
        if self._frozen:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def freeze_bn_stats(module: nn.Module, frozen: bool = True) -> int:
    """Freeze (or release) the running statistics of every :class:`TaskBatchNorm2d` in
    ``module``; returns how many layers were set."""
    n = 0
    for m in module.modules():
        if isinstance(m, TaskBatchNorm2d):
            m.set_frozen(frozen)
            n += 1
    return n
