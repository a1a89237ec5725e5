"""Fixtures for the data tests: tiny CIFAR archives installed in a temporary data dir."""

from __future__ import annotations

import dataclasses

import pytest
from cifar_archives import md5, write_cifar10, write_cifar100

from anpyc.data import cifar


@pytest.fixture(scope="session")
def _cifar_archives(tmp_path_factory):
    www = tmp_path_factory.mktemp("cifar_www")
    members = {
        "cifar10": write_cifar10(www / "cifar-10-python.tar.gz"),
        "cifar100": write_cifar100(www / "cifar-100-python.tar.gz"),
    }
    return {name: (www / name).read_bytes() for name in ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz")}, members


@pytest.fixture
def tiny_cifar(tmp_path, monkeypatch, _cifar_archives):
    """Both archives in ``www/`` (to serve or copy) and installed under ``data/``; the specs
    are patched to the generated archives' md5s. Yields (data_dir, www_dir, members)."""
    blobs, members = _cifar_archives
    www = tmp_path / "www"
    www.mkdir()
    data = tmp_path / "data"
    for spec in (cifar.CIFAR10, cifar.CIFAR100):
        src = www / spec.archive
        src.write_bytes(blobs[spec.archive])
        monkeypatch.setitem(cifar.CIFAR_SPECS, spec.name, dataclasses.replace(spec, md5=md5(src)))
        (data / spec.name).mkdir(parents=True)
        (data / spec.name / spec.archive).write_bytes(blobs[spec.archive])
    cifar._load_cached.cache_clear()
    yield data, www, members
    cifar._load_cached.cache_clear()
