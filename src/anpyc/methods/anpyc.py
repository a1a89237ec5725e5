"""ANPyC: Adversarial Neural Pruning and synaptic Consolidation (Peng et al., IEEE TNNLS 2021,
arXiv 1912.09091), as the paper describes it: every weight answers at test time, no per-task
masks, no task inference.

After training task ``t`` two forces act on the shared (body) parameters:

* **Neural pruning (long-term depression).** Of the parameters no earlier task holds (the
  free pool: all of them at the first task), the share the schedule releases, those the task
  needs least by its importance ``Omega_t``, is zeroed and released; the task is retrained to
  recover (every unpruned weight trains, under the consolidation penalty, as in the authors'
  code; ``retrain_scope='free'``: only its own kept weights); ``prune_steps`` steps, the scores
  recomputed before each. Released weights are free capacity for the next task.
* **Synaptic consolidation (long-term potentiation).** ``Omega_t`` of what the task holds
  (released entries 0) is added to the consolidated ``Omega`` (``merge``) and ``theta*``
  anchors at the task's final weights. While later tasks learn, every weight trains under the
  penalty ``lam * sum_i Omega_i (theta_i - theta*_i)^2`` and, the **element-wise updating
  strategy**, each parameter's update is scaled by ``1 / (1 + update_strength * Omega_i /
  mean(Omega))``: graded by its consolidated importance, the binary gate of mask methods
  (PackNet, ``anpyc-masks``) being its limit.

``Omega`` is the **structure-aware entropy-Taylor importance**: with ``g = dH/dtheta`` the
gradient of the output entropy ``H`` of the task's head (label-free) on batches of the task's
training data, ``max(g*theta + 0.5*theta^2*g^2, 0)``, the authors' sign (``taylor_form='removal'``:
``max(-g*theta + 0.5*theta^2*g^2, 0)``, the Taylor estimate of the change of ``H`` when the
parameter is removed; ``'two-sided'``: the two added; chosen on validation, docs/anpyc.md),
averaged over batches, then shaped by the network's structure (``structure``, see
:func:`anpyc.kernels.importance.normalize_per_layer`). ``importance='magnitude'`` (|theta|),
``'fisher'`` and ``'uniform'`` (1 for every entry: a plain L2 pull to the anchor, what any
importance estimate is measured against; pruning then ranks by |theta|, the ties' order) replace it
(the ablation's rows), for both pruning and consolidation.

A task that prunes nothing (the schedule keeps all; ``prune_last=False`` and the stream's
last task, which the reference does not prune) trains on for its retraining budget, so every
task spends the same passes. Nothing in the defaults reads the stream's length.

**Defaults.** Every mechanism above is an option; the defaults keep what earned its place in
the ablation (3 seeds, each row tuned on validation with the same budget; docs/anpyc.md). Its
first stage (``anpyc bench ablation``, ``ablation-domain``: every mechanism on) took out pruning
(it cost accuracy), element-wise updating and the structure-aware shaping (within noise); its
second (``anpyc bench ablation-default``, ``ablation-default-domain``: the default's own base)
finds consolidation, ``Omega`` against ``|theta|`` and, on pmnist10, the authors' sign of the
Taylor score against the removal form earning their place, ``Omega`` level with the Fisher, and
nothing earning a place back.
``anpyc.experiments.bench.PAPER_MECHANISMS`` turns every mechanism on.
``anpyc-reference`` (the shipped preset) is the authors' code transcribed; ``anpyc-masks``
(:mod:`anpyc.methods.anpyc_masks`) the library's earlier default (PackNet with six changes).

State (buffers, so ``state_dict`` is the whole state): per shared parameter one int16 owner
(free or the task that holds it), the consolidated ``Omega`` and the anchor ``theta*``.

Example:
    >>> from anpyc.methods import create
    >>> method = create("anpyc", {"lam": 3.0})
    >>> method.config.importance, method.config.structure, method.config.prune, method.config.update
    ('omega', 'none', False, 'plain')
    >>> create("anpyc", {"prune": True, "update": "elementwise"}).config.keep_schedule  # every mechanism of the paper
    'reference'
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from anpyc.kernels import importance as imp
from anpyc.kernels.masking import FREE, Masks, Ownership, grow_pruned_, scale_grad_
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ANPyCConfig:
    """Hyper-parameters of ANPyC (the paper's symbols where it has them).

    Consolidation: ``lam`` (lambda; 0 turns consolidation off), ``importance`` (``omega``, the
    paper's; ``magnitude``; ``fisher``; ``uniform``, a plain L2 pull), ``taylor_form``,
    ``importance_signal`` (``entropy``, the paper's; ``loss``; ``output_norm`` for generators),
    ``structure`` and ``spread`` / ``beta`` (how the layer structure shapes Omega), ``merge``
    over tasks (``sum``: the reference with pruning; ``max``: without), ``importance_samples``
    (examples per estimate; ``None``: the whole training set, as the reference), ``update``
    (``elementwise``: the element-wise updating strategy with ``update_strength``; ``plain``: the
    penalty alone) and ``consolidate_head`` (a single shared head is consolidated too).

    Pruning: ``prune`` (off: consolidation only), ``keep_schedule`` (``geometric``: the task keeps
    ``max(keep_first * keep_decay**t, keep_min)`` of the free pool; ``reference``: the authors'
    50 % then ``int(0.8 * previous)`` percent pruned, in 10 % steps rounded up as their
    ``range(10, p + 10, 10)`` does), ``prune_steps`` (pruning steps, each followed by
    ``retrain_epochs`` of retraining; the reference schedule sets its own), ``retrain_scope``,
    ``prune_zero_importance`` (the reference prunes every weight of zero importance at the first
    task, whatever the share), ``prune_last``, ``train_on`` (a task that prunes less than the
    most trains on for the rest of its retraining budget, so every task spends the same passes;
    the reference does not) and ``retrain_lr_decay`` (the retraining's learning-rate decay per
    ``train.lr_decay_epochs``, going on from the task's main phase; ``null``: ``train.lr_decay``;
    the reference: 0.9 against 0.99).
    """

    lam: float = 1.0
    importance: Literal["omega", "magnitude", "fisher", "uniform"] = "omega"
    taylor_form: Literal["removal", "reference", "two-sided"] = "reference"  # the ablation: the authors' sign earned its place
    importance_signal: Literal["entropy", "loss", "output_norm"] = "entropy"
    structure: Literal["none", "layer_mean", "layer_softmax", "neuron", "spread"] = "none"  # the ablation: within noise
    spread: float = 1.0
    beta: float = 3.0
    merge: Literal["sum", "max"] = "sum"
    importance_samples: int | None = 2000
    importance_batch: int = 100
    update: Literal["elementwise", "plain"] = "plain"  # the ablation: element-wise updating did not earn its place
    update_strength: float = 1.0
    consolidate_head: bool = True
    prune: bool = False  # the ablation: pruning cost accuracy on pmnist10, gained nothing without task ids (docs/anpyc.md)
    keep_schedule: Literal["geometric", "reference"] = "reference"
    keep_first: float = 0.5
    keep_decay: float = 1.0
    keep_min: float = 0.0
    prune_steps: int | None = 1
    retrain_epochs: float = 0.25
    retrain_scope: Literal["all", "free"] = "all"
    prune_zero_importance: bool = False
    prune_last: bool = True
    train_on: bool = True
    retrain_lr_decay: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.lam >= 0 and self.update_strength >= 0 and self.spread >= 0, "lam, update_strength and spread must be >= 0"),
            (0 < self.keep_first <= 1 and 0 < self.keep_decay and 0 <= self.keep_min <= 1,
             "need 0 < keep_first <= 1, keep_decay > 0 and 0 <= keep_min <= 1"),
            (self.prune_steps is None or self.prune_steps >= 1, "prune_steps must be >= 1 or null"),
            (self.retrain_epochs >= 0, "retrain_epochs must be >= 0"),
            (self.importance_samples is None or self.importance_samples >= 1, "importance_samples must be >= 1 or null"),
            (self.importance_batch >= 1, "importance_batch must be >= 1"),
            (self.retrain_lr_decay is None or 0 < self.retrain_lr_decay <= 1, "retrain_lr_decay must be in (0, 1] or null"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


def reference_prune_shares(n_tasks: int = 100) -> list[float]:
    """Share of the free pool the authors' code prunes at each task: 50 % at the first, then
    ``p = int(0.8 * p)`` percent, in 10 % steps (``range(10, p + 10, 10)``, so rounded up to a
    multiple of 10).

    Example:
        >>> [round(s, 1) for s in reference_prune_shares(9)]
        [0.5, 0.4, 0.4, 0.3, 0.2, 0.2, 0.2, 0.1, 0.1]
    """
    out, pct = [], 50
    for t in range(n_tasks):
        if t:
            pct = int(0.8 * pct)
        out.append(math.ceil(pct / 10) / 10 if pct > 0 else 0.0)
    return out


def _break_ties(score: Tensor, by: Tensor) -> Tensor:
    """``score`` with equal entries ordered by ``by`` (ascending), distinct ones kept in order:
    ``by`` rescaled below a thousandth of the smallest gap between distinct scores.

    Example:
        >>> _break_ties(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([2.0, 1.0, 0.0])).argsort().tolist()
        [1, 0, 2]
    """
    values = score.flatten().unique()
    gap = float((values[1:] - values[:-1]).min()) if values.numel() > 1 else 1.0
    top = float(by.max())
    return score + (1e-3 * gap / top) * by if top > 0 else score


@register
class ANPyC(QuadraticPenalty):
    """ANPyC behind the common hooks; see the module docstring."""

    name = "anpyc"
    config_cls = ANPyCConfig

    def __init__(self, config: ANPyCConfig | None = None) -> None:
        super().__init__(config)
        self.ownership = Ownership()
        self.history = {"kept_share": [], "importance_stats": []}
        self._scale: dict[str, Tensor] | None = None  # derived from Omega, never saved

    # ------------------------------------------------------------------ schedule and budget
    def prune_share(self, t: int) -> float:
        """Share of the free pool task ``t`` releases (0: none)."""
        c = self.config
        if not c.prune:
            return 0.0
        if c.keep_schedule == "reference":
            shares = reference_prune_shares(t + 1)
            return shares[t]
        return 1.0 - max(c.keep_first * c.keep_decay**t, c.keep_min)

    def steps(self, t: int) -> int:
        """Pruning steps of task ``t`` (each followed by retraining)."""
        if self.config.prune_steps is None:  # the reference's 10 % steps
            return max(1, math.ceil(self.prune_share(t) * 10 - 1e-9))
        return self.config.prune_steps

    def retrain_budget(self) -> float:
        """Epochs of retraining per task: the most steps any task takes, times
        ``retrain_epochs`` (0 without pruning)."""
        if not self.config.prune:
            return 0.0
        return max(self.steps(t) for t in range(100)) * self.config.retrain_epochs

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """Main-phase epochs so that training plus retraining spend ``passes`` per task."""
        c = self.config
        epochs = passes - self.retrain_budget()
        if epochs <= 0:
            raise ValueError(f"anpyc: retraining {self.retrain_budget():g} epochs per task (retrain_epochs "
                             f"{c.retrain_epochs:g}) leaves no epoch of a {passes:g}-pass budget")
        return epochs

    # ------------------------------------------------------------------ training hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.ownership.ensure(model)
        self.ownership.set_phase(None)
        self._scale = None

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        return super().penalty(model, x, y, t) if self.config.lam > 0 else None

    def before_step(self, model: ContinualModel) -> None:
        self.ownership.gate_grads_(model, lambda: None)  # pruned entries during retraining
        if self.config.update != "elementwise":
            return
        params = dict(self.penalized(model))
        for name, scale in self._scales(model).items():
            scale_grad_(params[name], scale)

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        self.ownership.restore_frozen_(model, optimizer)

    def _scales(self, model: ContinualModel) -> dict[str, Tensor]:
        """Element-wise updating: ``1 / (1 + update_strength * Omega / mean(Omega))`` per tensor."""
        if self._scale is None:
            self._scale = {}
            for name, _ in self.penalized(model):
                omega = self.omega(name)
                if omega is not None and float(omega.mean()) > 0:
                    self._scale[name] = 1.0 / (1.0 + self.config.update_strength * omega / omega.mean())
        return self._scale

    def penalized(self, model: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """The body, and a single shared head when ``consolidate_head`` (domain and class
        scenarios: every task answers through it)."""
        out = list(model.shared_parameters())
        if self.config.consolidate_head and getattr(model, "head_mode", "multi") == "single" and len(model.heads):
            out += [(f"heads.0.{n}", p) for n, p in model.heads[0].named_parameters()]
        return out

    # ------------------------------------------------------------------ after the task
    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """Prune the task's free pool (with retraining), then consolidate what it holds."""
        own = self.ownership
        own.ensure(model)
        free = own.free(model)
        share = 0.0 if (ctx.last and not self.config.prune_last) else self.prune_share(ctx.task)
        pruned = self._prune(model, task, ctx, free, share, retrain)
        for name in free:  # what the task kept of its free pool is now its own
            own.claim(name, free[name] & ~pruned[name], ctx.task)
        self._pruned = pruned
        super().after_task(model, task, ctx, retrain)  # Omega (pruned entries 0), merge, anchor
        self._pruned = None
        own.finish_task(model, ctx.task)
        self.history["kept_share"].append(1.0 - share)
        self._scale = None
        log.debug("anpyc: task %d released %.1f%% of its free pool; %.1f%% of the body is free",
                  ctx.task, 100 * share, 100 * own.free_share(model))

    def _prune(self, model: ContinualModel, task: Task, ctx: HookContext, free: Masks,
               share: float, retrain: Retrain | None) -> Masks:
        """Release ``share`` of each layer's free pool in :meth:`steps` steps, lowest by the
        task's importance first, retraining after each; a task that releases nothing trains on
        for its retraining budget instead."""
        c = self.config
        pruned = {name: torch.zeros_like(m) for name, m in free.items()}
        n_steps = self.steps(ctx.task) if share > 0 else 0
        for step in range(1, n_steps + 1):
            scores = self._scores(model, task, ctx)
            if c.prune_zero_importance and ctx.task == 0:
                for name, s in scores.items():
                    pruned[name] |= free[name] & (s <= 0)
            grow_pruned_(model, scores, free, pruned, share * step / n_steps)
            if retrain is not None and c.retrain_epochs > 0:
                keep = {n: ~pruned[n] if c.retrain_scope == "all" else free[n] & ~pruned[n] for n in pruned}
                self.ownership.set_phase(keep)
                self._retrain(retrain, c.retrain_epochs)
        self.ownership.set_phase(None)
        left = self.retrain_budget() - n_steps * c.retrain_epochs
        if c.train_on and retrain is not None and left > 1e-9:  # equal passes: the unspent retraining trains on
            self._retrain(retrain, left)
        return pruned

    def _retrain(self, retrain: Callable[..., Any], epochs: float) -> None:
        """``retrain(epochs)``, with the retraining's own learning-rate decay when it has one."""
        decay = self.config.retrain_lr_decay
        if decay is None:
            retrain(epochs)
        else:
            retrain(epochs, lr_decay=decay)

    def _scores(self, model: ContinualModel, task: Task, ctx: HookContext) -> dict[str, Tensor]:
        """The task's importance of every shared parameter (pruning ranks by it), ties broken
        by magnitude: the clipped Taylor score is exactly 0 for many weights (half of a small
        CNN's, where the first-order term's sign decides), and pruning those in index order
        would take whole leading filters; among equals the smallest weights go first."""
        scores = self._importance(model, task, ctx, with_head=False)
        params = dict(model.shared_parameters())
        return {n: _break_ties(s, params[n].detach().abs()) for n, s in scores.items()}

    def _importance(self, model: ContinualModel, task: Task, ctx: HookContext,
                    with_head: bool) -> dict[str, Tensor]:
        c = self.config
        if c.importance in ("magnitude", "uniform"):
            with imp.scoring_head(model, with_head):
                raw = imp.weight_magnitude(model)
            if c.importance == "uniform":  # every entry alike: the plain L2 pull to the anchor
                raw = {n: torch.ones_like(v) for n, v in raw.items()}
        else:
            self.count_importance_examples(ctx.task, task.train, c.importance_samples)
            with imp.scoring_head(model, with_head):
                if c.importance == "fisher":
                    raw = imp.fisher_diag(model, task.train, kind="true", max_samples=c.importance_samples,
                                          batch_size=c.importance_batch)
                else:
                    raw = imp.entropy_taylor(model, task.train, signal=c.importance_signal, form=c.taylor_form,
                                             batch_size=c.importance_batch, max_samples=c.importance_samples)
        pruned = getattr(self, "_pruned", None) or {}

        def released_zero(scores: dict[str, Tensor]) -> dict[str, Tensor]:
            return {n: v * ~pruned[n] if n in pruned else v for n, v in scores.items()}

        # released weights have importance 0: left out of their units' means, and not given
        # those means back by the shaping (a spread or softmax raises a zero)
        return released_zero(imp.normalize_per_layer(released_zero(raw), c.structure, c.beta, c.spread))

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, Tensor]:
        """What the task holds, by its importance (consolidation); nothing without ``lam`` or
        element-wise updating to use it."""
        c = self.config
        if c.lam == 0 and c.update != "elementwise":
            return {}
        head = c.consolidate_head and getattr(model, "head_mode", "multi") == "single"
        return self._importance(model, task, ctx, with_head=head)

    def record_importance(self, task: int, new: dict[str, Tensor]) -> None:
        """Statistics of the consolidated Omega (every task so far), not of one task's."""
        super().record_importance(task, {name: self.omega(name) for name in new})

    # ------------------------------------------------------------------ figures
    def free_fraction(self, model: ContinualModel) -> dict[str, float]:
        """Share of each shared tensor no task holds."""
        return {name: float((self.ownership.owner(name) == FREE).float().mean()) for name, _ in model.shared_parameters()}

    def summary(self) -> dict:
        h = self.history
        return {
            **self.ownership.summary(),
            "kept_share": h["kept_share"],
            "importance_kurtosis": [s["kurtosis"] for s in h["importance_stats"]],
            **super().summary(),
        }
