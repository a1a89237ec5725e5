"""Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017).

During training on task ``mu`` each shared parameter accumulates the path integral
``w_i += -g_i * delta_theta_i`` at every optimizer step, where ``g`` is the gradient of the
*task loss only* (Zenke et al. use the unregularised gradient). The trainer hands
``before_step`` the gradient of task loss + penalty, so the penalty's own gradient,
``2 * c * Omega * (theta - theta*)``, known in closed form, is subtracted from it; gradient
clipping and weight decay, applied later, are not part of ``g``. ``delta_theta`` is the
actual step the optimizer took (momentum and decay included), measured against a real copy
of the previous parameters (a clone: ``detach()`` alone would alias the live tensor).

At the end of the task ``Omega += relu(w / (Delta^2 + xi))`` with ``Delta`` the total change
over the task and damping ``xi`` (default 0.1, the value of van de Ven et al.'s 2020
reimplementation; Zenke et al. set ``xi`` per experiment); negative contributions are
clipped to 0 so the penalty stays a bowl. Penalty ``c * sum_i Omega_i (theta_i - theta*_i)^2``
(no 1/2), default ``c = 1``; Zenke et al. tune ``c`` per benchmark, as ``anpyc tune`` does on
validation data. Importance comes from the training trajectory, not from an eval-mode pass.

Example:
    >>> from anpyc.methods import create
    >>> create("si").config.xi
    0.1
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import register
from anpyc.utils import buffer_key

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext


@dataclasses.dataclass(frozen=True)
class SIConfig:
    """``lam`` (the paper's ``c``): penalty strength; ``xi``: damping of the normaliser."""

    lam: float = 1.0
    xi: float = 0.1

    def __post_init__(self) -> None:
        if self.lam < 0 or self.xi <= 0:
            raise ValueError("need lam >= 0 and xi > 0")


@register
class SI(QuadraticPenalty):
    """Path-integral importance accumulated online; summed across tasks."""

    name = "si"
    tags = frozenset({"importance-penalty"})  # a per-parameter importance and a penalty
    config_cls = SIConfig

    def __init__(self, config: SIConfig | None = None) -> None:
        super().__init__(config)
        self._grad: dict[str, torch.Tensor] = {}

    def _buf(self, prefix: str, name: str) -> torch.Tensor | None:
        return getattr(self, buffer_key(prefix, name), None)

    def _put(self, prefix: str, name: str, value: torch.Tensor) -> None:
        key = buffer_key(prefix, name)
        if hasattr(self, key):
            getattr(self, key).copy_(value)
        else:
            self.register_buffer(key, value.detach().clone())

    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        for name, p in model.shared_parameters():
            self._put("si_w", name, torch.zeros_like(p))
            self._put("si_start", name, p.detach().clone())
            self._put("si_prev", name, p.detach().clone())

    def before_step(self, model: ContinualModel) -> None:
        lam = self.config.lam
        self._grad = {}
        for name, p in model.shared_parameters():
            if p.grad is None:
                continue
            g = p.grad.detach().clone()
            omega, star = self.omega(name), self.theta_star(name)
            if omega is not None and star is not None and lam != 0:
                g -= 2.0 * self.scale * lam * omega * (p.detach() - star)  # penalty's share
            self._grad[name] = g

    @torch.no_grad()
    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        for name, p in model.shared_parameters():
            prev = self._buf("si_prev", name)
            if prev is None:
                continue
            g = self._grad.get(name)
            if g is not None:
                self._buf("si_w", name).add_(-g * (p - prev))
            prev.copy_(p)
        self._grad = {}

    def estimate_importance(self, model: ContinualModel, task: Task,
                            ctx: HookContext) -> dict[str, torch.Tensor]:
        out = {}
        for name, p in model.shared_parameters():
            if self._buf("si_start", name) is None:  # your own loop skipped before_task
                raise RuntimeError(f"si: after_task() before before_task(): no path integral was started for {name}")
            delta = p.detach() - self._buf("si_start", name)
            out[name] = (self._buf("si_w", name) / (delta.pow(2) + self.config.xi)).clamp_min(0)
        return out
