"""A shared body with one linear head per task (task-aware) or one shared head."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from anpyc.models.norm import freeze_bn_stats

if TYPE_CHECKING:
    from typing import Any


class ContinualModel(nn.Module):
    """``body`` maps inputs to features; ``heads[t]`` maps features to task ``t``'s logits.

    With ``head='single'`` there is one head, used for every task (domain- or
    class-incremental). Methods protect ``body`` (the shared parameters); heads are per task.

    Example:
        >>> body = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU())
        >>> model = ContinualModel(body, feature_dim=8)
        >>> model.add_head(3)
        0
        >>> model(torch.zeros(2, 4), 0).shape
        torch.Size([2, 3])
    """

    def __init__(self, body: nn.Module, feature_dim: int, head: str = "multi",
                 init: Callable[[nn.Module], None] | None = None) -> None:
        super().__init__()
        self._init = init  # how a new head's weights start (None: PyTorch's default)
        if head not in ("multi", "single"):
            raise ValueError(f"head must be 'multi' or 'single', got {head!r}")
        self.body = body
        self.feature_dim = int(feature_dim)
        self.head_mode = head
        self.heads = nn.ModuleList()
        # class-incremental: the shared head's outputs in use (0: all); grows with the classes seen
        self.register_buffer("active_outputs", torch.zeros((), dtype=torch.long))
        self._active = 0  # host copy: no device sync in every forward

    @property
    def head_sizes(self) -> list[int]:
        return [h.out_features for h in self.heads]

    def add_head(self, n_outputs: int) -> int:
        """Add the head for a new task (multi) or create the shared head once (single).

        Called once per task; from the second task on it also freezes the body's batch-norm
        running statistics (see :mod:`anpyc.models.norm`).
        """
        if len(self.heads) >= 1:
            freeze_bn_stats(self.body)
        if self.head_mode == "single" and len(self.heads) == 1:
            if self.heads[0].out_features != n_outputs:
                raise ValueError("single-head model: every task must use the same output size")
            return 0
        self.heads.append(self._new_head(n_outputs))
        return len(self.heads) - 1

    def set_active_outputs(self, n: int) -> None:
        """Use only the first ``n`` outputs of the head(s) (0: all): a shared head over every
        class seen so far grows without re-allocating it (unseen classes get no logit)."""
        self.active_outputs.fill_(int(n))
        self._active = int(n)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args,
                              **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._active = int(self.active_outputs)

    def ensure_heads(self, sizes: list[int]) -> None:
        """Create heads so that a saved ``state_dict`` with these head sizes can be loaded."""
        for n in sizes[len(self.heads):]:
            self.heads.append(self._new_head(n))

    def _new_head(self, n_outputs: int) -> nn.Linear:
        """A new head, initialised (drawn on the CPU, as every head was) and on the body's device."""
        head = nn.Linear(self.feature_dim, n_outputs)
        if self._init is not None:
            self._init(head)
        # a body without parameters (nn.Identity over features computed beforehand) lives on the CPU
        return head.to(next(self.body.parameters(), torch.empty(0)).device)

    def head_index(self, task: int) -> int:
        return 0 if self.head_mode == "single" else int(task)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def head_forward(self, feats: Tensor, task: int) -> Tensor:
        idx = self.head_index(task)
        if idx >= len(self.heads):
            raise IndexError(f"no head for task {task}: the model has {len(self.heads)} head(s)")
        logits = self.heads[idx](feats)
        return logits[:, : self._active] if self._active else logits

    def forward(self, x: Tensor, task: int | Tensor) -> Tensor:
        """Logits of task ``task``; a tensor of task ids must hold one id (see ``grouped``)."""
        if isinstance(task, Tensor):
            ids = task.unique()
            if ids.numel() != 1:
                raise ValueError("mixed task ids in one batch: use anpyc.loop.train.task_loss")
            task = int(ids[0])
        return self.head_forward(self.features(x), task)

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters of the body (the ones every task shares)."""
        return [(f"body.{n}", p) for n, p in self.body.named_parameters()]


def grouped_logits(model: ContinualModel, x: Tensor, t: Tensor) -> list[tuple[Tensor, Tensor, int]]:
    """Run the body once, then each task's head on its rows: ``[(rows, logits, task), ...]``."""
    feats = model.features(x)
    if model.head_mode == "single":
        return [(torch.arange(len(x), device=x.device), model.head_forward(feats, 0), int(t[0]))]
    out = []
    for task in t.unique().tolist():
        rows = (t == task).nonzero(as_tuple=True)[0]
        out.append((rows, model.head_forward(feats[rows], task), task))
    return out
