"""Where data sets live on disk and how a file is downloaded (shared by the IDX and CIFAR
readers).

Example:
    >>> resolve_data_dir("data/mnist").as_posix()
    'data/mnist'
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from anpyc.errors import DataError


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$ANPYC_DATA``, else ``~/.cache/anpyc``."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get("ANPYC_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "anpyc"


def make_data_folder(folder: Path) -> Path:
    """``folder`` created, parents too; a :class:`DataError` naming it when it cannot be (a
    path through a file, no permission, a read-only disk)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {folder}: {exc.strerror or exc}") from None
    return folder


def download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"download failed: {url}: {getattr(exc, 'reason', exc)}") from exc
