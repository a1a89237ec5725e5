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
``tune.json`` and ``point_<k>/seed_<s>``. Every file is written atomically (:mod:`anpyc.io`).

Example:
    >>> run_dir_of("runs/cmp", "ewc", 2).as_posix()
    'runs/cmp/ewc/seed_2'
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from anpyc.errors import OutputError
from anpyc.io import append_jsonl, atomic_write_text, write_csv, write_json, write_yaml

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

#: files that mark a directory as holding a run, a comparison or a tuning
MARKERS = (CONFIG, COMPARE, TUNE)
#: files a run writes as it goes or at the end: removed by ``--overwrite`` before a new run
RESULT_FILES = (METRICS, LOG, RUN_LOG, ACC_CSV, VAL_CSV, CURVE_CSV, FID_CSV)
_SEED_DIR = re.compile(r"seed_(-?\d+)$")


def prepare(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse one that already holds a run unless ``overwrite`` (then its
    results and checkpoints are removed, so nothing of the old run mixes with the new one)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory")
    if any((out / marker).exists() for marker in MARKERS) and not overwrite:
        raise OutputError(f"{out} already holds a run; choose another --out or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {out}: {exc.strerror or exc}") from exc
    if overwrite:
        for stale in RESULT_FILES:
            (out / stale).unlink(missing_ok=True)
        for stale in (out / CHECKPOINTS).glob("ckpt-*.pt"):
            stale.unlink(missing_ok=True)
        for stale in (out / SAMPLES).glob("task_*.png"):
            stale.unlink(missing_ok=True)
    return out


def run_dir_of(compare_dir: str | Path, method: str, seed: int) -> Path:
    """Where a comparison keeps the run of ``method`` with ``seed``."""
    return Path(compare_dir) / method / f"seed_{seed}"


def seed_dirs(method_dir: str | Path) -> list[tuple[int, Path]]:
    """``(seed, path)`` of every ``seed_<s>`` folder under a comparison's method folder."""
    folder = Path(method_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _SEED_DIR.match(p.name))]
    return sorted(found)


# ----------------------------------------------------------------------------- writing
def finite(obj: Any) -> Any:
    """JSON has no NaN: ``None`` instead, in nested dicts and lists."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def _matrix_rows(matrix: np.ndarray, digits: int) -> list[list[str]]:
    return [["" if not np.isfinite(v) else f"{v:.{digits}f}" for v in row] for row in matrix]


def write_config(out: Path, config: dict) -> Path:
    return write_yaml(out / CONFIG, config)


def append_log(out: Path, record: dict) -> None:
    append_jsonl(out / LOG, finite(record))


def write_results(out: Path, R: np.ndarray, V: np.ndarray, metrics: dict, fid: np.ndarray | None = None) -> None:
    """The end of a run: the matrices as CSV, then ``metrics.json`` (written last: its
    presence means the run finished)."""
    header = [f"task_{j}" for j in range(R.shape[1])]
    write_csv(out / ACC_CSV, _matrix_rows(R, 6), header)
    write_csv(out / VAL_CSV, _matrix_rows(V, 6), header)
    if fid is not None:
        write_csv(out / FID_CSV, _matrix_rows(fid, 4), header)
    write_json(out / METRICS, finite(metrics))


def write_text(path: Path, text: str) -> Path:
    return atomic_write_text(path, text)


# ----------------------------------------------------------------------------- reading
def read_json(path: str | Path) -> dict:
    """A JSON object from disk, with a one-line :class:`OutputError` if it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"cannot read {path}: {first}") from exc
    if not isinstance(data, dict):
        raise OutputError(f"{path} does not hold a JSON object")
    return data


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
    if not path.exists():
        raise OutputError(f"{Path(run_dir)} has no {METRICS} (the run did not finish?)")
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
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=float).reshape(len(rows), -1)
