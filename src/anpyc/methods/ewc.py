"""Elastic Weight Consolidation as published (Kirkpatrick et al., PNAS 2017).

After each task ``t`` the diagonal Fisher information ``F_t`` of the shared parameters is
estimated from per-sample gradients on that task's training data, in eval mode, and kept
together with that task's anchor ``theta*_t`` (the parameters after the task). Training on a
later task adds one penalty per earlier task::

    lam/2 * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2

so the method's memory grows with the number of tasks (two copies of the body per task;
``metrics.json`` says so under ``ewc_state_grows_with_tasks``). The summed form that keeps
one Fisher around the latest anchor (Huszar 2018, constant memory) is ``online-ewc`` (gamma 1
is exactly that form). The paper draws labels from the model's predictive distribution
(Monte Carlo, ``fisher='sampled'``); ``fisher='true'`` takes the exact expectation over the
head's classes (n_classes times the cost), ``'empirical'`` uses the true labels. The paper's
MNIST lambda is not published per experiment; choose ``lam`` with ``anpyc tune`` on
validation data.

Example:
    >>> from anpyc.methods import create
    >>> create("ewc", {"lam": 100, "fisher": "true"}).config.fisher
    'true'
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from anpyc.kernels.importance import fisher_diag
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register
from anpyc.utils import buffer_key


@dataclasses.dataclass(frozen=True)
class EWCConfig:
    """``lam``: penalty strength; ``fisher``: sampled | true | empirical; ``fisher_samples``:
    examples per task for the estimate (per-sample gradients); ``batch_size``: examples per
    estimation batch."""

    lam: float = 100.0
    fisher: Literal["sampled", "true", "empirical"] = "sampled"
    fisher_samples: int = 1000
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.lam < 0 or self.fisher_samples < 1 or self.batch_size < 1:
            raise ValueError("need lam >= 0, fisher_samples >= 1, batch_size >= 1")


class FisherPenalty(QuadraticPenalty):
    """Shared by EWC and online EWC: Fisher importance, quadratic penalty with scale 1/2."""

    scale = 0.5

    def estimate_importance(self, model, task, ctx) -> dict[str, torch.Tensor]:
        cfg = self.config
        device = next(model.parameters()).device
        self.count_importance_examples(ctx.task, task.train, cfg.fisher_samples)
        return fisher_diag(model, task.train, kind=cfg.fisher, max_samples=cfg.fisher_samples,
                           batch_size=cfg.batch_size, generator=ctx.generator(1), device=device)


@register
class EWC(FisherPenalty):
    """One Fisher and one anchor per task, one penalty per task (memory grows with tasks).

    State: per shared parameter two buffers stacked over tasks, ``ewc_fisher__<param>`` and
    ``ewc_anchor__<param>`` of shape ``(tasks so far, *param.shape)``."""

    name = "ewc"
    config_cls = EWCConfig

    def fishers(self, name: str) -> Tensor | None:
        """The Fishers of every task so far for parameter ``name``, stacked (task first)."""
        return getattr(self, buffer_key("ewc_fisher", name), None)

    def anchors(self, name: str) -> Tensor | None:
        """The anchors ``theta*_t`` of every task so far for ``name``, stacked (task first)."""
        return getattr(self, buffer_key("ewc_anchor", name), None)

    def omega(self, name: str) -> Tensor | None:
        """Total importance of ``name`` over the tasks (sum of their Fishers; diagnostics)."""
        f = self.fishers(name)
        return None if f is None else f.sum(0)

    def theta_star(self, name: str) -> Tensor | None:
        """The latest task's anchor (diagnostics; the penalty uses every task's)."""
        a = self.anchors(name)
        return None if a is None else a[-1]

    def n_tasks_kept(self) -> int:
        """How many tasks' Fishers and anchors the method holds."""
        sizes = {int(b.shape[0]) for k, b in self.named_buffers() if k.startswith("ewc_fisher__")}
        return sizes.pop() if sizes else 0

    def _append(self, prefix: str, name: str, value: Tensor) -> None:
        key = buffer_key(prefix, name)
        value = value.detach().clone().unsqueeze(0)
        old = getattr(self, key, None)
        # re-registered (a buffer's shape cannot change in place); old tasks' rows are kept as they are
        self.register_buffer(key, value if old is None else torch.cat([old, value.to(old.device, old.dtype)]))

    def penalty(self, model, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        if self.config.lam == 0:
            return None
        terms = []
        for name, p in model.shared_parameters():
            f, a = self.fishers(name), self.anchors(name)
            if f is not None and a is not None:  # sum over tasks of F_t (theta - theta*_t)^2
                terms.append((f * (p.unsqueeze(0) - a).pow(2)).sum())
        if not terms:
            return None
        return self.scale * self.config.lam * torch.stack(terms).sum()

    def after_task(self, model, task, ctx, retrain=None) -> None:
        """Estimate the task's Fisher and keep it, with the current parameters as its anchor."""
        new = self.estimate_importance(model, task, ctx)
        params = dict(model.shared_parameters())
        for name, value in new.items():
            self._append("ewc_fisher", name, value)
            self._append("ewc_anchor", name, params[name])
        self.record_importance(ctx.task, new)

    def summary(self) -> dict:
        return {**super().summary(), "ewc_state_grows_with_tasks": True, "ewc_tasks_kept": self.n_tasks_kept()}
