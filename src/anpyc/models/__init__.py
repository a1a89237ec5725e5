"""Models: bodies (MLP, CNN, ResNet-18) behind one multi-/single-head wrapper.

Example:
    >>> from anpyc.config import ModelConfig
    >>> model = build_model(ModelConfig(hidden=(32,)), input_shape=(1, 8, 8))
    >>> model.add_head(4)
    0
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from anpyc.config import ModelConfig
from anpyc.errors import ConfigError, unknown
from anpyc.models import cnn  # noqa: F401  (registers cnn and resnet18)
from anpyc.models.heads import ContinualModel, grouped_logits
from anpyc.models.registry import BODIES, register_body


def build_model(cfg: ModelConfig, input_shape: tuple[int, ...]) -> ContinualModel:
    """The network ``cfg`` describes, for inputs of ``input_shape`` (one example's, without
    the batch axis): a :class:`ContinualModel` whose body the tasks share, with no head yet
    (``add_head`` gives each task its own, or makes the one shared head, and returns its
    index). An unknown ``cfg.name`` is a :class:`~anpyc.errors.ConfigError`.

    Example:
        >>> model = build_model(ModelConfig(hidden=(8,)), input_shape=(1, 8, 8))
        >>> model.add_head(4), model.add_head(4)  # two tasks, a head each
        (0, 1)
        >>> model(torch.zeros(2, 1, 8, 8), 1).shape  # task 1's logits
        torch.Size([2, 4])
    """
    if cfg.name not in BODIES:
        raise ConfigError(unknown("model", cfg.name, sorted(BODIES)))
    body, feature_dim = BODIES[cfg.name](cfg, tuple(input_shape))
    init = partial(truncated_normal_init_, std=cfg.init_std, bias=cfg.init_bias) if cfg.init == "truncated_normal" else None
    if init is not None:
        body.apply(init)
    return ContinualModel(body, feature_dim, head=cfg.head or "multi", init=init)


@torch.no_grad()
def truncated_normal_init_(module: nn.Module, std: float = 0.1, bias: float = 0.1) -> None:
    """Weights of a linear or convolutional ``module`` from a normal of std ``std`` cut at
    two std, biases ``bias`` (TensorFlow's ``truncated_normal`` and ``constant``); other
    modules untouched.

    Example:
        >>> layer = nn.Linear(100, 50)
        >>> truncated_normal_init_(layer)
        >>> bool(layer.weight.abs().max() <= 0.2), round(float(layer.bias.detach()[0]), 6)
        (True, 0.1)
    """
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        if module.bias is not None:
            module.bias.fill_(bias)

__all__ = ["BODIES", "ContinualModel", "build_model", "grouped_logits", "register_body"]
