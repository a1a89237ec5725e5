"""Fetching against a tiny HTTP server on 127.0.0.1 serving generated IDX files."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from anpyc.data import sources
from anpyc.data.idx import write_idx
from anpyc.errors import DataError


def _make_spec(folder: Path) -> sources.DatasetSpec:
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 255, (20, 4, 4), dtype=np.uint8),
        "train_y": rng.integers(0, 10, (20,), dtype=np.uint8),
        "test_x": rng.integers(0, 255, (6, 4, 4), dtype=np.uint8),
        "test_y": rng.integers(0, 10, (6,), dtype=np.uint8),
    }
    names = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
    files = []
    for key, arr in arrays.items():
        path = write_idx(arr, folder / f"{names[key]}.gz")
        raw = gzip.decompress(path.read_bytes())
        files.append(sources.IdxFile(key, names[key], hashlib.md5(raw).hexdigest(),
                                     hashlib.md5(path.read_bytes()).hexdigest(), arr.shape))
    return sources.DatasetSpec(name="tiny", files=tuple(files), urls=())


@pytest.fixture
def served(tmp_path, monkeypatch, serve_dir):
    root = tmp_path / "www"
    root.mkdir()
    spec = _make_spec(root)
    monkeypatch.setitem(sources.DATASETS, "tiny", spec)
    return root, serve_dir(root), spec


def test_download_good_files(served, tmp_path):
    root, url, spec = served
    data = tmp_path / "data"
    sources.fetch("tiny", data, source="url", base_urls=(url,))
    assert all(v == "ok" for v in sources.verify(spec, data).values())
    assert sources.load("tiny", data)["train_x"].shape == (20, 4, 4)


def test_truncated_download_rejected(served, tmp_path):
    root, url, spec = served
    target = root / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-30])
    with pytest.raises(DataError, match="could not fetch tiny"):
        sources.fetch("tiny", tmp_path / "data", source="url", base_urls=(url,))
    assert not (tmp_path / "data" / "tiny" / "train-images-idx3-ubyte.gz").exists()


def test_wrong_checksum_rejected(served, tmp_path):
    root, url, spec = served
    arr = np.zeros((20, 4, 4), dtype=np.uint8)
    write_idx(arr, root / "train-images-idx3-ubyte.gz")  # right shape, other content
    with pytest.raises(DataError, match="checksum"):
        sources.fetch("tiny", tmp_path / "data", source="url", base_urls=(url,))


def test_unreachable_server_is_a_clear_error(tmp_path, served):
    with pytest.raises(DataError, match="download failed"):
        sources.fetch("tiny", tmp_path / "data", source="url", base_urls=("http://127.0.0.1:9/",))


def test_fetch_from_folder_and_verify_detects_corruption(served, tmp_path):
    root, _, spec = served
    data = tmp_path / "data"
    sources.fetch("tiny", data, source=str(root))
    f = data / "tiny" / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:10])
    status = sources.verify(spec, data)
    assert status["t10k-labels-idx1-ubyte"] != "ok" and status["train-images-idx3-ubyte"] == "ok"


def test_a_data_dir_that_cannot_be_created_is_a_clear_error(served, tmp_path):
    root, _, _ = served
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the data folder .*a-file/tiny"):  # was a NotADirectoryError
        sources.fetch("tiny", tmp_path / "a-file", source=str(root))


def test_missing_data_error_says_what_to_do(tmp_path, served):
    with pytest.raises(DataError, match="anpyc data fetch tiny"):
        sources.load("tiny", tmp_path / "empty")


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("ANPYC_DATA", str(tmp_path / "env"))
    assert sources.resolve_data_dir() == tmp_path / "env"
    assert sources.resolve_data_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("ANPYC_DATA")
    assert sources.resolve_data_dir() == Path.home() / ".cache" / "anpyc"


def test_real_mnist_checksums(mnist_dir):
    assert all(v == "ok" for v in sources.verify(sources.MNIST, mnist_dir).values())
