"""Sample grids as PNG files, written atomically with no imaging library.

Example:
    >>> import torch
    >>> grid = image_grid(torch.rand(2, 3, 1, 4, 4))  # 2 rows of 3 images
    >>> grid.shape
    (14, 20)
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from anpyc.io import atomic_write_bytes


def image_grid(images: Tensor | np.ndarray, pad: int = 2, background: float = 1.0) -> np.ndarray:
    """Tile ``images`` shaped (rows, cols, 1, H, W) with values in [0, 1] into one uint8 array.

    A ``pad``-pixel border of ``background`` separates the images.
    """
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 5:
        a = a[:, :, 0]
    if a.ndim != 4:
        raise ValueError(f"expected (rows, cols, [1,] H, W) images, got shape {a.shape}")
    rows, cols, h, w = a.shape
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), background, dtype=np.float64)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            out[top : top + h, left : left + w] = a[r, c]
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(gray: np.ndarray) -> bytes:
    """Encode a 2-D uint8 array as an 8-bit grayscale PNG."""
    gray = np.asarray(gray, dtype=np.uint8)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {gray.shape}")
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[i].tobytes() for i in range(h))  # filter type 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_grid(path: str | Path, images: Tensor | np.ndarray, pad: int = 2) -> Path:
    """Write a (rows, cols, 1, H, W) batch of [0, 1] images to ``path`` as one PNG (atomic)."""
    return atomic_write_bytes(path, png_bytes(image_grid(images, pad)))
