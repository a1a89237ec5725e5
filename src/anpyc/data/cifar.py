"""CIFAR-10 and CIFAR-100 from their official python-pickle archives.

The archive is kept as downloaded (``<data dir>/cifar10/cifar-10-python.tar.gz``,
``<data dir>/cifar100/cifar-100-python.tar.gz``) and read in place: its md5 is checked
against the official one, then each member is unpickled with a restricted unpickler that
only knows the handful of numpy globals the format needs (so a tampered archive cannot run
code), and every field is type- and shape-checked.

Layout read (the official one):
  * CIFAR-10: ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch`` (dicts with
    ``data``: uint8 (N, 3072) and ``labels``: N ints), ``batches.meta`` (``label_names``).
  * CIFAR-100: ``cifar-100-python/train`` and ``test`` (``data`` and ``fine_labels``),
    ``meta`` (``fine_label_names``).

Example:
    >>> arrays = load("cifar10")  # doctest: +SKIP
    >>> arrays["train_x"].shape, arrays["classes"][:2]  # doctest: +SKIP
    ((50000, 3, 32, 32), ['airplane', 'automobile'])
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anpyc.data.files import download, make_data_folder, resolve_data_dir
from anpyc.errors import DataError
from anpyc.io import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR archive comes from and what is inside it."""

    name: str  # sub-folder of the data dir and the name `anpyc data` uses
    archive: str  # file name of the official tar.gz
    md5: str  # of the whole archive
    url: str
    root: str  # top folder inside the archive
    train_members: tuple[str, ...]
    test_member: str
    meta_member: str
    label_key: bytes
    names_key: bytes
    n_classes: int


CIFAR10 = CifarSpec(
    name="cifar10",
    archive="cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    root="cifar-10-batches-py",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_member="test_batch",
    meta_member="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    n_classes=10,
)

CIFAR100 = CifarSpec(
    name="cifar100",
    archive="cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    root="cifar-100-python",
    train_members=("train",),
    test_member="test",
    meta_member="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    n_classes=100,
)

CIFAR_SPECS: dict[str, CifarSpec] = {s.name: s for s in (CIFAR10, CIFAR100)}


def get_cifar_spec(name: str) -> CifarSpec:
    try:
        return CIFAR_SPECS[name]
    except KeyError:
        raise DataError(f"unknown CIFAR data set {name!r}; known: {', '.join(CIFAR_SPECS)}") from None


def archive_path(spec: CifarSpec, data_dir: str | os.PathLike | None = None) -> Path:

    return resolve_data_dir(data_dir) / spec.name / spec.archive


def _md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _where_to_put(spec: CifarSpec, path: Path) -> str:
    return (
        f"download {spec.url} (md5 {spec.md5}) and put it at {path}, or run "
        f"`anpyc data fetch {spec.name} --source FOLDER` with the folder holding {spec.archive}"
    )


# ----------------------------------------------------------------------------- safe unpickling

# The only globals an official CIFAR pickle refers to: numpy's array reconstruction (under
# numpy 1's and numpy 2's module names) and the codec python 3 uses for bytes at protocol 2.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def safe_unpickle(raw: bytes, where: str) -> dict:
    """Unpickle one CIFAR member (``encoding='bytes'``, restricted globals) into a dict."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure is a corrupt or foreign file
        raise DataError(f"{where}: not a valid CIFAR pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a dict, got {type(obj).__name__}")
    return obj


def _field(d: dict, key: bytes, where: str) -> Any:
    if key not in d:
        raise DataError(f"{where}: field {key.decode()!r} missing")
    return d[key]


def _images(d: dict, where: str) -> np.ndarray:
    data = _field(d, b"data", where)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    return data.reshape(-1, 3, 32, 32)  # rows are 1024 red, 1024 green, 1024 blue values


def _labels(d: dict, key: bytes, n: int, n_classes: int, where: str) -> np.ndarray:
    labels = _field(d, key, where)
    if isinstance(labels, np.ndarray):
        labels = labels.tolist()
    if not isinstance(labels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DataError(f"{where}: {key.decode()!r} must be a list of integers")
    if len(labels) != n:
        raise DataError(f"{where}: {len(labels)} labels for {n} images")
    arr = np.asarray(labels, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise DataError(f"{where}: label out of range (expected 0..{n_classes - 1})")
    return arr


def _names(d: dict, key: bytes, n_classes: int, where: str) -> list[str]:
    names = _field(d, key, where)
    if not isinstance(names, list) or len(names) != n_classes or not all(isinstance(v, (bytes, str)) for v in names):
        raise DataError(f"{where}: {key.decode()!r} must list {n_classes} class names")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in names]


def parse_archive(path: Path, spec: CifarSpec) -> dict:
    """Read a CIFAR archive: ``train_x, test_x`` uint8 (N, 3, 32, 32), ``train_y, test_y``
    int64, ``classes`` (names). Checks structure, not the checksum."""
    try:
        with tarfile.open(path, "r:gz") as tar:

            def member(name: str) -> dict:
                full = f"{spec.root}/{name}"
                try:
                    info = tar.getmember(full)
                except KeyError:
                    raise DataError(f"{path}: {full} not in the archive") from None
                fh = tar.extractfile(info) if info.isfile() else None
                if fh is None:
                    raise DataError(f"{path}: {full} is not a regular file")
                return safe_unpickle(fh.read(), f"{path}:{full}")

            parts = {}
            for split, names in (("train", spec.train_members), ("test", (spec.test_member,))):
                xs, ys = [], []
                for name in names:
                    d = member(name)
                    where = f"{path}:{spec.root}/{name}"
                    x = _images(d, where)
                    xs.append(x)
                    ys.append(_labels(d, spec.label_key, len(x), spec.n_classes, where))
                parts[f"{split}_x"] = np.concatenate(xs)
                parts[f"{split}_y"] = np.concatenate(ys)
            meta = member(spec.meta_member)
            parts["classes"] = _names(meta, spec.names_key, spec.n_classes, f"{path}:{spec.root}/{spec.meta_member}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc}); delete it and fetch again") from exc
    return parts


def verify(spec: CifarSpec, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{archive name: 'ok' | 'missing' | reason}`` (checks the official md5)."""
    path = archive_path(spec, data_dir)
    if not path.is_file():
        return {spec.archive: "missing"}
    got = _md5_file(path)
    if got != spec.md5:
        return {spec.archive: f"checksum mismatch (md5 {got}, expected {spec.md5}); delete it and fetch again"}
    return {spec.archive: "ok"}


