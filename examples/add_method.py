"""A new method in one file: L2 towards the weights the last task ended with."""

from dataclasses import dataclass

import torch

from anpyc.methods import Method, register
from anpyc.utils import buffer_key


@dataclass(frozen=True)
class L2Config:
    lam: float = 1.0  # strength of the pull towards the last task's weights


@register  # the registry line: `anpyc run --method l2`, compare, tune, suites, checkpoints
class L2(Method):
    """lam * sum (theta - theta*)^2 over the shared weights; theta* kept after each task."""

    name, config_cls = "l2", L2Config
    grid = {"lam": [0.1, 1.0, 10.0, 100.0]}  # tune --protocol's grid where presets/grids.yaml has none

    def penalty(self, model, x, y, t):
        anchors = [(p, getattr(self, buffer_key("anchor", n), None)) for n, p in model.shared_parameters()]
        terms = [(p - a).pow(2).sum() for p, a in anchors if a is not None]
        return self.config.lam * torch.stack(terms).sum() if terms else None

    def after_task(self, model, task, ctx, retrain=None):
        for n, p in model.shared_parameters():  # buffers: the method's whole state is its state_dict
            self.register_buffer(buffer_key("anchor", n), p.detach().clone())
