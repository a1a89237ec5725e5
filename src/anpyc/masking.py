"""Mask bookkeeping shared by the pruning methods (ANPyC, PackNet).

Masking the gradient is not enough: SGD's weight decay and momentum, and Adam's moments, move
an entry whose gradient is zero. So the update is masked: after ``optimizer.step()`` frozen
entries are written back and their optimizer-state slots zeroed (:func:`restore_frozen_`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def gate_grad_(param: torch.nn.Parameter, trainable: Tensor) -> None:
    """Zero the gradient of entries that must not learn (``trainable`` is bool or 0/1)."""
    if param.grad is not None:
        param.grad.mul_(trainable.to(param.grad.dtype))


def scale_grad_(param: torch.nn.Parameter, scale: Tensor) -> None:
    """Multiply each gradient entry by ``scale`` (soft element-wise updating)."""
    if param.grad is not None:
        param.grad.mul_(scale)


@torch.no_grad()
def restore_frozen_(param: torch.nn.Parameter, trainable: Tensor, frozen_values: Tensor, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write ``frozen_values`` back into non-trainable entries and clear their optimizer state."""
    param.data.copy_(torch.where(trainable, param.data, frozen_values))
    if optimizer is not None:
        state = optimizer.state.get(param)
        if state:
            for key in _STATE_KEYS:
                buf = state.get(key)
                if isinstance(buf, Tensor) and buf.shape == param.shape:
                    buf.masked_fill_(~trainable, 0.0)


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


FREE = -1  # owner id of a parameter no task holds


@contextlib.contextmanager
def task_view(model, owner_of: Callable[[str], Tensor | None], task_id: int, tasks_seen: int) -> Iterator[None]:
    """Show task ``task_id`` only the shared weights it could see when it was trained (owned by
    it or an earlier task; the free pool too while it is the task in training), zeroing the
    rest for the duration and restoring them afterwards (PackNet, ANPyC)."""
    saved = []
    with torch.no_grad():
        for name, p in model.shared_parameters():
            owner = owner_of(name)
            if owner is None:
                continue
            hidden = owner > task_id
            if tasks_seen > task_id:  # a finished task never saw the free pool
                hidden |= owner == FREE
            if bool(hidden.any()):
                saved.append((p, p.detach().clone()))
                p.masked_fill_(hidden, 0.0)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)


def gate_grads_(model, trainable: dict[str, Tensor]) -> None:
    """:func:`gate_grad_` for every shared parameter that has a mask."""
    for name, p in model.shared_parameters():
        if name in trainable:
            gate_grad_(p, trainable[name])


def restore_all_frozen_(model, trainable: dict[str, Tensor], frozen_values: dict[str, Tensor], optimizer=None) -> None:
    """:func:`restore_frozen_` for every shared parameter that has a mask."""
    for name, p in model.shared_parameters():
        if name in trainable:
            restore_frozen_(p, trainable[name], frozen_values[name], optimizer)
