"""Memory Aware Synapses (Aljundi et al., ECCV 2018).

Label-free importance: ``Omega_i = 1/N sum_k |d ||F(x_k)||_2^2 / d theta_i|``, the mean over
examples of the absolute *per-sample* gradient of the squared L2 norm of the task head's
output (eq. 4 of the paper; computed with ``torch.func`` per-sample gradients, in eval mode).
``per_sample: false`` uses the cheaper mini-batch approximation ``mean_batches |g_batch|``
(``importance.gradient_magnitude``) that some public code uses; it is not the paper's
estimator (the absolute value of a sum is not the sum of absolute values). Importances add up
across tasks (the paper accumulates them) and the penalty is
``lam * sum_i Omega_i (theta_i - theta*_i)^2`` with the paper's ``lam = 1`` as default.

Example:
    >>> from anpyc.methods import create
    >>> create("mas").config.lam
    1.0
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from anpyc.kernels.importance import gradient_magnitude, mas_importance
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext


@dataclasses.dataclass(frozen=True)
class MASConfig:
    """``lam``: penalty strength; ``samples``: examples per task for the estimate (None:
    the whole training set); ``per_sample``: the paper's estimator (true) or the batch one."""

    lam: float = 1.0
    samples: int | None = 1000
    per_sample: bool = True
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.lam < 0 or (self.samples is not None and self.samples < 1) or self.batch_size < 1:
            raise ValueError("need lam >= 0, samples >= 1, batch_size >= 1")


@register
class MAS(QuadraticPenalty):
    """Output-sensitivity importance, summed across tasks."""

    name = "mas"
    tags = frozenset({"importance-penalty", "classifier-only"})  # the importance: the heads' output norm
    config_cls = MASConfig

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.count_importance_examples(ctx.task, task.train, cfg.samples)
        if cfg.per_sample:
            omega = mas_importance(model, task.train, max_samples=cfg.samples, batch_size=cfg.batch_size)
        else:
            omega = gradient_magnitude(model, task.train, signal="output_norm", batch_size=cfg.batch_size,
                                       max_samples=cfg.samples)
            omega = {k: v / cfg.batch_size for k, v in omega.items()}  # per-example scale
        return omega
