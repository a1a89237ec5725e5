"""``anpyc-masks``: PackNet with six changes, the library's earlier ANPyC default. It is
**PackNet** (:mod:`anpyc.methods.packnet`) **with these changes**, not the paper's algorithm
(that is ``anpyc``, :mod:`anpyc.methods.anpyc`):

* keep schedule: each task keeps ``max(keep_first * keep_decay**t, keep_min)`` of the free pool
  (PackNet: a fixed share, 0.5);
* (until this release) the last task of a stream was not pruned; ``prune_last: false`` keeps that,
  but no default reads the stream's length, so the last task is pruned like the others;
* the pruning guard (:func:`anpyc.kernels.masking.guarded_prune`; PackNet has it as an option);
* released weights keep the values the task trained them to (``reinit: keep``; PackNet: zero);
* biases are pruned and released like weights (PackNet trains them with the first task only);
* when the free pool runs out, 5 % of the owned weights are reclaimed (``exhausted_policy``).

Everything else is PackNet's code path: an ownership map, hard gating of what earlier tasks
own, per-task masks at test time (so no forgetting), magnitude scores, one pruning step with
retraining, and task inference without task ids as every method has it. With ``keep_first=0.5 keep_decay=1
keep_min=0.5 guard=false reinit=zero`` its accuracy matrices are within 0.12
points of PackNet's. The paper's own mechanisms (the entropy-Taylor importance, the
consolidation penalty, graded element-wise updating) are not used by default: they are options
(``protection: soft|scaled``, ``prune_criterion: taylor``), kept for the record of how this
variant was measured (docs/anpyc-masks.md).

Two forces act on the shared (body) parameters after every task:

* **Pruning.** Of the parameters the task was free to use, only a share is kept (chosen by
  ``prune_criterion``); the rest are zeroed, the task is retrained without them
  (``retrain(epochs)``), and they are released to the next task. The ownership map (``owner``:
  task id, or -1 for free) records who holds each parameter.
* **Protection.** ``protection='hard'`` (default) gates the updates of what earlier tasks own;
  ``'soft'`` adds the penalty ``lam * sum(Omega * (theta - theta*)^2)`` instead, and
  ``'scaled'`` also divides each update by ``1 + lam * Omega / mean(Omega)``.

With ``task_masks`` each task is evaluated with the weights it could see when it was trained
(its own and older tasks'), so hard protection gives exactly zero forgetting.

Example:
    >>> from anpyc.methods import create
    >>> method = create("anpyc-masks", {"keep_first": 0.3, "retrain_epochs": 1})
    >>> method.config.prune_criterion
    'magnitude'
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from anpyc.kernels import importance as imp
from anpyc.kernels.masking import (
    FREE,
    Masks,
    Ownership,
    PruneGuard,
    grow_pruned_,
    guarded_prune,
    lowest_fraction_mask,
    norm_parameters,
    reinit_free_,
    scale_grad_,
    snapshot,
)
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ANPyCMasksConfig:
    """Hyper-parameters of ``anpyc-masks`` (symbols as in the ANPyC paper where it has them).

    Consolidation: ``lam`` (lambda, penalty strength), ``merge`` of Omega over tasks (``sum`` with
    pruning, ``max`` as the reference does without), ``importance_signal`` (``entropy``:
    label-free, the paper's; ``loss``; ``output_norm``, MAS-like: docs/generative.md), ``taylor_form`` (``reference`` sign as in the authors'
    code, or ``removal``: the Taylor change when a parameter is removed), ``structure`` (per-layer normalisation of Omega:
    ``none``, ``layer_mean``, ``layer_softmax`` with temperature ``beta``, ``neuron``),
    ``importance_samples`` (examples used per estimate) and ``protection``.

    Pruning: ``prune_criterion`` ranks the task's free parameters (``magnitude`` = |theta|,
    ``taylor`` = entropy-Taylor Omega, ``taylor_abs`` = |g*theta| of the loss, ``random``);
    ``keep_schedule='geometric'`` keeps ``max(keep_first * keep_decay**t, keep_min)`` of the
    free pool at task ``t``; ``'reference'`` prunes 50% then ``int(0.8 * previous)`` percent;
    ``prune_step`` is the share of the free pool pruned per step (1.0: all at once; the
    reference uses 0.1), each step followed by ``retrain_epochs`` of retraining; ``prune_unit='unit'`` prunes whole output units (rows / conv filters);
    ``reinit`` gives released parameters the values the task trained them to before pruning
    (``keep``: the next task starts from the network the last one trained, as fine-tuning
    does), ``zero``, or small ``random`` values (random values in released conv filters left
    later tasks of a CNN at 67% where zero gave 97% and keep 99%, docs/anpyc-masks.md); a task whose
    retraining budget is unspent (the last one, or one the guard keeps whole) trains on for
    ``retrain_epochs``, so that every task has the same passes;
    ``prune_last`` (default) prunes a stream's last task like any other (``false``: not pruned, which
    reads the stream's length).
    ``exhausted_below``: below this free share of the body the pool is exhausted, and
    ``exhausted_policy`` says what the next task does: ``reclaim`` releases the
    ``reclaim_share`` of each layer's owned weights that rank lowest by ``reclaim_by``
    (``magnitude`` or consolidated ``importance`` Omega; re-initialised and hidden from the
    old tasks' views, so those forget a little) and the task trains as usual; ``consolidate``
    trains every weight under the soft penalty (old tasks see theirs move); ``head_only``
    freezes the body (no forgetting; the task learns a head on the frozen features).

    Pruning guard (``guard``): the task's validation accuracy is measured before pruning; a
    task within ``guard_chance_margin`` of chance is not pruned (it learnt nothing to shrink);
    otherwise the keep share grows from the schedule's (x2 at a time, up to keeping all) until
    the pruned, not yet retrained, accuracy is within ``guard_search_drop`` of it (evaluations
    only, no training pass), and if after retraining the task is still more than
    ``prune_tolerance`` below its accuracy before pruning, the pruning is undone (the task keeps
    every weight it trained). Every figure is in ``metrics.json`` (``prune_guard``).

    Without a task id at test time (domain/class scenarios) every weight is in use and the shared
    head is consolidated too (``consolidate_head``: the penalty holds it, hard protection or not),
    unless the task is inferred (``task_inference``, any method: :mod:`anpyc.methods.task_inference`,
    which answers each input with its task's view and head).

    Consolidation's importance (``importance``): ``omega``, the paper's entropy-Taylor score;
    ``magnitude``, |theta|; ``fisher``, the diagonal Fisher (EWC's). It is estimated only where
    something uses it: the penalty (soft protection, a consolidated head) or reclaiming by
    importance; with hard protection and task masks nothing does (docs/anpyc-masks.md measures it).
    """

    lam: float = 10.0
    merge: Literal["sum", "max"] = "sum"
    importance_signal: Literal["entropy", "loss", "output_norm"] = "entropy"
    taylor_form: Literal["reference", "removal"] = "removal"
    structure: Literal["none", "layer_mean", "layer_softmax", "neuron"] = "none"
    beta: float = 3.0
    importance_samples: int = 2000
    importance_batch: int = 100
    protection: Literal["hard", "soft", "scaled"] = "hard"
    task_masks: bool = True
    prune_criterion: Literal["magnitude", "taylor", "taylor_abs", "random"] = "magnitude"
    keep_schedule: Literal["geometric", "reference"] = "geometric"
    keep_first: float = 0.15
    keep_decay: float = 0.95
    keep_min: float = 0.05
    prune_step: float = 1.0
    retrain_epochs: float = 0.5
    prune_unit: Literal["weight", "unit"] = "weight"
    reinit: Literal["keep", "zero", "random"] = "keep"
    reinit_scale: float = 0.5
    prune_last: bool = True
    exhausted_below: float = 0.005
    exhausted_policy: Literal["reclaim", "consolidate", "head_only"] = "reclaim"
    reclaim_share: float = 0.05
    reclaim_by: Literal["magnitude", "importance"] = "magnitude"
    importance: Literal["omega", "magnitude", "fisher"] = "omega"
    consolidate_head: bool = True
    guard: bool = True
    prune_tolerance: float = 0.01
    guard_search_drop: float = 0.1
    guard_chance_margin: float = 0.05

    def __post_init__(self) -> None:
        checks = [
            (self.lam >= 0, "lam must be >= 0"),
            (0 < self.keep_first <= 1, "keep_first must be in (0, 1]"),
            (0 < self.keep_decay <= 1, "keep_decay must be in (0, 1]"),
            (0 <= self.keep_min <= 1, "keep_min must be in [0, 1]"),
            (0 < self.prune_step <= 1, "prune_step must be in (0, 1]"),
            (self.retrain_epochs >= 0, "retrain_epochs must be >= 0"),
            (self.importance_samples >= 1 and self.importance_batch >= 1, "importance sample sizes must be >= 1"),
            (0 <= self.exhausted_below < 1, "exhausted_below must be in [0, 1)"),
            (0 < self.reclaim_share < 1, "reclaim_share must be in (0, 1)"),
            (0 <= self.prune_tolerance < 1 and 0 <= self.guard_search_drop < 1, "guard tolerances must be in [0, 1)"),
            (0 <= self.guard_chance_margin < 1, "guard_chance_margin must be in [0, 1)"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


@register
class ANPyCMasks(QuadraticPenalty):
    """``anpyc-masks`` behind the common hooks; see the module docstring."""

    name = "anpyc-masks"
    config_cls = ANPyCMasksConfig

    def __init__(self, config: ANPyCMasksConfig | None = None) -> None:
        super().__init__(config)
        self.ownership = Ownership()
        self.history = {"kept_share": [], "importance_stats": [], "exhausted": [], "modes": [], "reclaimed": [],
                        "prune_guard": []}
        self._grad_scale: dict[str, Tensor] | None = None  # derived from Omega, never saved

    # ------------------------------------------------------------------ state
    def owner(self, name: str) -> Tensor | None:
        return self.ownership.owner(name)

    def free_fraction(self, model: ContinualModel) -> dict[str, float]:
        """Share of each shared tensor still free for future tasks."""
        return {name: float((self.owner(name) == FREE).float().mean()) for name, _ in model.shared_parameters()}

    def _mode(self) -> str:
        """How the current task trains: ``hard`` (free weights only), ``soft`` (every weight,
        under the penalty), ``consolidate`` (exhausted pool: soft, no pruning) or
        ``head_only`` (exhausted pool: the body is frozen). Kept in the history, so a run
        resumed mid-task knows it without replaying ``before_task``."""
        modes = self.history["modes"]
        return modes[-1] if modes else ("hard" if self.config.protection == "hard" else "soft")

    def _main_phase(self, model: ContinualModel) -> Callable[[], Masks | None]:
        """Trainable entries of the main training phase, derived from the state."""
        mode = self._mode()
        if mode in ("soft", "consolidate"):
            return lambda: None  # no gating: the penalty protects
        if mode == "head_only":
            return lambda: {name: torch.zeros_like(p, dtype=torch.bool) for name, p in model.shared_parameters()}
        return lambda: self.ownership.free(model)

    # ------------------------------------------------------------------ hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.ownership.ensure(model)
        c, t = self.config, ctx.task
        free_share = self.ownership.free_share(model)
        exhausted = c.protection == "hard" and t > 0 and free_share < c.exhausted_below
        self.history["exhausted"].append(exhausted)
        mode = "hard" if c.protection == "hard" else "soft"
        if exhausted and c.exhausted_policy == "reclaim":
            released = self._reclaim(model, ctx)
            self.history["reclaimed"].append({"task": t, "released_share": released})
            log.warning(
                "anpyc-masks: free pool exhausted before task %d (%.2f%% free): released the %.0f%% of owned weights "
                "lowest by %s (%.2f%% of the body); earlier tasks lose them", t, 100 * free_share,
                100 * c.reclaim_share, c.reclaim_by, 100 * released,
            )
        elif exhausted:
            mode = c.exhausted_policy
            log.warning("anpyc-masks: free pool exhausted before task %d (%.2f%% free): %s for this task", t,
                        100 * free_share, "consolidation only" if mode == "consolidate" else "only the head trains")
        self.history["modes"].append(mode)
        self.ownership.set_phase(None)
        self._grad_scale = None

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        # hard gating: protected body entries cannot move; only a consolidated head is penalised
        return super().penalty(model, x, y, t) if self.penalized(model) else None

    def before_step(self, model: ContinualModel) -> None:
        self.ownership.gate_grads_(model, self._main_phase(model))
        for name, p in model.shared_parameters():
            scale = self._scales(model).get(name)
            if scale is not None:
                scale_grad_(p, scale)

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        self.ownership.restore_frozen_(model, optimizer)

    def _scales(self, model: ContinualModel) -> dict[str, Tensor]:
        """``protection='scaled'``: each update divided by ``1 + lam * Omega / mean(Omega)``."""
        if self._grad_scale is None:
            self._grad_scale = {}
            if self.config.protection == "scaled":
                for name, _ in model.shared_parameters():
                    omega = self.omega(name)
                    if omega is not None and float(omega.mean()) > 0:
                        self._grad_scale[name] = 1.0 / (1.0 + self.config.lam * omega / omega.mean())
        return self._grad_scale

    def eval_context(self, model: ContinualModel,
                     task_id: int | None) -> AbstractContextManager[None]:
        """Evaluate task ``task_id`` with only the weights it could see when it was trained
        (every weight when the scenario gives no task id)."""
        if not self.config.task_masks:
            return super().eval_context(model, task_id)
        return self.ownership.view(model, task_id)

    # ------------------------------------------------------------------ after the task
    def keep_share(self, t: int) -> float:
        """Share of the free pool task ``t`` keeps."""
        c = self.config
        if c.keep_schedule == "reference":
            prune_pct = 50
            for _ in range(t):
                prune_pct = int(0.8 * prune_pct)
            return 1.0 - prune_pct / 100.0
        return max(c.keep_first * c.keep_decay**t, c.keep_min)

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """Main-phase epochs so that training plus the retraining after each pruning step
        spend ``passes`` per task (the largest number of pruning steps any task takes)."""
        c = self.config
        # a task that prunes nothing still spends one retraining budget training on
        steps = max(1, *(math.ceil((1.0 - self.keep_share(t)) / c.prune_step - 1e-9) for t in range(100)))
        epochs = passes - steps * c.retrain_epochs
        if epochs <= 0:
            raise ValueError(f"anpyc-masks: {steps} x retrain_epochs {c.retrain_epochs:g} leaves no epoch of a {passes:g}-pass budget")
        return epochs

    def _scores(self, model: ContinualModel, task: Task, ctx: HookContext) -> dict[str, Tensor]:
        c = self.config
        kw = {"batch_size": c.importance_batch, "max_samples": c.importance_samples}
        if c.prune_criterion == "random":
            g = ctx.generator(2)
            return {name: torch.rand(p.shape, generator=g).to(p.device) for name, p in model.shared_parameters()}
        if c.prune_criterion == "magnitude":
            return imp.normalize_per_layer(imp.weight_magnitude(model), c.structure, c.beta)
        self.count_importance_examples(ctx.task, task.train, c.importance_samples)
        if c.prune_criterion == "taylor":
            scores = imp.entropy_taylor(model, task.train, signal=c.importance_signal, form=c.taylor_form, **kw)
        else:
            scores = imp.taylor_abs(model, task.train, signal="loss", **kw)
        return imp.normalize_per_layer(scores, c.structure, c.beta)

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """Prune (with retraining, guarded by the task's validation accuracy) the free pool the
        task used, give the task what it kept, consolidate it (importance, anchors),
        re-initialise the released weights."""
        c, own = self.config, self.ownership
        own.ensure(model)
        free = own.free(model)
        frozen_pool = self._mode() in ("consolidate", "head_only")
        keep = 1.0 if (ctx.last and not c.prune_last) or frozen_pool else self.keep_share(ctx.task)
        trained = snapshot(model) if c.reinit == "keep" else None  # the values released weights keep
        pruned, keep, spent = self._guarded_prune(model, task, ctx, free, keep, retrain, trained)
        if not spent and retrain is not None and c.retrain_epochs > 0:
            # nothing retrained (the last task, a guarded one): its retraining budget trains it on
            self.ownership.set_phase(None)
            retrain(c.retrain_epochs)
        for name in free:  # what the task kept is now its own; the pruned rest is released
            own.claim(name, free[name] & ~pruned[name], ctx.task)
        super().after_task(model, task, ctx, retrain)  # Omega of what the task holds; anchors
        reinit_free_(model, own, c.reinit, ctx.generator(1), c.reinit_scale, trained)
        own.finish_task(model, ctx.task)
        self.history["kept_share"].append(keep)
        self._grad_scale = None
        log.debug(  # the same figures are in metrics.json; keep the progress bar clean
            "anpyc-masks: task %d kept %.1f%% of its free pool; %.1f%% of the body is free", ctx.task, 100 * keep,
            100 * own.free_share(model),
        )

    def _guarded_prune(self, model: ContinualModel, task: Task, ctx: HookContext, free: Masks,
                       keep: float, retrain: Retrain | None,
                       trained: Masks | None = None) -> tuple[Masks, float, bool]:
        """:meth:`_prune` to ``keep``, under the guard of the task's validation accuracy when
        the loop gives one (:func:`anpyc.kernels.masking.guarded_prune`); returns what was pruned, the
        keep share used and whether the retraining budget was spent. ``trained``: the values
        before pruning (for ``reinit='keep'``), updated if the task trains on first."""
        c = self.config
        validate = getattr(retrain, "validate", None)
        nothing = {n: torch.zeros_like(m) for n, m in free.items()}
        if keep >= 1.0:
            return nothing, keep, False
        if not c.guard or validate is None:
            return self._prune(model, task, ctx, free, 1.0 - keep, retrain), keep, retrain is not None
        guard = PruneGuard(c.prune_tolerance, c.guard_search_drop, c.guard_chance_margin)

        def prune_from(k: float, with_retraining: bool) -> Masks:
            return self._prune(model, task, ctx, free, 1.0 - k, retrain if with_retraining else None)

        def train_on() -> None:  # a task not learnt yet spends its retraining budget learning
            self.ownership.set_phase(None)
            retrain(c.retrain_epochs)
            if trained is not None:
                trained.update(snapshot(model))

        validate = self.counted_validation(validate, ctx.task, len(task.val))
        keep, pruned, record = guarded_prune(guard, model, keep, prune_from, validate, len(task.val),
                                             1.0 / max(len(task.classes), 1), train_on if c.retrain_epochs > 0 else None)
        self.history["prune_guard"].append({"task": ctx.task, **record})
        return (pruned if pruned is not None else nothing), keep, record["budget_spent"]

    def _prune(self, model: ContinualModel, task: Task, ctx: HookContext, free: Masks,
               target: float, retrain: Retrain | None) -> Masks:
        """Prune ``target`` of each layer's free pool in steps of ``prune_step``, each step
        followed by ``retrain_epochs`` of retraining the kept free weights."""
        c = self.config
        pruned = {name: torch.zeros_like(m) for name, m in free.items()}
        if target <= 0:
            return pruned
        n_steps = max(1, math.ceil(target / c.prune_step - 1e-9))
        for step in range(1, n_steps + 1):
            goal = min(target, step * c.prune_step)  # cumulative share of the free pool pruned
            self._prune_step(model, self._scores(model, task, ctx), free, pruned, goal)
            if retrain is not None and c.retrain_epochs > 0:
                self.ownership.set_phase({name: free[name] & ~pruned[name] for name in free})
                retrain(c.retrain_epochs)
        return pruned

    def _prune_step(self, model: ContinualModel, scores: Masks, free: Masks, pruned: Masks,
                    goal: float) -> None:
        """Grow ``pruned`` so that ``goal`` of each prunable layer's free pool is pruned."""
        grow_pruned_(model, scores, free, pruned, goal, by_unit=self.config.prune_unit == "unit")

    def penalized(self, model: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """What the penalty holds: the body under soft protection (or an exhausted pool), and
        a single shared head when ``consolidate_head`` and every weight answers at test time."""
        out = list(model.shared_parameters()) if self._mode() in ("soft", "consolidate") else []
        # one head per task (task ids, or task inference) holds nothing of another task's
        if self.config.consolidate_head and getattr(model, "head_mode", "multi") == "single" and len(model.heads):
            out += [(f"heads.0.{n}", p) for n, p in model.heads[0].named_parameters()]
        return out

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, Tensor]:
        """The importance of what the task holds (released entries get 0), for what is
        penalised or reclaimed by importance; nothing when nothing uses it."""
        c = self.config
        wanted = {n for n, _ in self.penalized(model)}
        if c.reclaim_by == "importance" or self._mode() in ("soft", "consolidate"):
            wanted |= {n for n, _ in model.shared_parameters()}
        if not wanted:
            return {}
        if c.importance != "magnitude":
            self.count_importance_examples(ctx.task, task.train, c.importance_samples)
        with imp.scoring_head(model, any(n.startswith("heads.") for n in wanted)):
            if c.importance == "magnitude":
                omega = imp.weight_magnitude(model)
            elif c.importance == "fisher":
                omega = imp.fisher_diag(model, task.train, kind="true", max_samples=c.importance_samples,
                                        batch_size=c.importance_batch, device=next(model.parameters()).device)
            else:
                omega = imp.entropy_taylor(model, task.train, signal=c.importance_signal, form=c.taylor_form,
                                           batch_size=c.importance_batch, max_samples=c.importance_samples)
        omega = imp.normalize_per_layer({n: v for n, v in omega.items() if n in wanted}, c.structure, c.beta)
        owner = self.ownership.owner
        return {n: v * (owner(n) >= 0) if owner(n) is not None else v for n, v in omega.items()}

    def record_importance(self, task: int, new: dict[str, Tensor]) -> None:
        """Statistics of the consolidated Omega (every task so far), not of one task's."""
        super().record_importance(task, {name: self.omega(name) for name in new})

    def _reclaim(self, model: ContinualModel, ctx: HookContext) -> float:
        """Release ``reclaim_share`` of each prunable layer's owned weights, those ranked lowest
        by ``reclaim_by`` (|theta|, or the consolidated Omega summed over every task that used
        them); returns the share of the body released."""
        params = dict(model.shared_parameters())
        never_pruned = norm_parameters(model)
        released = 0
        with torch.no_grad():
            for name in params:
                owner, omega = self.owner(name), self.omega(name)
                by_magnitude = self.config.reclaim_by == "magnitude"
                if name in never_pruned or (omega is None and not by_magnitude):
                    continue
                score = params[name].detach().abs() if by_magnitude else omega
                release = lowest_fraction_mask(score, owner >= 0, self.config.reclaim_share)
                self.ownership.release(name, release)
                if omega is not None:
                    omega[release] = 0.0
                released += int(release.sum())
        reinit_free_(model, self.ownership, self.config.reinit, ctx.generator(3), self.config.reinit_scale)
        return released / max(sum(p.numel() for p in params.values()), 1)

    def summary(self) -> dict:
        h = self.history
        return {
            **self.ownership.summary(),
            "kept_share": h["kept_share"],
            "importance_stats": h["importance_stats"],
            "importance_kurtosis": [s["kurtosis"] for s in h["importance_stats"]],
            "exhausted_tasks": [i for i, e in enumerate(h["exhausted"]) if e],
            "reclaimed": h["reclaimed"],
            "prune_guard": h["prune_guard"],
        }
