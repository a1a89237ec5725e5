"""Run directories: one writer at a time.

A run directory (``anpyc run --out``, ``compare --out`` and its per-run directories, the
files ``anpyc report`` writes, ``--resume``) is owned by one process while it is written:
:func:`acquire` takes an exclusive ``flock`` on ``DIR/.anpyc.lock`` before the first write
and records the holder's pid in that file. A second process that wants the directory fails
at once with an :class:`~anpyc.errors.OutputError` naming that pid (the CLI prints it as one
line and exits 2) and has touched nothing. The kernel drops the lock of a process that dies,
so a killed run never blocks the next one; the lock file is removed when the holder releases
the lock normally.

Locks are re-entrant within a process and scoped by *sessions*: a lock taken inside
:func:`session` (or a function decorated with :func:`releases_locks`) is released when the
outermost session ends, so ``anpyc run`` keeps its directory until its report is written,
and a library call of :func:`anpyc.runner.run` releases it when it returns. A process that
starts workers passes :func:`held` to them and each worker calls :func:`adopt`: the workers
write under their parent's lock (multi-process runs: the launching process holds it for
rank 0). Where ``fcntl`` is missing (Windows) directories are not locked.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with session():
    ...     _ = acquire(folder)            # this process owns the directory now
    ...     _ = acquire(folder)            # re-entrant: the same process may take it again
    ...     holder(folder) == os.getpid()
    True
    >>> holder(folder) is None             # released (and the lock file removed) at the end
    True
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from anpyc.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".anpyc.lock"

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class _Hold:
    """One directory this process holds: the locked file (``fd`` None when adopted from the
    parent process, or when the file system cannot lock) and how many times it was taken."""

    lock_file: Path
    fd: int | None
    count: int
    owner: int  # pid that took it: a forked child never releases its parent's lock
    adopted: bool = False  # held by the parent process for this one: never released here


_guard = threading.RLock()
_held: dict[Path, _Hold] = {}
_local = threading.local()  # per thread: the open sessions, each a list of what it took


def _sessions() -> list[list[Path]]:
    if not hasattr(_local, "sessions"):
        _local.sessions = []
    return _local.sessions


def _key(directory: str | Path) -> Path:
    return Path(os.path.realpath(directory))


def acquire(directory: str | Path, create: bool = False) -> Path:
    """Take the lock of ``directory`` (creating the directory first if ``create``), or take
    it once more if this process already holds it; returns the directory.

    Raises :class:`~anpyc.errors.OutputError` if another live process holds it (the message
    names its pid) or the directory cannot be created. Inside a :func:`session` the lock is
    released when the outermost session ends; outside one, by :func:`release`.
    """
    key = _key(directory)
    with _guard:
        hold = _held.get(key)
        if hold is not None:
            hold.count += 1
        else:
            _held[key] = _take(key, Path(directory), create)
        if _sessions():
            _sessions()[-1].append(key)
    return Path(directory)


def release(directory: str | Path) -> None:
    """Give back one :func:`acquire` of ``directory``; the last one unlocks it and removes
    the lock file. Directories this process does not hold are ignored."""
    key = _key(directory)
    with _guard:
        hold = _held.get(key)
        if hold is None or hold.adopted:
            return
        hold.count -= 1
        if hold.count <= 0:
            del _held[key]
            _drop(hold)


def held() -> list[str]:
    """Directories this process holds (to :func:`adopt` in the workers it starts)."""
    with _guard:
        return [str(k) for k in _held]


def adopt(directories: Iterable[str | Path]) -> None:
    """In a worker process: treat ``directories`` as held, because the process that started
    this one holds them for as long as the worker lives. Never released here."""
    with _guard:
        for directory in directories:
            key = _key(directory)
            _held[key] = _Hold(key / LOCK_NAME, None, 1, os.getpid(), adopted=True)


def holder(directory: str | Path) -> int | None:
    """Pid of the process that holds ``directory``'s lock (-1 if it has not written its pid
    yet), or None when the directory is free. For diagnostics and tests: it probes with a
    shared lock for an instant, during which another process's :func:`acquire` would fail."""
    lock_file = _key(directory) / LOCK_NAME
    if fcntl is None or not lock_file.is_file():
        return None
    try:
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _recorded_pid(lock_file) or -1
    except OSError:
        return None
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Locks taken inside are held until the outermost session ends (on success, error or
    KeyboardInterrupt alike)."""
    sessions = _sessions()
    sessions.append([])
    try:
        yield
    finally:
        taken = sessions.pop()
        if sessions:
            sessions[-1].extend(taken)  # an enclosing session keeps them
        else:
            for key in reversed(taken):
                release(key)


def releases_locks(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fn`` in a :func:`session`, so the run-directory locks it takes are
    released when it returns or raises (unless a caller's session keeps them)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with session():
            return fn(*args, **kwargs)

    return wrapper


# ------------------------------------------------------------------------ the lock file
def _take(key: Path, shown: Path, create: bool) -> _Hold:
    """Lock the directory ``key`` (``shown``: as the user named it, for messages)."""
    if create:
        try:
            key.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output directory {shown}: {exc.strerror or exc}") from exc
    elif not key.is_dir():
        raise OutputError(f"{shown} is not a directory")
    lock_file = key / LOCK_NAME
    if fcntl is None:
        return _Hold(lock_file, None, 1, os.getpid())
    while True:
        fd = _open_locked(shown, lock_file)
        if fd is None:  # this file system cannot lock: go on unlocked
            return _Hold(lock_file, None, 1, os.getpid())
        if _still_there(fd, lock_file):
            break
        os.close(fd)  # the holder removed the file between our open and our lock: again
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return _Hold(lock_file, fd, 1, os.getpid())


def _open_locked(shown: Path, lock_file: Path) -> int | None:
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot write in {shown}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = _recorded_pid(lock_file)
        who = f"pid {pid}" if pid else "pid not recorded yet"
        raise OutputError(
            f"{shown} is being written by another anpyc process ({who}); wait for it to end or use another directory"
        ) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            log.warning("cannot lock %s (%s): another process could write it at the same time", shown, exc.strerror)
            return None
        raise OutputError(f"cannot lock {shown}: {exc.strerror or exc}") from exc
    return fd


def _still_there(fd: int, lock_file: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(lock_file)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _recorded_pid(lock_file: Path) -> int | None:
    try:
        text = lock_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _drop(hold: _Hold) -> None:
    if hold.fd is None or hold.owner != os.getpid():
        return
    with contextlib.suppress(OSError):
        hold.lock_file.unlink()  # while still locked: see _still_there
    with contextlib.suppress(OSError):
        fcntl.flock(hold.fd, fcntl.LOCK_UN)
    os.close(hold.fd)


def _forget_in_child() -> None:
    """After fork: the child holds nothing of its own (the inherited descriptors keep the
    parent's locks; the child must neither release nor unlink them)."""
    global _guard, _local
    _guard = threading.RLock()
    _local = threading.local()
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
