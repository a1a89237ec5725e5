"""Models: bodies (MLP, CNN, ResNet-18) behind one multi-/single-head wrapper.

Example:
    >>> from anpyc.config import ModelConfig
    >>> model = build_model(ModelConfig(hidden=(32,)), input_shape=(1, 8, 8))
    >>> model.add_head(4)
    0
"""

from __future__ import annotations

from anpyc.config import ModelConfig
from anpyc.errors import ConfigError, unknown
from anpyc.models import cnn  # noqa: F401  (registers cnn and resnet18)
from anpyc.models.heads import ContinualModel, grouped_logits
from anpyc.models.registry import BODIES, register_body


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...]) -> ContinualModel:
    if cfg.name not in BODIES:
        raise ConfigError(unknown("model", cfg.name, sorted(BODIES)))
    body, feature_dim = BODIES[cfg.name](cfg, tuple(input_shape))
    return ContinualModel(body, feature_dim, head=cfg.head or "multi")

__all__ = ["BODIES", "ContinualModel", "build_model", "grouped_logits", "register_body"]