@functools.lru_cache(maxsize=2)
def _load_cached(spec: CifarSpec, path: str, mtime_ns: int) -> dict:
    status = verify(spec, Path(path).parent.parent)[spec.archive]
    if status != "ok":
        raise DataError(f"{path}: {status}")
    return parse_archive(Path(path), spec)


def load(name: str, data_dir: str | os.PathLike | None = None) -> dict:
    """Verified arrays of CIFAR ``name`` (``cifar10`` or ``cifar100``); cached per process.

    Returns ``train_x, test_x`` (uint8, (N, 3, 32, 32)), ``train_y, test_y`` (int64) and
    ``classes`` (class names). Missing data raises a :class:`DataError` that says where to
    put the archive.
    """
    spec = get_cifar_spec(name)
    path = archive_path(spec, data_dir)
    if not path.is_file():
        raise DataError(f"{spec.name}: {spec.archive} not found; {_where_to_put(spec, path)}")
    return _load_cached(spec, str(path), path.stat().st_mtime_ns)


def _install(spec: CifarSpec, blob_path: Path, target: Path, origin: str) -> None:
    got = _md5_file(blob_path)
    if got != spec.md5:
        raise DataError(f"{origin}: checksum mismatch (md5 {got}, expected {spec.md5})")
    parse_archive(blob_path, spec)  # structure check before it replaces anything
    make_data_folder(target.parent)
    atomic_write_bytes(target, blob_path.read_bytes())


def fetch(
    name: str,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    url: str | None = None,
) -> Path:
    """Make CIFAR ``name`` available and verified; returns its folder.

    ``source``: ``auto`` or ``url`` download the official archive (md5-checked); any other
    value is a folder holding the archive (offline copy). An archive already in place that
    verifies is kept.
    """
    spec = get_cifar_spec(name)
    target = archive_path(spec, data_dir)
    if verify(spec, data_dir)[spec.archive] == "ok":
        log.info("%s: already present and verified in %s", spec.name, target.parent)
        return target.parent
    if source in ("npm", "deb"):
        raise DataError(f"{spec.name}: source {source!r} does not provide this data set; use auto, url or a folder")
    if source not in ("auto", "url"):
        src = Path(source) / spec.archive
        if not src.is_file():
            raise DataError(f"{src} not found; {_where_to_put(spec, target)}")
        _install(spec, src, target, str(src))
    else:

        link = url or spec.url
        log.info("%s: downloading %s", spec.name, link)
        try:
            blob = download(link, timeout=600.0)
        except DataError as exc:
            raise DataError(f"could not fetch {spec.name}: {exc}; offline, {_where_to_put(spec, target)}") from exc
        make_data_folder(target.parent)
        tmp = target.parent / f".{spec.archive}.download"
        try:
            tmp.write_bytes(blob)
            _install(spec, tmp, target, link)
        except OSError as exc:  # disk full: nothing in place is replaced
            raise DataError(f"cannot write {tmp}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
    _load_cached.cache_clear()
    return target.parent


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR_SPECS",
    "CifarSpec",
    "archive_path",
    "fetch",
    "get_cifar_spec",
    "load",
    "parse_archive",
    "safe_unpickle",
    "verify",
]
