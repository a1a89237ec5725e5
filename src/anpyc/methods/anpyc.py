"""ANPyC: Adversarial Neural Pruning and synaptic Consolidation (Peng et al., IEEE TNNLS 2021,
arXiv 1912.09091).

Two forces act on the shared (body) parameters after every task:

* **Neural pruning (long-term depression).** Of the parameters the task was free to use, only
  a share is kept (chosen by ``prune_criterion``); the rest are zeroed, the task is retrained
  without them (``retrain(epochs)``), and they are released to the next task with importance
  0. The ownership map (``owner``: task id, or -1 for free) records who holds each parameter.
* **Synaptic consolidation (long-term potentiation).** The task's parameters are protected:
  ``protection='hard'`` gates their updates entirely (the element-wise updating strategy; the
  limit of an infinitely strong penalty), ``'soft'`` adds the penalty
  ``lam * sum(Omega * (theta - theta*)^2)`` with Omega the structure-aware entropy-Taylor
  importance (``max(g*theta + 0.5*theta^2*g^2, 0)``, ``g = dH/dtheta`` of the output
  entropy), and ``'scaled'`` also divides each update by ``1 + lam * Omega / mean(Omega)``.

With ``task_masks`` each task is evaluated with the weights it could see when it was trained
(its own and older tasks'), so hard protection gives exactly zero forgetting.

State (buffers, so ``state_dict`` is the whole state): per shared parameter one int16 owner, one
float Omega and one float anchor theta*: no per-task copies of the network.

Presets: the defaults are the variant that measured best on the validation split
(docs/anpyc.md); ``anpyc-reference`` (``presets/anpyc-reference.yaml``) is the authors' code:
entropy-Taylor pruning, 50% then x0.8 per task in 10% steps with retraining, penalty lambda 3.

Example:
    >>> from anpyc.methods import create
    >>> method = create("anpyc", {"keep_first": 0.3, "retrain_epochs": 1})
    >>> method.config.prune_criterion
    'magnitude'
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from anpyc import importance as imp
from anpyc.masking import (
    FREE,
    gate_grads_,
    lowest_fraction_mask,
    restore_all_frozen_,
    scale_grad_,
    task_view,
)
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register
from anpyc.utils import buffer_key

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ANPyCConfig:
    """Hyper-parameters of ANPyC (symbols as in the paper where it has them).

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
    ``reinit`` sets released parameters to ``zero`` or small ``random`` values;
    ``prune_last`` also prunes a stream's last task (useful if more tasks will follow).
    ``exhausted_below``: below this free share of the body the pool is exhausted, and
    ``exhausted_policy`` says what the next task does: ``reclaim`` releases the
    ``reclaim_share`` of each layer's owned weights that rank lowest by ``reclaim_by``
    (``magnitude`` or consolidated ``importance`` Omega; re-initialised and hidden from the
    old tasks' views, so those forget a little) and the task trains as usual; ``consolidate``
    trains every weight under the soft penalty (old tasks see theirs move); ``head_only``
    freezes the body (no forgetting; the task learns a head on the frozen features).
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
    retrain_epochs: int = 1
    prune_unit: Literal["weight", "unit"] = "weight"
    reinit: Literal["zero", "random"] = "random"
    prune_last: bool = False
    exhausted_below: float = 0.005
    exhausted_policy: Literal["reclaim", "consolidate", "head_only"] = "reclaim"
    reclaim_share: float = 0.05
    reclaim_by: Literal["magnitude", "importance"] = "magnitude"

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
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


def _norm_parameters(model) -> set[str]:
    """Names of normalisation-layer scales and shifts. They are not pruned element-wise: zeroing
    a batch-norm scale silences its whole channel, so the task that first trains them keeps
    them (like the running statistics, frozen after the first task); unit pruning still
    releases those of a released unit."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    prefix = {id(p): n for n, p in model.shared_parameters()}
    names = set()
    for module in model.modules():
        if isinstance(module, norm_types):
            names.update(prefix[id(p)] for p in module.parameters(recurse=False) if id(p) in prefix)
    return names


def _unit_followers(params: dict[str, Tensor]) -> dict[str, list[str]]:
    """For each weight tensor, the 1-D parameters after it (in definition order) that hold one
    value per output unit: its bias and a following batch norm's scale and shift."""
    out: dict[str, list[str]] = {}
    current = None
    for name, p in params.items():
        if p.dim() > 1:
            current = name
            out[name] = []
        elif current is not None and p.numel() == params[current].shape[0]:
            out[current].append(name)
    return out


@register
class ANPyC(QuadraticPenalty):
    """ANPyC behind the common hooks; see the module docstring."""

    name = "anpyc"
    config_cls = ANPyCConfig

    def __init__(self, config: ANPyCConfig | None = None) -> None:
        super().__init__(config)
        self.history: dict = {"free_fraction": {}, "kept_share": [], "importance_stats": [], "exhausted": [], "reclaimed": []}
        self._trainable: dict[str, Tensor] = {}  # derived per phase, never saved
        self._frozen_values: dict[str, Tensor] = {}
        self._grad_scale: dict[str, Tensor] = {}
        self._soft = False  # penalty instead of gating (soft protection, or exhausted pool)
        self._exhausted = False

    # ------------------------------------------------------------------ state
    def owner(self, name: str) -> Tensor | None:
        return getattr(self, buffer_key("owner", name), None)

    def _ensure_owner(self, model) -> None:
        for name, p in model.shared_parameters():
            if self.owner(name) is None:
                self.register_buffer(buffer_key("owner", name), torch.full_like(p, FREE, dtype=torch.int16))

    def get_extra_state(self) -> dict:
        return self.history

    def set_extra_state(self, state: dict) -> None:
        self.history = state

    def free_fraction(self, model) -> dict[str, float]:
        """Share of each shared tensor still free for future tasks."""
        return {name: float((self.owner(name) == FREE).float().mean()) for name, _ in model.shared_parameters()}

    def _total_free(self, model) -> float:
        n = sum(p.numel() for _, p in model.shared_parameters())
        return sum(float((self.owner(name) == FREE).sum()) for name, _ in model.shared_parameters()) / max(n, 1)

    # ------------------------------------------------------------------ phases
    def _set_phase(self, model, trainable: dict[str, Tensor]) -> None:
        """Which entries may move from now on; everything else is restored after each step."""
        self._trainable = trainable
        self._frozen_values = {name: p.detach().clone() for name, p in model.shared_parameters()}

    def before_task(self, model, task) -> None:
        self._ensure_owner(model)
        t = int(self.tasks_seen)
        free_share = self._total_free(model)
        policy = self.config.exhausted_policy
        exhausted = self.config.protection == "hard" and t > 0 and free_share < self.config.exhausted_below
        self.history["exhausted"].append(exhausted)
        if exhausted and policy == "reclaim":
            released = self._reclaim(model, t)
            self.history.setdefault("reclaimed", []).append({"task": t, "released_share": released})
            log.warning(
                "anpyc: free pool exhausted before task %d (%.2f%% free): released the %.0f%% of owned weights "
                "lowest by %s (%.2f%% of the body); earlier tasks lose them", t, 100 * free_share,
                100 * self.config.reclaim_share, self.config.reclaim_by, 100 * released,
            )
            exhausted = False
        elif exhausted:
            log.warning(
                "anpyc: free pool exhausted before task %d (%.2f%% free): %s for this task",
                t, 100 * free_share, "consolidation only" if policy == "consolidate" else "only the head trains",
            )
        self._exhausted = exhausted
        self._soft = self.config.protection != "hard" or (exhausted and policy == "consolidate")
        if self._soft:
            trainable = {name: torch.ones_like(p, dtype=torch.bool) for name, p in model.shared_parameters()}
        elif exhausted:  # head_only
            trainable = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in model.shared_parameters()}
        else:
            trainable = {name: self.owner(name) == FREE for name, _ in model.shared_parameters()}
        self._set_phase(model, trainable)
        self._grad_scale = {}
        if self.config.protection == "scaled":
            for name, _ in model.shared_parameters():
                omega = self.omega(name)
                if omega is not None and float(omega.mean()) > 0:
                    self._grad_scale[name] = 1.0 / (1.0 + self.config.lam * omega / omega.mean())

    def penalty(self, model, x: Tensor, t: Tensor) -> Tensor | None:
        if not self._soft:
            return None  # hard gating: protected entries cannot move, the penalty is exactly 0
        return super().penalty(model, x, t)

    def before_step(self, model) -> None:
        if not self._soft:
            gate_grads_(model, self._trainable)
        for name, p in model.shared_parameters():
            scale = self._grad_scale.get(name)
            if scale is not None:
                scale_grad_(p, scale)

    def after_step(self, model, optimizer) -> None:
        if self._soft and not any(not m.all() for m in self._trainable.values()):
            return
        restore_all_frozen_(model, self._trainable, self._frozen_values, optimizer)

    def eval_context(self, model, task_id: int):
        """Evaluate task ``task_id`` with only the weights it could see when it was trained."""
        if not self.config.task_masks:
            return contextlib.nullcontext()
        return task_view(model, self.owner, task_id, int(self.tasks_seen))

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

    def _scores(self, model, task, t: int) -> dict[str, Tensor]:
        c = self.config
        kw = {"batch_size": c.importance_batch, "max_samples": c.importance_samples}
        if c.prune_criterion == "magnitude":
            scores = imp.weight_magnitude(model)
        elif c.prune_criterion == "taylor":
            scores = imp.entropy_taylor(model, task.train, signal=c.importance_signal, form=c.taylor_form, **kw)
        elif c.prune_criterion == "taylor_abs":
            scores = imp.taylor_abs(model, task.train, signal="loss", **kw)
        else:
            g = torch.Generator().manual_seed(7919 * (t + 1))
            scores = {name: torch.rand(p.shape, generator=g).to(p.device) for name, p in model.shared_parameters()}
        return imp.normalize_per_layer(scores, c.structure, c.beta) if c.prune_criterion != "random" else scores

    def after_task(self, model, task, retrain=None) -> None:
        c = self.config
        self._ensure_owner(model)
        t = int(self.tasks_seen)
        params = dict(model.shared_parameters())
        free = {name: self.owner(name) == FREE for name in params}
        never_pruned = _norm_parameters(model)
        last = bool(task.info.get("last", False)) if hasattr(task, "info") else False
        keep = 1.0 if (last and not c.prune_last) or self._exhausted else self.keep_share(t)
        target = 1.0 - keep
        pruned = {name: torch.zeros_like(m) for name, m in free.items()}
        if target > 0:
            if retrain is None and c.retrain_epochs > 0:
                log.warning("anpyc: no retrain callback given; pruning without retraining")
            n_steps = max(1, math.ceil(target / c.prune_step - 1e-9))
            for step in range(1, n_steps + 1):
                goal = min(target, step * c.prune_step)  # cumulative share of the free pool pruned
                scores = self._scores(model, task, t)
                with torch.no_grad():
                    for name, p in params.items():
                        if name in never_pruned:
                            continue
                        n_free = int(free[name].sum())
                        remaining = free[name] & ~pruned[name]
                        n_rem = int(remaining.sum())
                        if n_rem == 0:
                            continue
                        want = goal * n_free - int(pruned[name].sum())
                        unit_dim = 0 if c.prune_unit == "unit" and p.dim() > 1 else None
                        new = lowest_fraction_mask(scores[name], remaining, max(want, 0) / n_rem, unit_dim)
                        if unit_dim is not None:
                            # a pruned unit takes its per-unit parameters (bias, BN scale and shift) with it
                            unit_gone = new.reshape(new.shape[0], -1).any(1)
                            for follower in _unit_followers(params).get(name, []):
                                pruned[follower] |= unit_gone & free[follower]
                        pruned[name] |= new
                    for name, p in params.items():
                        p.masked_fill_(pruned[name], 0.0)
                if retrain is not None and c.retrain_epochs > 0:
                    self._set_phase(model, {name: free[name] & ~pruned[name] for name in params})
                    retrain(c.retrain_epochs)
        # ownership: what the task kept is now its own; the pruned rest is released
        for name in params:
            self.owner(name)[free[name] & ~pruned[name]] = t
        # consolidation: importance of what the task holds (pruned entries get 0)
        omega = imp.entropy_taylor(
            model, task.train, signal=c.importance_signal, form=c.taylor_form,
            batch_size=c.importance_batch, max_samples=c.importance_samples,
        )
        omega = imp.normalize_per_layer(omega, c.structure, c.beta)
        for name in omega:
            omega[name] = omega[name] * (self.owner(name) >= 0)
        self.merge_importance(omega)
        self.anchor(model)
        self._reset_free(params, seed=104729 * (t + 1))
        self._record(model, t, keep)
        self._trainable, self._frozen_values, self._grad_scale = {}, {}, {}
        super(QuadraticPenalty, self).after_task(model, task, retrain)

    def _reset_free(self, params: dict[str, Tensor], seed: int) -> None:
        """Give every free entry its starting value for the next task: small random values
        (``reinit='random'``, scaled by fan-in) or zero."""
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            for name, p in params.items():
                free = self.owner(name) == FREE
                if self.config.reinit == "random":
                    fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                    fresh = torch.randn(p.shape, generator=g).to(p.device) * (0.5 / math.sqrt(fan_in))
                else:
                    fresh = torch.zeros_like(p)
                p.copy_(torch.where(free, fresh, p))

    def _reclaim(self, model, t: int) -> float:
        """Release ``reclaim_share`` of each prunable layer's owned weights, those ranked lowest
        by ``reclaim_by`` (|theta|, or the consolidated Omega summed over every task that used
        them); returns the share of the body released."""
        params = dict(model.shared_parameters())
        never_pruned = _norm_parameters(model)
        released = 0
        with torch.no_grad():
            for name in params:
                owner, omega = self.owner(name), self.omega(name)
                if name in never_pruned or omega is None:
                    continue
                score = params[name].detach().abs() if self.config.reclaim_by == "magnitude" else omega
                release = lowest_fraction_mask(score, owner >= 0, self.config.reclaim_share)
                owner[release] = FREE
                omega[release] = 0.0
                released += int(release.sum())
        self._reset_free(params, seed=15485863 * (t + 1))
        return released / max(sum(p.numel() for p in params.values()), 1)

    def _record(self, model, t: int, keep: float) -> None:
        for name, share in self.free_fraction(model).items():
            self.history["free_fraction"].setdefault(name, []).append(share)
        self.history["kept_share"].append(keep)
        stats = imp.importance_stats({n: self.omega(n) for n, _ in model.shared_parameters()})
        self.history["importance_stats"].append({"task": t, **stats})
        log.debug(  # the same figures are in metrics.json; keep the progress bar clean
            "anpyc: task %d kept %.1f%% of its free pool; %.1f%% of the body is free; importance kurtosis %s",
            t, 100 * keep, 100 * self._total_free(model), stats["kurtosis"] and round(stats["kurtosis"], 1),
        )

    def summary(self) -> dict:
        h = self.history
        out = {
            "free_fraction": h["free_fraction"],
            "kept_share": h["kept_share"],
            "importance_stats": h["importance_stats"],
            "importance_kurtosis": [s["kurtosis"] for s in h["importance_stats"]],
            "exhausted_tasks": [i for i, e in enumerate(h["exhausted"]) if e],
            "reclaimed": h.get("reclaimed", []),
        }
        if h["free_fraction"]:
            sizes = {name: getattr(self, buffer_key("owner", name)).numel() for name in h["free_fraction"]}
            total = sum(sizes.values())
            out["free_fraction_total"] = sum(h["free_fraction"][n][-1] * s for n, s in sizes.items()) / max(total, 1)
        return out
