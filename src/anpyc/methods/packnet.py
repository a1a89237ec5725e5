"""PackNet (Mallya & Lazebnik, CVPR 2018): prune and retrain, one binary mask per task.

Each shared weight has an owner (:class:`anpyc.kernels.masking.Ownership`: free, or the task that
keeps it). Task ``t`` trains only free weights; owned ones are frozen (the *update* is
masked, so momentum and weight decay cannot move them). After training, ``prune_fraction``
of the weights it trained, those of smallest magnitude in each layer, are released to the
free pool; the rest become task ``t``'s, and the network is retrained for
``retrain_epochs`` with only those weights moving (retraining counts in the task's passes).
Released weights start the next task at zero, as in the paper (``reinit='random'``: small
random values; ``reinit='keep'``: the values the task trained them to, ANPyC's default). At
test time task ``j`` sees only weights owned by tasks ``0..j``, so old tasks are exact
(BWT = 0); without a task id (domain/class scenarios) every weight is in use, unless the task is
inferred (``task_inference``, any method: :mod:`anpyc.methods.task_inference`). As in the
paper, biases are trained with the first task only and then frozen, and each task has its own
head. The paper prunes 50% or 75% per task and retrains for about half the training epochs;
defaults here: 0.5 and half an epoch.

Example:
    >>> from anpyc.methods import create
    >>> create("packnet", {"prune_fraction": 0.75}).config.retrain_epochs
    0.5
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import torch

from anpyc.kernels.masking import (
    Masks,
    Ownership,
    PruneGuard,
    guarded_prune,
    prune_lowest,
    reinit_free_,
    snapshot,
)
from anpyc.methods.base import Method
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext


@dataclasses.dataclass(frozen=True)
class PackNetConfig:
    """``prune_fraction``: share of the weights a task trained that is released after it;
    ``retrain_epochs``: epochs of retraining the kept weights after pruning (0: none);
    ``reinit``: the value released weights start the next task with (``zero`` as in the
    paper, small ``random`` values, or ``keep`` the values the task trained them to).
    ``guard`` (off by default: the paper prunes a fixed share) adds
    ANPyC's pruning guard: the pruned share shrinks (halving at a time) until the pruned
    task's validation accuracy is within ``guard_search_drop`` of its accuracy before pruning,
    a task near chance is not pruned, and a pruning that leaves the retrained task more than
    ``prune_tolerance`` below is undone."""

    prune_fraction: float = 0.5
    retrain_epochs: float = 0.5
    reinit: Literal["zero", "random", "keep"] = "zero"
    guard: bool = False
    prune_tolerance: float = 0.01
    guard_search_drop: float = 0.1
    guard_chance_margin: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.prune_fraction < 1.0 or self.retrain_epochs < 0:
            raise ValueError("need 0 <= prune_fraction < 1 and retrain_epochs >= 0")


@register
class PackNet(Method):
    """Per-task binary masks from magnitude pruning, with retraining."""

    name = "packnet"
    config_cls = PackNetConfig

    def __init__(self, config: PackNetConfig | None = None) -> None:
        super().__init__(config)
        self.ownership = Ownership()

    def _free_rule(self, model: ContinualModel) -> Callable[[], Masks]:
        return lambda: self.ownership.free(model)

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """Main-phase epochs so that training plus retraining spend ``passes`` per task."""
        epochs = passes - self.config.retrain_epochs
        if epochs <= 0:
            raise ValueError(f"packnet: retrain_epochs {self.config.retrain_epochs:g} leaves no epoch of a {passes:g}-pass budget")
        return epochs

    # -------------------------------------------------------------- hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.ownership.ensure(model)
        self.ownership.set_phase(None)  # the free pool trains (derived at the first step)

    def before_step(self, model: ContinualModel) -> None:
        self.ownership.gate_grads_(model, self._free_rule(model))

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        self.ownership.restore_frozen_(model, optimizer)

    @torch.no_grad()
    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        t, own = ctx.task, self.ownership
        own.ensure(model)
        trained = own.free(model)
        values = snapshot(model) if self.config.reinit == "keep" else None  # the values released weights keep
        keep, pruned = self._guarded_prune(model, task, ctx, trained, retrain, values)
        for name, mask in trained.items():  # biases: kept whole by the first task, frozen afterwards
            own.claim(name, mask & ~pruned[name], t)
        reinit_free_(model, own, self.config.reinit, ctx.generator(1), kept=values)
        own.finish_task(model, t)
        self.history.setdefault("kept_share", []).append(keep)

    def _prune_retrain(self, model: ContinualModel, trained: Masks, scores: Masks, keep: float,
                       retrain: Retrain | None) -> Masks:
        """Release the lowest-magnitude ``1 - keep`` of the weights the task trained (zeroed),
        then retrain what it keeps."""
        params = dict(model.shared_parameters())
        weights = {n: m for n, m in trained.items() if params[n].dim() > 1}
        pruned = {n: torch.zeros_like(m) for n, m in trained.items()}
        pruned.update(prune_lowest(scores, weights, 1.0 - keep))
        for name, p in params.items():
            p[pruned[name]] = 0.0
        if retrain is not None and self.config.retrain_epochs > 0:
            self.ownership.set_phase({n: trained[n] & ~pruned[n] for n in params})
            with torch.enable_grad():
                retrain(self.config.retrain_epochs)
        return pruned

    def _guarded_prune(self, model: ContinualModel, task: Task, ctx: HookContext, trained: Masks,
                       retrain: Retrain | None, values: Masks | None = None) -> tuple[float, Masks]:
        """Prune (and retrain) under the guard when on; ``values``: the weights before pruning
        (``reinit='keep'``), updated if the task trains on first."""
        c, keep = self.config, 1.0 - self.config.prune_fraction
        scores = {n: p.detach().abs() for n, p in model.shared_parameters()}
        validate = getattr(retrain, "validate", None)
        if not c.guard or validate is None or keep >= 1.0:
            return keep, self._prune_retrain(model, trained, scores, keep, retrain)
        guard = PruneGuard(c.prune_tolerance, c.guard_search_drop, c.guard_chance_margin)

        def prune_from(k: float, with_retraining: bool) -> Masks:
            return self._prune_retrain(model, trained, scores, k, retrain if with_retraining else None)

        def train_on() -> None:  # a task not learnt yet spends its retraining budget learning
            with torch.enable_grad():
                retrain(c.retrain_epochs)
            if values is not None:
                values.update(snapshot(model))

        validate = self.counted_validation(validate, ctx.task, len(task.val))
        keep, pruned, record = guarded_prune(guard, model, keep, prune_from, validate, len(task.val),
                                             1.0 / max(len(task.classes), 1), train_on if c.retrain_epochs > 0 else None)
        self.history.setdefault("prune_guard", []).append({"task": ctx.task, **record})
        return keep, pruned if pruned is not None else {n: torch.zeros_like(m) for n, m in trained.items()}

    def eval_context(self, model: ContinualModel,
                     task_id: int | None) -> AbstractContextManager[None]:
        """Zero the weights task ``task_id`` did not see (free, or owned by later tasks)."""
        return self.ownership.view(model, task_id)

    def summary(self) -> dict:
        """Free capacity per layer and of the body after each task (one shape for every mask
        method, :meth:`anpyc.kernels.masking.Ownership.summary`), keep shares and the guard's figures."""
        return {**self.ownership.summary(), "kept_share": self.history.get("kept_share", []),
                "prune_guard": self.history.get("prune_guard", [])}
