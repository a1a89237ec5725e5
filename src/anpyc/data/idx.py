"""Reader for the IDX format used by MNIST and Fashion-MNIST (raw or gzip).

Format (LeCun et al.): two zero bytes, a type code (0x08 = uint8), the number of dimensions,
then one big-endian uint32 per dimension, then the data.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np

from anpyc.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_bytes(path: str | Path) -> bytes:
    """File contents, transparently gunzipped when the file is gzip (by magic, not name)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file missing: {path}; run `anpyc data fetch` first")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"corrupt gzip file {path}: {exc}; delete it and fetch again") from exc
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into an array; any inconsistency is a :class:`DataError`."""
    if len(raw) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{name}: wrong magic number {raw[:4].hex()} (not an IDX file)")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{name}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise DataError(
            f"{name}: size mismatch: header says shape {shape} ({expected} bytes), file has {len(body)}"
            " (truncated or corrupt; delete it and fetch again)"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path, md5: str | None = None, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Read an IDX file, checking the md5 of its decompressed bytes and its shape.

    Example:
        >>> images = read_idx("train-images-idx3-ubyte.gz", shape=(60000, 28, 28))  # doctest: +SKIP
    """
    raw = read_bytes(path)
    if md5 is not None:
        got = hashlib.md5(raw).hexdigest()
        if got != md5:
            raise DataError(f"{path}: checksum mismatch (md5 {got}, expected {md5}); delete it and fetch again")
    arr = parse_idx(raw, str(path))
    if shape is not None:
        if len(shape) != arr.ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            raise DataError(f"{path}: shape {arr.shape}, expected {shape}")
    return arr


def write_idx(arr: np.ndarray, path: str | Path, compress: bool | None = None) -> Path:
    """Write a uint8 array as IDX (gzip if the name ends in .gz); used by tests and tools."""
    path = Path(path)
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path
