"""Convolutional bodies: ``--model cnn`` and ``--model resnet18``.

Both take ``(C, H, W)`` images (1 x 28 x 28 Fashion-MNIST, 3 x 32 x 32 CIFAR, ...) and return
a feature vector; :class:`~anpyc.models.heads.ContinualModel` puts one linear head per task on
top, so every method sees the same shared body.

* ``cnn``: three 3x3 conv layers of ``width, 2*width, 4*width`` channels (default 64-128-256),
  each followed by ReLU and 2x2 max pooling, then a fully connected layer of ``8*width`` units
  (512): the network of ANPyC's predecessor (SPP). No batch norm unless ``batch_norm: true``;
  ``dropout`` applies after the FC layer.
* ``resnet18``: the reduced ResNet-18 of GEM (Lopez-Paz & Ranzato 2017): BasicBlocks
  [2, 2, 2, 2] of ``width, 2w, 4w, 8w`` channels with ``width=20``, a 3x3 stride-1 stem,
  global average pooling, ``8*width`` (160) features. Batch norm on by default.

Batch norm layers are :class:`~anpyc.models.norm.TaskBatchNorm2d`: statistics learnt on the
first task, frozen afterwards (see :mod:`anpyc.models.norm` for why).

Example:
    >>> import torch
    >>> from anpyc.config import ModelConfig
    >>> body, dim = cnn_body(ModelConfig(name="cnn", width=8), (3, 32, 32))
    >>> body(torch.zeros(2, 3, 32, 32)).shape, dim
    (torch.Size([2, 64]), 64)
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.config import ModelConfig
from anpyc.errors import ConfigError
from anpyc.models.norm import TaskBatchNorm2d
from anpyc.models.registry import register_body


def _image_shape(name: str, input_shape: tuple[int, ...], min_side: int) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"model {name} needs image inputs (C, H, W), got shape {input_shape}")
    c, h, w = (int(v) for v in input_shape)
    if min(h, w) < min_side:
        raise ConfigError(f"model {name} needs images of at least {min_side}x{min_side}, got {h}x{w}")
    return c, h, w


def _norm(channels: int, on: bool) -> nn.Module:
    return TaskBatchNorm2d(channels) if on else nn.Identity()


class ConvNet(nn.Module):
    """conv(w)-pool, conv(2w)-pool, conv(4w)-pool, FC(8w); see the module docstring."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 64, batch_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        c, h, w = _image_shape("cnn", input_shape, 8)
        layers: list[nn.Module] = []
        for out in (width, 2 * width, 4 * width):
            # a conv followed by BN needs no bias of its own (BN's shift replaces it)
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm), _norm(out, batch_norm), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c * h * w, 8 * width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_dim = 8 * width

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).flatten(1)
        return self.dropout(F.relu(self.fc(x)))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _norm(c_out, batch_norm)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=bias)
        self.bn2 = _norm(c_out, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=bias), _norm(c_out, batch_norm))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Reduced ResNet-18 (GEM): width 20 gives about 1.1M parameters and 160 features."""

    def __init__(self, input_shape: tuple[int, ...], width: int = 20, batch_norm: bool = True) -> None:
        super().__init__()
        c, _, _ = _image_shape("resnet18", input_shape, 8)
        self.conv1 = nn.Conv2d(c, width, 3, stride=1, padding=1, bias=not batch_norm)
        self.bn1 = _norm(width, batch_norm)
        blocks: list[nn.Module] = []
        c_in = width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            for s in (stride, 1):
                blocks.append(BasicBlock(c_in, width * mult, s, batch_norm))
                c_in = width * mult
        self.layers = nn.Sequential(*blocks)
        self.out_dim = 8 * width

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        # GEM pools the final 4x4 map of a 32x32 input; adaptive pooling does the same there
        # and also fits 28x28 inputs
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


@register_body("cnn")
def cnn_body(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """The SPP/ANPyC CNN (``width`` default 64, ``batch_norm`` default off)."""
    width = cfg.width if cfg.width is not None else 64
    body = ConvNet(input_shape, width, bool(cfg.batch_norm), cfg.dropout)
    return body, body.out_dim


@register_body("resnet18")
def resnet18_body(cfg: ModelConfig, input_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
    """GEM's reduced ResNet-18 (``width`` default 20, ``batch_norm`` default on)."""
    if cfg.dropout:
        raise ConfigError("model resnet18 has no dropout; set model.dropout to 0")
    width = cfg.width if cfg.width is not None else 20
    body = ResNet18(input_shape, width, True if cfg.batch_norm is None else cfg.batch_norm)
    return body, body.out_dim


__all__ = ["BasicBlock", "ConvNet", "ResNet18", "cnn_body", "resnet18_body"]
