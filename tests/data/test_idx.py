import gzip

import numpy as np
import pytest

from anpyc.data.idx import parse_idx, read_idx, write_idx
from anpyc.errors import DataError


def test_round_trip_raw_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        path = write_idx(arr, tmp_path / name)
        np.testing.assert_array_equal(read_idx(path, shape=(2, 3, 4)), arr)


def test_gzip_detected_by_magic_not_name(tmp_path):
    arr = np.ones((5,), dtype=np.uint8)
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + arr.tobytes()))
    np.testing.assert_array_equal(read_idx(path), arr)


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"\x00\x00", "too short"),
        (b"\x12\x34\x08\x01\x00\x00\x00\x01\x00", "magic"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "size mismatch"),
    ],
)
def test_bad_bytes(raw, words):
    with pytest.raises(DataError, match=words):
        parse_idx(raw)


def test_checksum_and_shape_checks(tmp_path):
    path = write_idx(np.zeros((3, 2), dtype=np.uint8), tmp_path / "x")
    with pytest.raises(DataError, match="checksum"):
        read_idx(path, md5="0" * 32)
    with pytest.raises(DataError, match="shape"):
        read_idx(path, shape=(3, 3))


def test_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_idx(tmp_path / "nothing")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"x" * 100)[:20])
    with pytest.raises(DataError, match="corrupt gzip"):
        read_idx(bad)
