"""Elastic Weight Consolidation as published (Kirkpatrick et al., PNAS 2017).

After each task ``t`` the diagonal Fisher information ``F_t`` of the shared parameters is
estimated on that task's training data (all of it by default, ``fisher_samples``), in eval
mode, and kept together with that task's anchor ``theta*_t`` (the parameters after the
task). Training on a later task adds one penalty per earlier task::

    lam/2 * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2

**The lambda convention** is the paper's ``lam/2``. Avalanche's ``EWCPlugin`` adds
``ewc_lambda * sum F (theta - theta*)^2`` (no 1/2): for the same Fisher, our ``lam`` is twice
its ``ewc_lambda``.

**The Fisher** (``fisher``, :func:`anpyc.kernels.importance.fisher_diag`): ``sampled`` draws each
example's label from the model's predictive distribution (the paper's Monte-Carlo estimate),
``true`` takes the exact expectation over the head's classes (n_classes times the cost),
``empirical`` uses the true labels; all three square per-sample gradients. ``empirical_batch``
squares the gradient of each mini-batch's mean loss (Avalanche's estimate): about
``1/batch_size`` of the per-sample ones once the task is learnt, so its ``lam`` lives on
another scale (and depends on ``batch_size``, the training batch size by default).

The method's memory grows with the number of tasks (two copies of the body per task;
``metrics.json`` says so under ``ewc_state_grows_with_tasks``), but the penalty is computed
as one term: ``sum_t F_t (theta - theta*_t)^2 = S (theta - m)^2 + C`` with ``S = sum_t F_t``
and ``m`` the Fisher-weighted mean of the anchors (:meth:`EWC.merged`), the same value and
gradient at the cost of one task's term. The form that keeps one summed Fisher around the
*latest* anchor (Huszar 2018) is ``online-ewc`` with gamma 1: a different penalty. The
defaults (``empirical``, ``lam=3``) are docs/benchmarks/baselines-defaults' choice on
validation: its first stage chose the Fisher on the protocols' tuning proxies, its second
``lam`` from 3, 10, 30, 100 on the full-length streams (3, the grid's lowest, won on three of
its four settings: a lower one was not tried); tune ``lam`` for a new setting with ``anpyc tune``.

Example:
    >>> from anpyc.methods import create
    >>> create("ewc", {"lam": 100, "fisher": "true"}).config.fisher
    'true'
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import Tensor

from anpyc.kernels.importance import fisher_diag, scoring_head
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register
from anpyc.utils import buffer_key

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

Fisher = Literal["sampled", "true", "empirical", "empirical_batch"]
FISHERS: tuple[str, ...] = get_args(Fisher)


@dataclasses.dataclass(frozen=True)
class EWCConfig:
    """``lam``: penalty strength, in Kirkpatrick et al.'s convention ``lam/2 * sum F (theta -
    theta*)^2`` (Avalanche writes ``lam * sum F (...)^2``: its ``ewc_lambda`` is half of ours
    for the same Fisher); ``fisher``: ``sampled`` | ``true`` | ``empirical`` (per-sample
    gradients) | ``empirical_batch`` (squared mini-batch gradients, Avalanche's; its scale
    shrinks with ``batch_size``) (:func:`anpyc.kernels.importance.fisher_diag`); ``fisher_samples``:
    examples of the task the estimate reads (``None``: the whole task's training data);
    ``batch_size``: examples per estimation batch (``None``: the run's training batch size;
    for the per-sample kinds only a chunk size); ``consolidate_head``: with one shared head
    (domain and class scenarios) the penalty holds the head too, as Avalanche's EWC does
    (it penalises every parameter); a task-aware model's heads are never penalised. On by
    default: stage 3 of docs/benchmarks/baselines-defaults (on the full-length domain stream,
    validation ACC 85.89 against 84.69 without it)."""

    lam: float = 3.0
    fisher: Fisher = "empirical"
    fisher_samples: int | None = None
    batch_size: int | None = None
    consolidate_head: bool = True

    def __post_init__(self) -> None:
        if self.fisher not in FISHERS:
            raise ValueError(f"unknown fisher {self.fisher!r}; known: {', '.join(FISHERS)}")
        if self.lam < 0 or (self.fisher_samples is not None and self.fisher_samples < 1) or (
                self.batch_size is not None and self.batch_size < 1):
            raise ValueError("need lam >= 0, fisher_samples >= 1 or null, batch_size >= 1 or null")


class FisherPenalty(QuadraticPenalty):
    """Shared by EWC and online EWC: Fisher importance, quadratic penalty with scale 1/2."""

    scale = 0.5

    def penalized(self, model: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """The shared body, plus a single shared head when ``consolidate_head``."""
        out = list(model.shared_parameters())
        if self.config.consolidate_head and getattr(model, "head_mode", "multi") == "single" and len(model.heads):
            out += [(f"heads.0.{n}", p) for n, p in model.heads[0].named_parameters()]
        return out

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, torch.Tensor]:
        cfg = self.config
        self.count_importance_examples(ctx.task, task.train, cfg.fisher_samples)
        with scoring_head(model, cfg.consolidate_head):
            return fisher_diag(model, task.train, kind=cfg.fisher, max_samples=cfg.fisher_samples,
                               batch_size=cfg.batch_size or ctx.batch_size, generator=ctx.generator(1))


@register
class EWC(FisherPenalty):
    """One Fisher and one anchor per task, one penalty per task (memory grows with tasks).

    State: per shared parameter two buffers stacked over tasks, ``ewc_fisher__<param>`` and
    ``ewc_anchor__<param>`` of shape ``(tasks so far, *param.shape)``."""

    name = "ewc"
    tags = frozenset({"importance-penalty"})  # a per-parameter importance and a penalty
    config_cls = EWCConfig

    def __init__(self, config: EWCConfig | None = None) -> None:
        super().__init__(config)
        self._merged_cache: dict[str, tuple] = {}  # derived from the buffers, never saved

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

    def merged(self, name: str) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(S, m, C)`` with ``sum_t F_t (theta - theta*_t)^2 = S (theta - m)^2 + C``
        element-wise: ``S = sum_t F_t``, ``m`` the Fisher-weighted mean of the anchors, ``C >= 0``
        a constant. The same penalty and gradient in one term instead of one per task (the
        per-task Fishers and anchors stay the state); derived from them and cached."""
        f, a = self.fishers(name), self.anchors(name)
        if f is None or a is None:
            return None
        key = (f.data_ptr(), f._version, a.data_ptr(), a._version, f.device)
        cached = self._merged_cache.get(name)
        if cached is None or cached[0] != key:
            f64, a64 = f.double(), a.double()
            total = f64.sum(0)
            weighted = (f64 * a64).sum(0)
            mean = torch.where(total > 0, weighted / total.clamp_min(1e-300), a64[-1])
            const = ((f64 * (a64 - mean.unsqueeze(0)).pow(2)).sum()).to(f.dtype)
            cached = (key, (total.to(f.dtype), mean.to(a.dtype), const))
            self._merged_cache[name] = cached
        return cached[1]

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        if self.config.lam == 0:
            return None
        terms = []
        for name, p in self.penalized(model):
            merged = self.merged(name)
            if merged is not None:  # = sum over tasks of F_t (theta - theta*_t)^2
                total, mean, const = merged
                terms.append((total * (p - mean).pow(2)).sum() + const)
        if not terms:
            return None
        return self.scale * self.config.lam * torch.stack(terms).sum()

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """Estimate the task's Fisher and keep it, with the current parameters as its anchor."""
        new = self.estimate_importance(model, task, ctx)
        params = dict(self.penalized(model))
        for name, value in new.items():
            self._append("ewc_fisher", name, value)
            self._append("ewc_anchor", name, params[name])
        self.record_importance(ctx.task, new)

    def summary(self) -> dict:
        return {**super().summary(), "ewc_state_grows_with_tasks": True, "ewc_tasks_kept": self.n_tasks_kept()}
