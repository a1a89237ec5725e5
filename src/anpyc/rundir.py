"""The run directory: the one module that knows its file names and how they are written.

A run directory (``anpyc run --out DIR``) holds

* ``config.yaml``: the resolved config plus provenance (written first),
* ``log.jsonl`` and ``run.log``: one record / line per task (written as it goes),
* ``acc_curve.csv`` (and ``tb/``): per-task tracking,
* ``checkpoints/``: the last two checkpoints,
* at the end ``metrics.json``, ``acc_matrix.csv``, ``val_acc_matrix.csv`` (generative runs:
  also ``fid_matrix.csv``; the report: ``report.md``, ``report.html``, ``plots/``).

A comparison directory holds ``compare.yaml``, ``summary.json``, ``summary.md`` and one run
directory per method and seed, ``<method>/seed_<s>``; a tuning directory ``tune.yaml``,
``tune.json`` and ``point_<k>/seed_<s>``. A sweep run by submitit (``--executor slurm`` or
``submitit-local``) adds ``jobs.json`` (its job list) and ``submitit/`` (submitit's files and
the jobs' logs). Every file is written atomically (:mod:`anpyc.io`).

**One writer at a time.** A run directory (``anpyc run --out``, ``compare --out`` and its per-run directories, the
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
    >>> run_dir_of("runs/cmp", "ewc", 2).as_posix()
    'runs/cmp/ewc/seed_2'
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import yaml

from anpyc.errors import OutputError, first_line
from anpyc.io import append_jsonl, atomic_write_text, write_csv, write_json, write_yaml

if TYPE_CHECKING:
    import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "log.jsonl"
RUN_LOG = "run.log"
ACC_CSV = "acc_matrix.csv"
VAL_CSV = "val_acc_matrix.csv"
FID_CSV = "fid_matrix.csv"
CURVE_CSV = "acc_curve.csv"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
COMPARE = "compare.yaml"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
TUNE = "tune.yaml"
JOB_LIST = "jobs.json"  # a sweep's submitted jobs (anpyc.experiments.executors)
JOB_FOLDER = "submitit"  # submitit's pickles, sbatch scripts and job logs

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"  # the report's plots
TB = "tb"  # TensorBoard's event files
AVG_ACC_PNG = "avg_acc.png"  # a comparison's plot
BENCH_JSON = "bench.json"
BENCH_MD = "bench.md"
TUNE_JSON = "tune.json"
TUNE_MD = "tune.md"

#: files that mark a directory as holding a run, a comparison or a tuning
MARKERS = (CONFIG, COMPARE, TUNE)
#: files a run writes as it goes or at the end
RESULT_FILES = (METRICS, LOG, RUN_LOG, ACC_CSV, VAL_CSV, CURVE_CSV, FID_CSV)
#: every file anpyc writes in an output directory, of whichever kind (run, comparison, tuning,
#: suite): ``--overwrite`` removes them all, so nothing of the old output mixes with the new
OUTPUT_FILES = (*MARKERS, *RESULT_FILES, SUMMARY_JSON, SUMMARY_MD, JOB_LIST, REPORT_MD, REPORT_HTML,
                AVG_ACC_PNG, BENCH_JSON, BENCH_MD, TUNE_JSON, TUNE_MD)
#: folders of written files, and the files' pattern in each
OUTPUT_FOLDERS = ((CHECKPOINTS, "ckpt-*.pt"), (SAMPLES, "task_*.png"), (PLOTS, "*.png"), (TB, "**/events.out.tfevents.*"))
_SEED_DIR = re.compile(r"seed_(-?\d+)$")


def prepare(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir`` and lock it for this process (:func:`acquire`); refuse one that
    already holds a run unless ``overwrite`` (then its results and checkpoints are removed, so
    nothing of the old run mixes with the new one)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory")
    acquire(out, create=True)  # before anything is checked or removed: another writer fails here
    if any((out / marker).exists() for marker in MARKERS) and not overwrite:
        raise OutputError(occupied(out))
    if overwrite:
        _refuse_busy_runs(out)
        clear(out)
    return out


def existing_dir(path: str | Path) -> Path:
    """``path``, a directory that must exist already (a run, comparison or tuning to read or go
    on with); else a one-line :class:`~anpyc.errors.OutputError`."""
    path = Path(path)
    if not path.is_dir():
        raise OutputError(f"{path}: no such directory")
    return path


def _refuse_busy_runs(out: Path) -> None:
    """Nothing is removed while another process writes one of the sweep's runs (a job still
    running after ``--no-wait``): clearing would pull its files from under it."""
    for run in _seed_folders(out):
        pid = holder(run)
        if pid is not None and pid != os.getpid():
            who = f"pid {pid}" if pid > 0 else "pid not recorded yet"
            raise OutputError(f"{run} is being written by another anpyc process ({who}): --overwrite would remove it; "
                              "wait for it to end (or cancel its job), or choose another --out")


def _seed_folders(out: Path) -> list[Path]:
    """The ``<label>/seed_<s>`` folders of the sweep in ``out``, whatever they hold."""
    return [run for d in _subfolders(out) for run in _subfolders(d) if _SEED_DIR.search(run.name)]


def _subfolders(folder: Path) -> list[Path]:
    """The folders in ``folder``; none where it is no folder or cannot be read (not anpyc's)."""
    try:
        return [d for d in folder.iterdir() if d.is_dir()]
    except OSError:
        return []


def clear(out: Path) -> None:
    """Remove what anpyc wrote in ``out``, whichever kind of output it held (a run, or a
    comparison, tuning or suite with its runs), and the folders that leaves empty; files of
    other names are kept."""
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    for folder, pattern in OUTPUT_FOLDERS:
        for stale in (out / folder).glob(pattern):
            stale.unlink(missing_ok=True)
        _remove_empty(out / folder)
    for run in _sweep_runs(out):
        clear(run)
        _remove_empty(run)
        _remove_empty(run.parent)


def _sweep_runs(out: Path) -> list[Path]:
    """The run directories of the sweep in ``out``: ``<label>/seed_<s>`` holding a run."""
    return [run for run in _seed_folders(out) if any((run / m).exists() for m in (CONFIG, METRICS))]


def _remove_empty(folder: Path) -> None:
    """``folder`` and the folders below it, those that hold nothing (a killed run's stale lock
    file keeps its folder)."""
    if not folder.is_dir():
        return
    for sub in sorted((d for d in folder.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


#: how ``run.log``'s line says that a run stopped before its end (failed, or was interrupted)
RUN_FAILED = "run failed:"
RUN_STOPPED = "run stopped:"


def unfinished_run(out: Path) -> str | None:
    """How to continue the run in ``out`` when it was killed or failed before its metrics were
    written (``None``: no such run); a failure ``run.log`` records is named."""
    if not (out / CONFIG).exists() or (out / METRICS).exists():
        return None
    if failure := recorded_failure(out):
        return f"{out} holds a run that failed ({failure}); `anpyc run --resume {out}` continues it with the same settings"
    return f"{out} holds an unfinished run (no {METRICS}): continue it with `anpyc run --resume {out}`"


def recorded_failure(out: Path) -> str | None:
    """The failure the last line of ``run.log`` records, if that is how the run ended."""
    try:
        lines = (out / RUN_LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    last = lines[-1] if lines else ""
    return last.split(RUN_FAILED, 1)[1].strip() if RUN_FAILED in last else None


def occupied(out: Path) -> str:
    """Why ``out`` cannot take a new run, and what to do: a finished run is kept unless
    ``--overwrite``; an unfinished one (killed, or failed) can also be continued."""
    if hint := unfinished_run(out):
        return f"{hint}, or start afresh with --overwrite"
    if (out / COMPARE).exists() and not (out / SUMMARY_JSON).exists():
        return (f"{out} holds an unfinished comparison: continue it with the same command plus --resume, "
                "or start afresh with --overwrite")
    if (out / COMPARE).exists():
        return (f"{out} already holds a comparison; choose another --out or pass --overwrite (to add methods or seeds "
                "to it: the same command, with them, plus --resume)")
    return f"{out} already holds a run; choose another --out or pass --overwrite"


def run_dir_of(compare_dir: str | Path, method: str, seed: int) -> Path:
    """Where a comparison keeps the run of ``method`` with ``seed``."""
    return Path(compare_dir) / method / f"seed_{seed}"


def seed_of(run_dir: str | Path) -> int | None:
    """The seed a comparison's run folder ``seed_<s>`` names (``None``: not such a folder)."""
    found = _SEED_DIR.match(Path(run_dir).name)
    return int(found.group(1)) if found else None


def seed_dirs(method_dir: str | Path) -> list[tuple[int, Path]]:
    """``(seed, path)`` of every ``seed_<s>`` folder under a comparison's method folder."""
    folder = Path(method_dir)
    if not folder.is_dir():
        return []
    return sorted((seed, p) for p in folder.iterdir() if p.is_dir() and (seed := seed_of(p)) is not None)


# ----------------------------------------------------------------------------- writing
def finite(obj: Any) -> Any:
    """JSON has no NaN: ``None`` instead, in nested dicts and lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _matrix_rows(matrix: np.ndarray, digits: int) -> list[list[str]]:
    return [["" if not math.isfinite(v) else f"{v:.{digits}f}" for v in row] for row in matrix]


def write_config(out: Path, config: dict) -> Path:
    return write_yaml(out / CONFIG, config)


def append_log(out: Path, record: dict) -> None:
    append_jsonl(out / LOG, finite(record))


def write_results(out: Path, R: np.ndarray, V: np.ndarray, metrics: dict, matrices: dict[str, np.ndarray] | None = None) -> None:
    """The end of a run: the matrices as CSV (``matrices``: more of them by file name, such as
    a generative run's ``fid_matrix.csv``), then ``metrics.json`` (written last: its presence
    means the run finished)."""
    header = [f"task_{j}" for j in range(R.shape[1])]
    write_csv(out / ACC_CSV, _matrix_rows(R, 6), header)
    write_csv(out / VAL_CSV, _matrix_rows(V, 6), header)
    for name, matrix in (matrices or {}).items():
        write_csv(out / name, _matrix_rows(matrix, 4), header)
    write_json(out / METRICS, finite(metrics))


def write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


# ----------------------------------------------------------------------------- reading
def read_json(path: str | Path) -> dict:
    """A JSON object from disk, with a one-line :class:`OutputError` if it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise OutputError(f"cannot read {path}: {first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path} does not hold a JSON object")
    return data


def read_summary(folder: str | Path) -> dict:
    """A comparison's summary: its ``summary.json``, else a suite's ``bench.json`` (the summary
    with the suite's record; a committed record keeps that one only); ``{}`` when neither is there."""
    for name in (SUMMARY_JSON, BENCH_JSON):
        if (Path(folder) / name).is_file():
            return read_json(Path(folder) / name)
    return {}


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping, or ``{}`` if the file is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(run_dir: str | Path) -> dict:
    """``metrics.json`` of a finished run (an :class:`OutputError` if missing or not one)."""
    path = Path(run_dir) / METRICS
    if not path.exists():  # a failure its run.log records is named (a diverged run read as "did not finish?")
        raise OutputError(unfinished_run(Path(run_dir)) or f"{Path(run_dir)} has no {METRICS} (the run did not finish?)")
    metrics = read_json(path)
    if "acc_matrix" not in metrics:
        raise OutputError(f"{path} is not a run's metrics.json (no acc_matrix)")
    return metrics


def read_log(out: Path) -> list[str]:
    """The lines of ``log.jsonl`` (empty if there is none)."""
    path = out / LOG
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def trim_log(out: Path, tasks_done: int) -> list[dict]:
    """Keep only ``log.jsonl`` records of the first ``tasks_done`` tasks (a kill may leave a
    record of a task that is trained again, or half a line); return the records kept."""
    if not (out / LOG).exists():
        return []
    kept = []
    for line in read_log(out):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("task"), int) and record["task"] < tasks_done:
            kept.append(record)
    atomic_write_text(out / LOG, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def matrix(rows: list) -> np.ndarray:
    """A JSON matrix (``null`` for not-yet-seen tasks) as a float array with NaN."""
    import numpy as np  # here: the command line checks its arguments before numpy is imported

    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=float).reshape(len(rows), -1)


# ----------------------------------------------------------------------------- the lock
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
