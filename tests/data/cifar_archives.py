"""Tiny CIFAR archives in the exact official layout (tar.gz of python pickles), generated."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np


def add_member(tar: tarfile.TarFile, name: str, obj, protocol: int = 2) -> None:
    raw = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=protocol)
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def _batch(rng: np.random.Generator, n: int, n_classes: int, label_key: bytes, start: int) -> dict:
    labels = [(start + i) % n_classes for i in range(n)]  # every class present, in turn
    d = {
        b"batch_label": b"generated batch",
        label_key: labels,
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{start + i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        d[b"coarse_labels"] = [v // 5 for v in labels]
    return d


def write_cifar10(path: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0, overrides: dict | None = None) -> dict:
    """CIFAR-10 layout; ``overrides`` replaces whole members (name -> object or raw bytes).
    Returns the batches written (to compare with what the reader returns)."""
    rng = np.random.default_rng(seed)
    members = {f"data_batch_{i}": _batch(rng, per_batch, 10, b"labels", (i - 1) * per_batch) for i in range(1, 6)}
    members["test_batch"] = _batch(rng, n_test, 10, b"labels", 0)
    members["batches.meta"] = {
        b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    members.update(overrides or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, obj in members.items():
            add_member(tar, f"cifar-10-batches-py/{name}", obj)
    return members


def write_cifar100(path: Path, n_train: int = 200, n_test: int = 100, seed: int = 1, overrides: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    members = {
        "train": _batch(rng, n_train, 100, b"fine_labels", 0),
        "test": _batch(rng, n_test, 100, b"fine_labels", 0),
        "meta": {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    }
    members.update(overrides or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, obj in members.items():
            add_member(tar, f"cifar-100-python/{name}", obj)
    return members


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()
