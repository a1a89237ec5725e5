"""Body registry: ``@register_body("name")`` makes a body factory available as ``--model NAME``.

Example:
    >>> "mlp" in BODIES and "cnn" in BODIES
    True
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from anpyc.config import ModelConfig
from anpyc.models.mlp import mlp_body

BodyFactory = Callable[[ModelConfig, tuple[int, ...]], tuple[nn.Module, int]]

BODIES: dict[str, BodyFactory] = {
    "mlp": lambda cfg, shape: mlp_body(shape, cfg.hidden, cfg.dropout),
}


def register_body(name: str) -> Callable[[BodyFactory], BodyFactory]:
    """Decorator: make a body factory available as ``--model NAME``."""

    def deco(fn: BodyFactory) -> BodyFactory:
        BODIES[name] = fn
        return fn

    return deco
