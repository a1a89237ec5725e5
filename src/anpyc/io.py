"""Atomic file writes: a result is either the old file or the complete new one, never half."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from anpyc.errors import OutputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same directory and a rename.

    On any failure (disk full, read-only directory) the previous file is left untouched and
    an :class:`OutputError` names the path.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}; the previous file is intact") from exc
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | os.PathLike, rows: list[list[Any]], header: list[str] | None = None) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def write_with(path: str | os.PathLike, writer: Callable[[io.BytesIO], None]) -> Path:
    """Atomically write what ``writer`` puts into a bytes buffer (e.g. ``torch.save``)."""
    buf = io.BytesIO()
    writer(buf)
    return atomic_write_bytes(path, buf.getvalue())


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line; a log line is small enough to be written in one call."""
    line = json.dumps(record, default=_json_default) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:
        raise OutputError(f"cannot append to {path}: {exc.strerror or exc}") from exc


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.tolist()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def relative_command(subcommand: str, out_dir: str | os.PathLike, argv: list[str] | None = None) -> str:
    """The ``anpyc`` command line that is running, with its ``--out`` relative to the working
    directory: a committed result must not carry a machine path. When not started as
    ``anpyc <subcommand>`` (a Python call), the equivalent command ``anpyc <subcommand> --out
    OUT``.

    Example:
        >>> relative_command("bench pmnist10", "bench-out/p", ["anpyc", "bench", "pmnist10", "--out", "/abs/bench-out/p"])
        'anpyc bench pmnist10 --out bench-out/p'
        >>> relative_command("bench long", "b", ["/venv/anpyc/__main__.py", "bench", "long", "--seeds", "1"])  # python -m anpyc
        'anpyc bench long --seeds 1 --out b'
    """
    import sys

    argv = list(sys.argv if argv is None else argv)
    # abspath, not resolve: an --out reached through a link stays as the user named it
    rel = Path(os.path.relpath(os.path.abspath(out_dir), os.path.abspath(os.getcwd()))).as_posix()
    first = subcommand.split()[0]
    program = Path(argv[0]) if argv else Path()
    started_as_anpyc = "anpyc" in program.name or (program.name == "__main__.py" and program.parent.name == "anpyc")
    if not started_as_anpyc or first not in argv[1:]:
        return f"anpyc {subcommand} --out {rel}"
    args, take = [], False
    for a in argv[1:]:
        if take:
            args.append(rel)
            take = False
        elif a == "--out":
            args.append(a)
            take = True
        elif a.startswith("--out="):
            args.append(f"--out={rel}")
        else:
            args.append(a)
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", rel]
    return "anpyc " + " ".join(args)
