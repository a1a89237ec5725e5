"""PackNet (Mallya & Lazebnik, CVPR 2018): prune and retrain, one binary mask per task.

Each shared weight has an owner (an ``int16`` buffer per parameter: ``-1`` free, otherwise the
task that keeps it). Task ``t`` trains only free weights; owned ones are frozen (the *update*
is masked with :mod:`anpyc.masking`, so momentum and weight decay cannot move them). After
training, ``prune_fraction`` of the weights it trained, those of smallest magnitude in each
layer, are set to zero and returned to the free pool; the rest become task ``t``'s, and the
network is retrained for ``retrain_epochs`` with only those weights moving. At test time
task ``j`` sees only weights owned by tasks ``0..j``: free weights and weights of later tasks
are zeroed inside :meth:`eval_context` and restored afterwards, so old tasks are exact
(BWT = 0). As in the paper, biases are trained with the first task only and then frozen,
and each task has its own head. The paper prunes 50% or 75% per task and retrains for about
half the training epochs; defaults here: 0.5 and 1 epoch.

Example:
    >>> from anpyc.methods import create
    >>> create("packnet", {"prune_fraction": 0.75}).config.retrain_epochs
    1
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from anpyc.masking import FREE, gate_grads_, lowest_fraction_mask, restore_all_frozen_, task_view
from anpyc.methods.base import Method
from anpyc.methods.registry import register
from anpyc.utils import buffer_key


@dataclasses.dataclass(frozen=True)
class PackNetConfig:
    """``prune_fraction``: share of the weights a task trained that is released after it;
    ``retrain_epochs``: epochs of retraining the kept weights after pruning (0: none)."""

    prune_fraction: float = 0.5
    retrain_epochs: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.prune_fraction < 1.0 or self.retrain_epochs < 0:
            raise ValueError("need 0 <= prune_fraction < 1 and retrain_epochs >= 0")


@register
class PackNet(Method):
    """Per-task binary masks from magnitude pruning, with retraining."""

    name = "packnet"
    config_cls = PackNetConfig

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self._trainable: dict[str, Tensor] = {}  # which entries may move in the current phase
        self._frozen: dict[str, Tensor] = {}  # values the others are restored to

    def owner(self, name: str) -> Tensor | None:
        return getattr(self, buffer_key("owner", name), None)

    def _owners(self, model) -> list[tuple[str, torch.nn.Parameter, Tensor]]:
        out = []
        for name, p in model.shared_parameters():
            own = self.owner(name)
            if own is None:
                own = torch.full(p.shape, FREE, dtype=torch.int16, device=p.device)
                self.register_buffer(buffer_key("owner", name), own)
            out.append((name, p, own))
        return out

    def _set_phase(self, model, trainable_of) -> None:
        self._trainable, self._frozen = {}, {}
        for name, p, own in self._owners(model):
            self._trainable[name] = trainable_of(own)
            self._frozen[name] = p.detach().clone()

    # -------------------------------------------------------------- hooks
    def before_task(self, model, task) -> None:
        self._set_phase(model, lambda own: own == FREE)

    def before_step(self, model) -> None:
        gate_grads_(model, self._trainable)

    def after_step(self, model, optimizer) -> None:
        restore_all_frozen_(model, self._trainable, self._frozen, optimizer)

    @torch.no_grad()
    def after_task(self, model, task, retrain=None) -> None:
        t = int(self.tasks_seen)
        for _name, p, own in self._owners(model):
            trained = own == FREE
            if p.dim() < 2:  # biases: kept by the first task, frozen afterwards
                own[trained] = t
                continue
            pruned = lowest_fraction_mask(p.detach().abs(), trained, self.config.prune_fraction)
            p[pruned] = 0.0
            own[trained & ~pruned] = t
        if retrain is not None and self.config.retrain_epochs > 0:
            self._set_phase(model, lambda own: own == t)
            with torch.enable_grad():
                retrain(self.config.retrain_epochs)
        self._trainable, self._frozen = {}, {}
        super().after_task(model, task, retrain)

    def eval_context(self, model, task_id: int):
        """Zero the weights task ``task_id`` did not see (free, or owned by later tasks)."""
        return task_view(model, self.owner, task_id, int(self.tasks_seen))

    def summary(self) -> dict:
        """``free_fraction``: per layer, the share of free weights after each task."""
        free: dict[str, list[float]] = {}
        total_free, total = [], 0
        n = int(self.tasks_seen)
        counts = [0] * n
        for name in [k for k, _ in self.named_buffers() if k.startswith("owner__")]:
            own = getattr(self, name)
            layer = name[len("owner__"):].replace("__", ".")
            free[layer] = [float(((own == FREE) | (own > k)).float().mean()) for k in range(n)]
            for k in range(n):
                counts[k] += int(((own == FREE) | (own > k)).sum())
            total += own.numel()
        total_free = [c / total for c in counts] if total else []
        return {"free_fraction": free, "free_fraction_total": total_free[-1] if total_free else 1.0,
                "free_fraction_total_curve": total_free}
