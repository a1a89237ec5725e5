"""Multi-layer perceptron body."""

from __future__ import annotations

import math

from torch import nn


def mlp_body(input_shape: tuple[int, ...], hidden: tuple[int, ...], dropout: float = 0.0) -> tuple[nn.Module, int]:
    """Flatten, then Linear + ReLU (+ Dropout) per hidden width; returns (body, feature_dim)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = int(math.prod(input_shape))
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return nn.Sequential(*layers), width
