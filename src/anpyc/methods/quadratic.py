"""The importance-weighted quadratic penalty, one piece of code for every method that uses it.

``penalty = scale * lam * sum_i omega_i * (theta_i - theta_star_i)^2`` over shared parameters,
with ``omega`` (importance) and ``theta_star`` (anchor) kept as buffers. EWC, online EWC, SI,
MAS and ANPyC's consolidation differ only in how ``omega`` is estimated and merged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from anpyc.errors import TrainingError
from anpyc.kernels.importance import importance_stats
from anpyc.methods.base import Method
from anpyc.utils import buffer_key

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

MERGES = ("sum", "max", "replace", "decay")


class QuadraticPenalty(Method):
    """Base for importance-weighted quadratic regularisers.

    Subclasses implement :meth:`estimate_importance` (``ctx.generator`` for any random draw)
    and set ``scale`` (EWC uses 1/2); the
    config must have ``lam`` and may have ``merge`` (``sum``, ``max``, ``replace`` or
    ``decay`` with ``gamma``).
    """

    scale: ClassVar[float] = 1.0

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- buffers ---------------------------------------------------------------------
    def omega(self, name: str) -> Tensor | None:
        return getattr(self, buffer_key("omega", name), None)

    def theta_star(self, name: str) -> Tensor | None:
        return getattr(self, buffer_key("theta_star", name), None)

    def _set(self, prefix: str, name: str, value: Tensor) -> None:
        key = buffer_key(prefix, name)
        if hasattr(self, key):
            getattr(self, key).copy_(value)
        else:
            self.register_buffer(key, value.detach().clone())

    def merge_importance(self, new: dict[str, Tensor]) -> None:
        """Fold a task's importance into the running ``omega`` (``config.merge``)."""
        merge = getattr(self.config, "merge", "sum")
        for name, value in new.items():
            old = self.omega(name)
            if old is None or merge == "replace":
                merged = value
            elif merge == "sum":
                merged = old + value
            elif merge == "max":
                merged = torch.maximum(old, value)
            elif merge == "decay":
                merged = self.config.gamma * old + value
            else:
                raise ValueError(f"unknown merge {merge!r}; known: {', '.join(MERGES)}")
            self._set("omega", name, merged)

    def penalized(self, model: ContinualModel) -> list[tuple[str, torch.nn.Parameter]]:
        """The parameters the penalty holds (the shared body by default)."""
        return model.shared_parameters()

    def anchor(self, model: ContinualModel) -> None:
        """Remember the penalised parameters' current values as ``theta_star``."""
        for name, p in self.penalized(model):
            self._set("theta_star", name, p.detach())

    # -- hooks -----------------------------------------------------------------------
    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        terms = []
        for name, p in self.penalized(model):
            omega, star = self.omega(name), self.theta_star(name)
            if omega is not None and star is not None:
                terms.append((omega * (p - star).pow(2)).sum())
        if not terms or self.config.lam == 0:
            return None
        return self.scale * self.config.lam * torch.stack(terms).sum()

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """Estimate the task's importance, merge it, anchor at the current parameters."""
        new = self.estimate_importance(model, task, ctx)
        self.merge_importance(new)
        self.anchor(model)
        self.record_importance(ctx.task, new)

    def record_importance(self, task: int, new: dict[str, Tensor]) -> None:
        """Distribution statistics of a task's importance (kurtosis, top-90% share) in the
        history, for ``metrics.json``. A non-finite importance (weights that diverged in a loop
        that did not check its loss) stops the run here with a :class:`TrainingError`."""
        if not new:
            return
        bad = [name for name, v in new.items() if not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingError(
                f"{self.name}: the importance of {bad[0]} after task {task + 1} is not finite (the weights "
                "diverged while the task trained): lower the learning rate or the method's strength")
        stats = importance_stats({k: v.detach().cpu() for k, v in new.items()})
        self.history.setdefault("importance_stats", []).append({"task": int(task), **stats})

    def consolidated(self) -> dict[str, Tensor]:
        """The consolidated importance of every penalised tensor so far (the ``omega`` buffers)."""
        prefix = buffer_key("omega", "")
        return {k[len(prefix):]: v for k, v in self.named_buffers() if k.startswith(prefix)}

    def summary(self) -> dict:
        """Importance statistics per task, and the kurtosis of the consolidated importance after
        the last task (``omega_kurtosis``: "sparse and polarised" importance has a heavy tail;
        the same figure for every importance-weighted method)."""
        omega = self.consolidated()
        final = importance_stats({k: v.detach().cpu() for k, v in omega.items()}) if omega else {}
        return {"importance_stats": list(self.history.get("importance_stats", [])),
                "omega_kurtosis": final.get("kurtosis"), "omega_top90_share": final.get("top90_share")}
