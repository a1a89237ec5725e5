"""Per-batch image transforms in plain torch: per-channel normalisation and light augmentation.

They plug into :class:`~anpyc.data.taskdata.TaskData` as its ``transform`` and act on float
batches ``(N, C, H, W)`` already scaled to [0, 1]. Augmentation is for training splits only and
draws from its own ``torch.Generator``, so a seed always gives the same crops and flips
whatever else used the global RNG.

Example:
    >>> import torch
    >>> x = torch.rand(8, 3, 32, 32)
    >>> train_tf = Compose([RandomCropFlip(4, generator=torch.Generator().manual_seed(0)),
    ...                     Normalize([0.5] * 3, [0.25] * 3)])
    >>> train_tf(x).shape
    torch.Size([8, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel."""

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if (self.std <= 0).any():
            raise ValueError(f"std must be positive, got {self.std.flatten().tolist()}")

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def __repr__(self) -> str:
        fmt = ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(self.mean.flatten().tolist(), self.std.flatten().tolist()))
        return f"Normalize({fmt})"


class RandomCropFlip:
    """Zero-pad by ``padding``, crop back to the input size at a random offset, and mirror
    left-right with probability 1/2 (the usual CIFAR augmentation), one draw per example."""

    def __init__(self, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = int(padding)
        self.flip = bool(flip)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __call__(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        p = self.padding
        dy = torch.randint(0, 2 * p + 1, (n,), generator=self.generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=self.generator)
        flip = torch.rand(n, generator=self.generator) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        padded = F.pad(x, (p, p, p, p)) if p else x
        cols = torch.arange(w)
        # one gather does crop and flip: a flipped row reads its crop window right to left
        col_idx = dx[:, None] + torch.where(flip[:, None], (w - 1 - cols)[None, :], cols[None, :])
        row_idx = dy[:, None] + torch.arange(h)[None, :]
        dev = x.device
        out = padded[
            torch.arange(n, device=dev)[:, None, None],
            :,
            row_idx.to(dev)[:, :, None],
            col_idx.to(dev)[:, None, :],
        ]  # (N, H, W, C): advanced indices first, the sliced channel axis last
        return out.permute(0, 3, 1, 2).contiguous()

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Tensor], Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"


def channel_stats(x: Tensor, index: Tensor | None = None, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of images ``x`` (N, C, H, W), uint8 read as [0, 1].

    Only the rows in ``index`` count (the training split: validation and test never shape the
    normalisation). Computed in chunks, in float64, so 50k CIFAR images need little memory.
    """
    rows = index if index is not None else torch.arange(x.shape[0])
    if rows.numel() == 0:
        raise ValueError("channel_stats needs at least one image")
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, rows.numel(), chunk):
        xb = x[rows[start : start + chunk]].double()
        if x.dtype == torch.uint8:
            xb = xb / 255.0
        total += xb.sum(dim=(0, 2, 3))
        total_sq += (xb * xb).sum(dim=(0, 2, 3))
    count = rows.numel() * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return mean.float(), std.float()
