"""Read a run or comparison directory from disk into one shape the report uses.

A *run directory* holds ``config.yaml`` and ``metrics.json`` (see :mod:`anpyc.runner`). A
*comparison directory* holds ``compare.yaml`` and/or ``summary.json`` plus one run directory
per method and seed, ``<method>/seed_<s>/`` (a record of docs/benchmarks, ``compare.yaml``
beside a ``runs/`` folder, holds them in ``runs/``). Reports read only these files, so a report can be
redrawn long after training, and a comparison that stopped half way still gets one (runs
without ``metrics.json`` are skipped with a warning).

Example:
    >>> results = load_results("runs/cmp")  # doctest: +SKIP
    >>> sorted(results.runs)  # doctest: +SKIP
    ['anpyc', 'finetune']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from anpyc import rundir
from anpyc.errors import OutputError

log = logging.getLogger(__name__)

RECORD_RUNS = "runs"  # a committed record's run folders (docs/benchmarks/NAME/runs/<label>/seed_<s>)


@dataclass
class RunData:
    """One finished run: its ``metrics.json`` and ``config.yaml`` as dicts."""

    path: Path
    method: str
    seed: int | None
    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    """Every finished run under a directory, grouped by method (methods in run order)."""

    root: Path
    kind: Literal["run", "compare"]
    runs: dict[str, list[RunData]]
    summary: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.runs)

    @property
    def benchmark(self) -> str:
        for rs in self.runs.values():
            for r in rs:
                if r.metrics.get("benchmark"):
                    return str(r.metrics["benchmark"])
        return str(self.summary.get("benchmark") or self.compare.get("base", {}).get("stream", {}).get("benchmark", "?"))

    @property
    def n_tasks(self) -> int:
        return max((len(r.metrics.get("acc_matrix") or []) for rs in self.runs.values() for r in rs), default=0)

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for rs in self.runs.values() for r in rs if r.seed is not None})


def load_run(path: str | Path, method: str | None = None, seed: int | None = None) -> RunData:
    """One run directory; raises :class:`OutputError` when ``metrics.json`` is missing or bad."""
    path = Path(path)
    metrics = rundir.read_metrics(path)
    config = rundir.read_yaml(path / rundir.CONFIG)
    method = method or metrics.get("method") or config.get("method") or path.name
    if seed is None:
        seed = metrics.get("seed", config.get("seed"))
    return RunData(path, str(method), None if seed is None else int(seed), metrics, config)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / rundir.METRICS).exists()


def is_compare_dir(path: str | Path) -> bool:
    p = Path(path)
    return (p / rundir.SUMMARY_JSON).exists() or (p / rundir.COMPARE).exists()


def load_results(path: str | Path) -> Results:
    """Load a run directory or a comparison directory (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise OutputError(f"{root} is not a directory")
    if is_compare_dir(root):
        return _load_compare(root)
    if is_run_dir(root):
        run = load_run(root)
        return Results(root, "run", {run.method: [run]})
    if hint := rundir.unfinished_run(root):
        raise OutputError(f"{hint}, then report it")
    if (root / rundir.TUNE).exists():  # a search: its table is written with it, each run reports alone
        raise OutputError(f"{root} holds a tuning: its table is {root / rundir.TUNE_MD} (every point's "
                          f"figures: {rundir.TUNE_JSON}); report one of its runs, e.g. {root / 'point_0' / 'seed_0'}")
    raise OutputError(
        f"{root} is neither a run directory (metrics.json) nor a comparison directory "
        "(summary.json or compare.yaml)"
    )


def _label_folders(folder: Path) -> list[str]:
    """The folders under ``folder`` that hold ``seed_<s>`` folders (a comparison's labels)."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(rundir.seed_dirs(p)))


def _runs_folder(root: Path) -> tuple[Path, list[str]]:
    """Where a comparison's ``<label>/seed_<s>`` folders lie, and their labels: in it, or, in a
    record of docs/benchmarks (``compare.yaml`` beside a ``runs/`` folder), in ``runs/``."""
    labels, nested = _label_folders(root), root / RECORD_RUNS
    if not labels and nested.is_dir() and (nested_labels := _label_folders(nested)):
        return nested, nested_labels
    return root, labels


def _load_compare(root: Path) -> Results:
    summary = rundir.read_summary(root)
    spec = rundir.read_yaml(root / rundir.COMPARE)
    folder, labels = _runs_folder(root)
    # order: as the comparison listed them, then any other method folder found on disk
    order = [str(m) for m in spec.get("methods") or summary.get("methods") or []]
    order += [name for name in labels if name not in order]
    runs: dict[str, list[RunData]] = {}
    for method in order:
        found = []
        for seed, seed_dir in rundir.seed_dirs(folder / method):
            try:
                found.append(load_run(seed_dir, method, seed))
            except OutputError as exc:
                log.warning("report skips %s: %s", seed_dir, exc)
        if found:
            runs[method] = found
    if not runs:
        raise OutputError(f"{root} holds no finished run (no <method>/seed_<s>/metrics.json)")
    return Results(root, "compare", runs, summary, spec)
