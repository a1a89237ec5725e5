import struct
import zlib

import numpy as np
import pytest
import torch

from anpyc.generative.images import image_grid, png_bytes, save_grid


def _decode_png(data: bytes) -> np.ndarray:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks[tag] = chunks.get(tag, b"") + body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[i * (w + 1) : (i + 1) * (w + 1)] for i in range(h)]
    assert all(r[0] == 0 for r in rows)
    return np.array([list(r[1:]) for r in rows], dtype=np.uint8)


def test_png_round_trip():
    a = (np.arange(35).reshape(5, 7) * 7).astype(np.uint8)
    np.testing.assert_array_equal(_decode_png(png_bytes(a)), a)


def test_grid_places_each_image_in_its_cell(tmp_path):
    imgs = torch.zeros(3, 4, 1, 5, 6)
    imgs[2, 1] = 1.0  # row 2, column 1 is white
    grid = image_grid(imgs, pad=2, background=0.5)
    assert grid.shape == (3 * 7 + 2, 4 * 8 + 2)
    top, left = 2 + 2 * 7, 2 + 1 * 8
    assert (grid[top : top + 5, left : left + 6] == 255).all()
    assert grid[2:7, 2:8].max() == 0 and grid[0, 0] == 128
    path = save_grid(tmp_path / "s" / "g.png", imgs)
    assert _decode_png(path.read_bytes()).shape == (3 * 7 + 2, 4 * 8 + 2)


def test_grid_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        image_grid(torch.zeros(4, 5, 5))
