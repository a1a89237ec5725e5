"""Mask bookkeeping shared by the pruning methods (ANPyC, PackNet, HAT-like masks).

Masking the gradient is not enough: SGD's weight decay and momentum, and Adam's moments, move
an entry whose gradient is zero. So the update is masked: after ``optimizer.step()`` frozen
entries are written back and their optimizer-state slots zeroed (:class:`FrozenEntries`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from anpyc.utils import buffer_key

if TYPE_CHECKING:
    from anpyc.models.generative import GenerativeModel
    from anpyc.models.heads import ContinualModel

_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

FREE = -1  # owner id of a parameter no task holds
Masks = dict[str, Tensor]


def scale_grad_(param: torch.nn.Parameter, scale: Tensor) -> None:
    """Multiply each gradient entry by ``scale`` (soft element-wise updating)."""
    if param.grad is not None:
        param.grad.mul_(scale)


def lowest_fraction_mask(scores: Tensor, candidates: Tensor, fraction: float, unit_dim: int | None = None) -> Tensor:
    """Bool mask of the ``fraction`` of ``candidates`` with the lowest ``scores`` (to prune).

    ``unit_dim=0`` prunes whole output units (rows of a linear weight, filters of a conv
    weight): units are ranked by the summed score of their candidate entries, and every
    candidate entry of a pruned unit is pruned. Ties are broken by position, so the result
    is deterministic.

    Example:
        >>> lowest_fraction_mask(torch.tensor([3., 1., 2., 4.]), torch.ones(4, dtype=torch.bool), 0.5).tolist()
        [False, True, True, False]
    """
    if fraction <= 0:
        return torch.zeros_like(candidates, dtype=torch.bool)
    candidates = candidates.bool()
    if unit_dim is not None and scores.dim() >= 1:
        flat_scores = (scores * candidates).reshape(scores.shape[0], -1).sum(1)
        unit_has = candidates.reshape(scores.shape[0], -1).any(1)
        unit_prune = lowest_fraction_mask(flat_scores, unit_has, fraction)
        shape = (-1,) + (1,) * (scores.dim() - 1)
        return candidates & unit_prune.reshape(shape)
    n_cand = int(candidates.sum())
    k = int(round(fraction * n_cand))
    if k <= 0:
        return torch.zeros_like(candidates)
    if k >= n_cand:
        return candidates.clone()
    masked = torch.where(candidates, scores.float(), torch.full_like(scores, float("inf"), dtype=torch.float))
    order = masked.flatten().argsort(stable=True)[:k]
    out = torch.zeros(candidates.numel(), dtype=torch.bool, device=candidates.device)
    out[order] = True
    return out.reshape(candidates.shape)


def norm_parameters(model: ContinualModel | GenerativeModel) -> set[str]:
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


def unit_followers(params: dict[str, Tensor]) -> dict[str, list[str]]:
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



@torch.no_grad()
def grow_pruned_(model: ContinualModel | GenerativeModel, scores: Masks, free: Masks, pruned: Masks,
                 goal: float, by_unit: bool = False) -> None:
    """Grow ``pruned`` (in place) so that ``goal`` of each prunable layer's free pool is pruned,
    lowest ``scores`` first, and zero the pruned entries of the model. Normalisation scales and
    shifts are never pruned element-wise (:func:`norm_parameters`); with ``by_unit`` whole output
    units go (rows, conv filters: :func:`lowest_fraction_mask` with ``unit_dim=0``), taking
    their bias and batch-norm scale and shift with them.

    Example:
        >>> from anpyc.models import build_model
        >>> from anpyc.config import ModelConfig
        >>> model = build_model(ModelConfig(hidden=(4,)), (1, 2, 2))
        >>> free = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.shared_parameters()}
        >>> pruned = {n: torch.zeros_like(m) for n, m in free.items()}
        >>> grow_pruned_(model, {n: p.abs() for n, p in model.shared_parameters()}, free, pruned, 0.5)
        >>> int(pruned["body.1.weight"].sum())
        8
    """
    params = dict(model.shared_parameters())
    never_pruned = norm_parameters(model)
    followers = unit_followers(params)
    for name, p in params.items():
        remaining = free[name] & ~pruned[name]
        n_rem = int(remaining.sum())
        if name in never_pruned or n_rem == 0:
            continue
        want = goal * int(free[name].sum()) - int(pruned[name].sum())
        unit_dim = 0 if by_unit and p.dim() > 1 else None
        new = lowest_fraction_mask(scores[name], remaining, max(want, 0) / n_rem, unit_dim)
        if unit_dim is not None:  # a pruned unit takes its bias and BN scale/shift with it
            unit_gone = new.reshape(new.shape[0], -1).any(1)
            for follower in followers.get(name, []):
                pruned[follower] |= unit_gone & free[follower]
        pruned[name] |= new
    for name, p in params.items():
        p.masked_fill_(pruned[name], 0.0)


def hidden_from(model: ContinualModel | GenerativeModel, owner_of: Callable[[str], Tensor | None],
                task_id: int, tasks_done: int) -> Masks:
    """The shared entries task ``task_id`` did not see when it was trained: owned by a later
    task, or free once it is finished (the free pool is seen only by the task in training).
    Parameters without an owner map, or hiding nothing, are left out."""
    out = {}
    for name, _ in model.shared_parameters():
        owner = owner_of(name)
        if owner is None:
            continue
        hidden = owner > task_id
        if tasks_done > task_id:  # a finished task never saw the free pool
            hidden |= owner == FREE
        if bool(hidden.any()):
            out[name] = hidden
    return out


@contextlib.contextmanager
def hide(model: ContinualModel | GenerativeModel, hidden: Masks,
         visible: Masks | None = None) -> Iterator[None]:
    """Zero the ``hidden`` entries of the shared parameters for the duration and restore them
    afterwards. The zeroing multiplies by ``visible`` (``~hidden`` as 0/1 in the parameter's
    dtype; pass it to reuse it) and adds ``+0.0``: for every finite weight that writes what a
    boolean fill would, at a fraction of its cost; a parameter with a non-finite entry is filled."""
    saved = []
    with torch.no_grad():
        params = dict(model.shared_parameters())
        for name, mask in hidden.items():
            p = params[name]
            saved.append((p, p.detach().clone()))
            if bool(torch.isfinite(p.sum())):  # every entry finite (an overflowing sum only falls back to the fill)
                p.mul_(visible[name] if visible is not None else (~mask).to(p.dtype)).add_(0.0)
            else:
                p.masked_fill_(mask, 0.0)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)


class FrozenEntries:
    """The entries of the shared parameters that must not move during one training phase
    (``trainable`` masks of the parameters' shapes, or broadcasting to them) and the values they
    keep: before each optimizer step their gradients are zeroed (:meth:`gate_grads_`), after it
    they are written back and their optimizer-state slots cleared (:meth:`restore_`). The masks
    are turned once per phase into a float gate and flat indices, so a step costs a
    multiplication and two indexed writes rather than boolean selections over every entry
    (the same values, bit for bit).

    Example:
        >>> from anpyc.models import build_model
        >>> from anpyc.config import ModelConfig
        >>> model = build_model(ModelConfig(hidden=(4,)), (1, 2, 2))
        >>> frozen = FrozenEntries(model, {"body.1.weight": torch.zeros(4, 4, dtype=torch.bool)})
        >>> before = model.body[1].weight.detach().clone()
        >>> with torch.no_grad():
        ...     _ = model.body[1].weight.add_(1.0)
        >>> frozen.restore_(model)
        >>> torch.equal(model.body[1].weight, before)
        True
    """

    def __init__(self, model: ContinualModel | GenerativeModel,
                 trainable: dict[str, Tensor]) -> None:
        params = dict(model.shared_parameters())
        self.gate = {n: m.to(params[n].dtype) for n, m in trainable.items()}
        self.index = {n: (~m.bool()).expand_as(params[n]).flatten().nonzero().squeeze(1)  # a mask may broadcast (per unit)
                      for n, m in trainable.items()}
        self.values = {n: params[n].detach().flatten()[i].clone() for n, i in self.index.items()}
        self._settled: torch.optim.Optimizer | None = None  # the optimizer whose slots were cleared

    def gate_grads_(self, model: ContinualModel | GenerativeModel) -> None:
        """Zero the gradients of the frozen entries (before the optimizer step)."""
        for name, p in model.shared_parameters():
            if name in self.gate and p.grad is not None:
                p.grad.mul_(self.gate[name])

    @torch.no_grad()
    def restore_(self, model: ContinualModel | GenerativeModel,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        """Write the frozen entries back and clear their optimizer-state slots (after the step).

        Once that was done after a step of ``optimizer``, and while the optimizer is one whose
        step leaves an entry with a zero gradient and zero slots where it is (:func:`_still_at_zero_grad`),
        the frozen entries cannot have moved: a parameter is then only checked (its sum finite:
        a non-finite gradient at a frozen entry would have made it NaN) and written back only if
        it is not. The same values, bit for bit, at a fraction of the cost."""
        settled = optimizer is not None and optimizer is self._settled and _still_at_zero_grad(optimizer)
        for name, p in model.shared_parameters():
            index = self.index.get(name)
            if index is None or index.numel() == 0 or (settled and bool(torch.isfinite(p.sum()))):
                continue
            _write_at_(p.data, index, self.values[name])
            state = optimizer.state.get(p) if optimizer is not None else None
            for key in _STATE_KEYS if state else ():
                buf = state.get(key)
                if isinstance(buf, Tensor) and buf.shape == p.shape:
                    _write_at_(buf, index, None)
        self._settled = optimizer


def _still_at_zero_grad(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a step of ``optimizer`` leaves in place every entry whose gradient and state
    slots are zero: plain SGD (momentum, dampening, Nesterov) and Adam, without weight decay
    (which would move the entry by its value). Other optimizers are not assumed to."""
    return type(optimizer) in (torch.optim.SGD, torch.optim.Adam) and all(
        not group.get("weight_decay") for group in optimizer.param_groups)


def _write_at_(t: Tensor, index: Tensor, values: Tensor | None) -> None:
    """Write ``values`` (``None``: zeros) at the flat, row-major ``index`` of ``t``: in place
    through a view when ``t`` is contiguous, as parameters and optimizer buffers are."""
    flat = t.view(-1) if t.is_contiguous() else t.flatten()
    if values is None:
        flat.index_fill_(0, index, 0.0)
    else:
        flat.index_copy_(0, index, values)
    if not t.is_contiguous():
        t.copy_(flat.view(t.shape))


class Ownership(nn.Module):
    """Who holds each shared weight, which entries may move now, and what each task sees:
    the one piece of bookkeeping behind every mask method (PackNet, ANPyC).

    State (buffers and extra state, so ``state_dict`` is all of it): one ``int16`` owner per
    shared entry (:data:`FREE` or the task that keeps it), ``tasks_done`` (finished tasks: a
    finished task never saw the free pool) and, per task, the free share of each layer and
    of the whole body. Derived, never saved: the current phase's trainable masks and the
    values frozen entries are restored to. After a restore they are rebuilt lazily (from the
    ``rule`` the method passes and from the current weights, which frozen entries never left).

    Example:
        >>> from anpyc.models import build_model
        >>> from anpyc.config import ModelConfig
        >>> model = build_model(ModelConfig(hidden=(4,)), (1, 2, 2))
        >>> own = Ownership()
        >>> own.ensure(model)
        >>> own.free_share(model)
        1.0
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("tasks_done", torch.zeros((), dtype=torch.long))
        self.history: dict = {"free_fraction": {}, "free_fraction_total": []}
        self._trainable: Masks | None = None
        self._frozen: FrozenEntries | None = None
        self._hidden: dict[tuple[int, int], tuple[Masks, Masks]] = {}  # per (task, tasks done): what it does not see

    def get_extra_state(self) -> dict:
        return copy.deepcopy(self.history)

    def set_extra_state(self, state: dict) -> None:
        self.history = copy.deepcopy(state)
        self._hidden = {}  # the owners are loaded too

    # ------------------------------------------------------------------ owners
    def ensure(self, model: ContinualModel | GenerativeModel) -> None:
        """Create a free owner map for every shared parameter that has none yet."""
        for name, p in model.shared_parameters():
            if self.owner(name) is None:
                self.register_buffer(buffer_key("owner", name), torch.full(p.shape, FREE, dtype=torch.int16, device=p.device))
                self._hidden = {}

    def owner(self, name: str) -> Tensor | None:
        return getattr(self, buffer_key("owner", name), None)

    def free(self, model: ContinualModel | GenerativeModel) -> Masks:
        """Free entries of every shared parameter."""
        missing = [name for name, _ in model.shared_parameters() if self.owner(name) is None]
        if missing:  # your own loop skipped before_task (the one hook that creates them)
            raise RuntimeError(f"no owner map for {missing[0]}: call the method's before_task() before training the task")
        return {name: self.owner(name) == FREE for name, _ in model.shared_parameters()}

    def free_share(self, model: ContinualModel | GenerativeModel) -> float:
        """Share of the whole body that is free (all of it for a body without parameters: nothing
        is owned there, so no pool runs out)."""
        sizes = [(name, p.numel()) for name, p in model.shared_parameters()]
        total = sum(n for _, n in sizes)
        if total == 0:
            return 1.0
        return sum(float((self.owner(name) == FREE).sum()) for name, _ in sizes) / total

    def claim(self, name: str, mask: Tensor, task: int) -> None:
        self.owner(name)[mask] = task
        self._hidden = {}

    def release(self, name: str, mask: Tensor) -> None:
        self.owner(name)[mask] = FREE
        self._hidden = {}

    # ------------------------------------------------------------------ phases
    def set_phase(self, trainable: Masks | None) -> None:
        """Which entries may move from now on (``None``: derive them from the method's rule
        at the next step); the frozen values are snapshot before the phase's first step."""
        self._trainable, self._frozen = trainable, None

    def gate_grads_(self, model: ContinualModel | GenerativeModel,
                    rule: Callable[[], Masks | None]) -> None:
        """Zero the gradients of entries that must not move (before the optimizer step)."""
        if self._trainable is None:
            self._trainable = rule()
        if self._trainable is None:
            return
        if self._frozen is None:
            self._frozen = FrozenEntries(model, self._trainable)
        self._frozen.gate_grads_(model)

    def restore_frozen_(self, model: ContinualModel | GenerativeModel,
                        optimizer: torch.optim.Optimizer) -> None:
        """Write frozen entries back and clear their optimizer state (after the step)."""
        if self._frozen is not None:  # built from _trainable at the phase's first step
            self._frozen.restore_(model, optimizer)

    # ------------------------------------------------------------------ tasks
    def view(self, model: ContinualModel | GenerativeModel,
             task_id: int | None) -> contextlib.AbstractContextManager[None]:
        """The weights task ``task_id`` could see when it was trained (a no-op for ``None``:
        without a task id every weight is in use)."""
        if task_id is None:
            return contextlib.nullcontext()
        key = (task_id, int(self.tasks_done))
        if key not in self._hidden:  # the owners change only at claims and releases
            hidden = hidden_from(model, self.owner, task_id, int(self.tasks_done))
            params = dict(model.shared_parameters())
            self._hidden[key] = (hidden, {n: (~m).to(params[n].dtype) for n, m in hidden.items()})
        return hide(model, *self._hidden[key])

    def finish_task(self, model: ContinualModel | GenerativeModel, task: int) -> None:
        """Task ``task`` is over: count it, record the free share per layer, end the phase."""
        self.tasks_done.fill_(task + 1)
        for name, _ in model.shared_parameters():
            share = float((self.owner(name) == FREE).float().mean())
            self.history["free_fraction"].setdefault(name, []).append(share)
        self.history["free_fraction_total"].append(self.free_share(model))
        self.set_phase(None)

    def summary(self) -> dict:
        """Free capacity in one shape for every mask method: per layer after each task, the
        whole body after each task (``free_fraction_total_curve``) and after the last."""
        curve = list(self.history["free_fraction_total"])
        return {
            "free_fraction": {k: list(v) for k, v in self.history["free_fraction"].items()},
            "free_fraction_total_curve": curve,
            "free_fraction_total": curve[-1] if curve else 1.0,
        }


def prune_lowest(
    scores: Masks, candidates: Masks, share: float, unit_dim: int | None = None
) -> Masks:
    """Per tensor, the ``share`` of its candidate entries with the lowest scores (see
    :func:`lowest_fraction_mask`); tensors without candidates prune nothing.

    Example:
        >>> prune_lowest({"w": torch.tensor([3., 1., 2.])}, {"w": torch.ones(3, dtype=torch.bool)}, 1 / 3)["w"].tolist()
        [False, True, False]
    """
    out = {}
    for name, cand in candidates.items():
        dim = unit_dim if scores[name].dim() > 1 else None
        out[name] = lowest_fraction_mask(scores[name], cand, share, unit_dim=dim)
    return out


REINIT = ("zero", "random", "keep")


@torch.no_grad()
def reinit_free_(model: ContinualModel | GenerativeModel, ownership: Ownership, mode: str,
                 generator: torch.Generator, scale: float = 0.5,
                 kept: dict[str, Tensor] | None = None) -> None:
    """Give every free entry its starting value for the next task: small random values
    (``mode='random'``: normal, std ``scale / sqrt(fan_in)``, from ``generator``), zero, or
    the value it was trained to (``mode='keep'``: from ``kept``, the :func:`snapshot` taken
    before pruning; without ``kept`` the current values stay), so that the next task
    starts from the network the last one trained, as fine-tuning would.

    Example:
        >>> from anpyc.models import build_model
        >>> from anpyc.config import ModelConfig
        >>> model = build_model(ModelConfig(hidden=(4,)), (1, 2, 2))
        >>> own = Ownership(); own.ensure(model)
        >>> reinit_free_(model, own, "zero", torch.Generator())
        >>> float(sum(p.detach().abs().sum() for _, p in model.shared_parameters()))
        0.0
    """
    if mode not in REINIT:
        raise ValueError(f"unknown re-initialisation {mode!r}; known: {', '.join(REINIT)}")
    for name, p in model.shared_parameters():
        free = ownership.owner(name) == FREE
        if mode == "keep":
            if kept is not None and name in kept:
                p.copy_(torch.where(free, kept[name].to(p.device), p))
            continue
        if mode == "random":
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            fresh = torch.randn(p.shape, generator=generator).to(p.device) * (scale / fan_in**0.5)
        else:
            fresh = torch.zeros_like(p)
        p.copy_(torch.where(free, fresh, p))


# ----------------------------------------------------------------------------- pruning guard
@dataclass(frozen=True)
class PruneGuard:
    """How a mask method guards a pruning with the task's validation accuracy.

    ``tolerance``: the largest drop allowed after pruning (and retraining), never smaller
    than ``z`` binomial standard errors of the validation accuracy (a drop within the noise of
    a small validation split is no drop); ``search_drop``: the keep share grows until the
    pruned, not yet retrained, accuracy is within this of the accuracy before pruning;
    ``chance_margin``: a task within this of chance learnt nothing and is not pruned."""

    tolerance: float = 0.01
    search_drop: float = 0.1
    chance_margin: float = 0.05
    z: float = 2.0


PruneFrom = Callable[[float, bool], Masks]  # (keep share, retrain?) -> pruned masks, from the pre-pruning state


def guarded_prune(
    guard: PruneGuard, model: nn.Module, planned: float, prune_from: PruneFrom,
    validate: Callable[[], float],
    n_val: int, chance: float, train_on: Callable[[], None] | None = None,
) -> tuple[float, Masks | None, dict]:
    """Prune with the guard: returns the keep share used, the pruned masks (``None``: nothing
    pruned) and a record of the validation accuracies for ``metrics.json``
    (``budget_spent``: whether the task's retraining budget has been used).

    1. ``before``: the task's validation accuracy before pruning. Near chance the task has not
       learnt yet: it trains on for its retraining budget (``train_on``; without it, it is not
       pruned) and is then pruned without retraining to the smallest keep share within the
       tolerance; still near chance, it learnt nothing and keeps only the planned share
       (holding the whole pool would only starve the tasks after it).
    2. The keep share grows from ``planned`` (x2 at a time) until the pruned accuracy, not
       retrained, is within ``search_drop`` of ``before`` (evaluations only, no training pass).
    3. Prune to it and retrain; if the task is then more than the tolerance below ``before``,
       the retraining is undone and keep shares from that one up are tried without retraining
       (evaluations only) until one is within the tolerance: at worst the task keeps every
       weight it trained.
    """
    before, saved = validate(), snapshot(model)
    record: dict = {"val_before": before, "planned_keep": planned, "budget_spent": False}
    near_chance = before <= chance + guard.chance_margin
    if near_chance and train_on is None:
        record.update(keep=1.0, reason="near chance: not pruned")
        return 1.0, None, record
    if near_chance:
        train_on()
        before, saved = validate(), snapshot(model)
        record.update(val_trained_on=before, budget_spent=True)
    tol = max(guard.tolerance, guard.z * math.sqrt(max(before * (1 - before), 1e-12) / max(n_val, 1)))
    candidates = keep_candidates(planned)
    accs: dict[float, float] = {}

    def pruned_accuracy(k: float) -> float:
        restore(model, saved)
        prune_from(k, False)
        accs[k] = validate()
        return accs[k]

    def holding(drop: float, start: float) -> float:  # the first keep share within ``drop``
        return next(k for k in candidates if k >= start and (k >= 1.0 or before - pruned_accuracy(k) <= drop))

    if near_chance:  # the budget is spent: prune without retraining
        learnt = before > chance + guard.chance_margin
        keep = holding(tol, planned) if learnt else planned
        restore(model, saved)
        record.update(tolerance=tol, keep=keep, reason="near chance before pruning: trained on, then pruned without "
                      "retraining" if learnt else "near chance, also after training on: keeps the planned share")
        return keep, (prune_from(keep, False) if keep < 1.0 else None), record
    keep = holding(guard.search_drop, planned)
    restore(model, saved)
    pruned = prune_from(keep, True) if keep < 1.0 else None
    after = validate()
    record.update(tolerance=tol, val_pruned=accs.get(keep, before), val_retrained=after, budget_spent=keep < 1.0)
    if before - after > tol and keep < 1.0:  # undo the retraining; keep more if need be, without retraining
        keep = holding(tol, keep)
        restore(model, saved)
        pruned = prune_from(keep, False) if keep < 1.0 else None
        record["reason"] = f"retrained {after:.4f} more than {tol:.4f} below {before:.4f}: kept {keep:g}, not retrained"
    record["keep"] = keep
    return keep, pruned, record


def keep_candidates(keep: float, growth: float = 2.0) -> list[float]:
    """Keep shares to try, from the planned one up to keeping everything.

    Example:
        >>> keep_candidates(0.15)
        [0.15, 0.3, 0.6, 1.0]
    """
    out = [keep]
    while out[-1] < 1.0:
        out.append(min(1.0, round(out[-1] * growth, 6)))
    return out


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of ``model``, copied (to undo a pruning exactly)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def restore(model: nn.Module, saved: dict[str, Tensor]) -> None:
    for k, v in model.state_dict().items():
        v.copy_(saved[k])
