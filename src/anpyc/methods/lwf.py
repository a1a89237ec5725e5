"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017).

After each task the model (body and every head) is frozen as the teacher. While learning a
new task, each batch also goes through the teacher, and the student's *old* heads are pulled
towards the teacher's outputs on the current task's inputs with knowledge distillation at
temperature ``T = 2`` and weight ``lam = 1`` (the paper's ``lambda_o``), summed over old heads:
``lam * sum_h KL(softmax(z_h^teacher / T) || softmax(z_h / T))``.

KL instead of the paper's cross-entropy: they have the same gradient (they differ by the
teacher's entropy, a constant), and KL is zero when nothing has moved. No ``T^2`` factor,
as in the paper. The paper's warm-up (training the new head alone first) is not done, so
every method gets the same number of steps.

The teacher is not a second ``nn.Module``: its parameters are buffers of this method (so
``state_dict`` carries it) and it runs through ``torch.func.functional_call`` on the
student's architecture, in eval mode (dropout off) and without gradients. With a single
shared head, the head's outputs on the new data are distilled.

Example:
    >>> from anpyc.methods import create
    >>> create("lwf").config.temperature
    2.0
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.func import functional_call
from torch.nn import functional as F

from anpyc.methods.base import Method
from anpyc.methods.registry import register
from anpyc.utils import buffer_key, eval_mode

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext


@dataclasses.dataclass(frozen=True)
class LwFConfig:
    """``lam``: weight of the distillation loss; ``temperature``: softening of both sides."""

    lam: float = 1.0
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if self.lam < 0 or self.temperature <= 0:
            raise ValueError("need lam >= 0 and temperature > 0")


@register
class LwF(Method):
    """Distillation of the old heads towards a frozen copy of the previous model."""

    name = "lwf"
    config_cls = LwFConfig
    tags = frozenset({"classifier-only"})  # distils the old heads' outputs

    def __init__(self, config: LwFConfig | None = None) -> None:
        super().__init__(config)
        self.register_buffer("teacher_heads", torch.zeros((), dtype=torch.long))

    def _teacher_params(self, model: ContinualModel) -> dict[str, Tensor]:
        out = {}
        for name, _ in model.named_parameters():
            buf = getattr(self, buffer_key("teacher", name), None)
            if buf is not None:
                out[name] = buf
        return out

    def teacher_logits(self, model: ContinualModel, x: Tensor) -> list[Tensor]:
        """The frozen teacher's logits of every old head on ``x``."""
        params = self._teacher_params(model)
        n_heads = int(self.teacher_heads)
        with torch.no_grad(), eval_mode(model):
            feats = functional_call(model.body, {k[len("body."):]: v for k, v in params.items() if k.startswith("body.")}, (x,))
            return [
                functional_call(model.heads[h], {k.split(".", 2)[2]: v for k, v in params.items() if k.startswith(f"heads.{h}.")}, (feats,))
                for h in range(n_heads)
            ]

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        n_heads = int(self.teacher_heads)
        if n_heads == 0 or self.config.lam == 0:
            return None
        T = self.config.temperature
        targets = self.teacher_logits(model, x)
        feats = model.features(x)
        total = x.new_zeros(())
        for h, z_teacher in enumerate(targets):
            z = model.heads[h](feats)
            total = total + F.kl_div(F.log_softmax(z / T, 1), F.log_softmax(z_teacher / T, 1),
                                     reduction="batchmean", log_target=True)
        return self.config.lam * total

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        for name, p in model.named_parameters():
            key = buffer_key("teacher", name)
            if hasattr(self, key) and getattr(self, key).shape == p.shape:
                getattr(self, key).copy_(p.detach())
            else:
                if hasattr(self, key):
                    delattr(self, key)
                self.register_buffer(key, p.detach().clone())
        self.teacher_heads.fill_(len(model.heads))
