"""Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017).

After each task the diagonal Fisher information ``F`` of the shared parameters is estimated
from per-sample gradients on that task's training data, in eval mode, and training on later
tasks adds ``lam/2 * sum_i F_i (theta_i - theta*_i)^2``. The paper draws labels from the
model's predictive distribution (Monte Carlo, ``fisher='sampled'``) and uses one penalty per
task; here the Fishers are summed into one penalty anchored at the latest parameters
(``merge='sum'``; Huszar 2018 "Note on the quadratic penalties in EWC"), which keeps memory
constant. ``fisher='true'`` takes the exact expectation over the head's classes (n_classes
times the cost), ``'empirical'`` uses the true labels. The paper's MNIST lambda is not
published per experiment; choose ``lam`` with ``anpyc tune`` on validation data.

Example:
    >>> from anpyc.methods import create
    >>> create("ewc", {"lam": 100, "fisher": "true"}).config.fisher
    'true'
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from anpyc.importance import fisher_diag
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register


@dataclasses.dataclass(frozen=True)
class EWCConfig:
    """``lam``: penalty strength; ``fisher``: sampled | true | empirical; ``fisher_samples``:
    examples per task for the estimate (per-sample gradients); ``merge``: how task Fishers
    combine (sum: EWC; decay with ``gamma``: online EWC)."""

    lam: float = 100.0
    fisher: Literal["sampled", "true", "empirical"] = "sampled"
    fisher_samples: int = 1000
    batch_size: int = 64
    merge: Literal["sum", "decay"] = "sum"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.lam < 0 or self.fisher_samples < 1 or self.batch_size < 1 or not 0 < self.gamma <= 1:
            raise ValueError("need lam >= 0, fisher_samples >= 1, batch_size >= 1, 0 < gamma <= 1")


class FisherPenalty(QuadraticPenalty):
    """Shared by EWC and online EWC: Fisher importance, quadratic penalty with scale 1/2."""

    scale = 0.5

    def estimate_importance(self, model, task, ctx) -> dict[str, torch.Tensor]:
        cfg = self.config
        device = next(model.parameters()).device
        return fisher_diag(model, task.train, kind=cfg.fisher, max_samples=cfg.fisher_samples,
                           batch_size=cfg.batch_size, generator=ctx.generator(1), device=device)


@register
class EWC(FisherPenalty):
    """EWC with a summed (merged) Fisher penalty."""

    name = "ewc"
    config_cls = EWCConfig
