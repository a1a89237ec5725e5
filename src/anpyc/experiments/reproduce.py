"""``anpyc reproduce DIR``: rerun a finished run from its saved ``config.yaml`` alone and
compare the results with the ones it saved.

On CPU the accuracy matrices must be equal bit for bit (float64 accuracies of the same
predictions); a difference means the code, the data, the library versions or the machine's
vector instructions (``cpu_capability``: kernels for AVX2 and AVX-512 may round differently,
and a few predictions can flip) or its processor (``cpu_model``: two makes with the same
instructions can differ too) changed. The verdict names whichever of these the run recorded
differently, and says "not recorded" of the machine where an older run did not record it (the
processor before 2026-12-06, the instructions before 47445c7).

A folder that holds no run itself (a comparison, a suite, a tuning, a committed benchmark or
one method's seeds of it) reproduces every finished run below it (:func:`reproduce_all`): the
figures of a table are means over those runs. A run that stopped of itself (a diverged loss)
is part of a table too (its row is missing, or made of the other seeds): where its failure is
recorded (its ``run.log``, or the ``failed`` list of the comparison's ``summary.json`` or the
suite's ``bench.json``) it is rerun, and reproduced when it stops again with the same message.

Example:
    >>> report = reproduce("runs/pmnist-anpyc")  # doctest: +SKIP
    >>> report.equal, report.verdict()  # doctest: +SKIP
    (True, 'reproduced: acc_matrix (10x10) and val_acc_matrix identical')
    >>> reproduce_all("docs/benchmarks/pmnist10/runs/anpyc").verdict()  # doctest: +SKIP
    'reproduced: all 5 runs identical'
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anpyc.callbacks.progress import progress_bar
from anpyc.config import CUSTOM, RunConfig
from anpyc.errors import ConfigError, OutputError, TrainingError, one_line
from anpyc.rundir import existing_dir, matrix, read_metrics, read_summary, recorded_failure, seed_of

log = logging.getLogger(__name__)

COMPARED = ("acc_matrix", "val_acc_matrix")
MACHINE = ("cpu_capability", "cpu_model")  # recorded since 47445c7 and 2026-12-06


@dataclass
class ReproduceReport:
    """Per compared matrix: ``None`` if identical, else a one-line description of the difference."""

    run_dir: Path
    differences: dict[str, str | None] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    #: provenance entries (torch, numpy, git commit...) that differ from the original run's
    changed: dict[str, tuple] = field(default_factory=dict)
    #: a run that stopped of itself: the message it stopped with (and the rerun's: ``differences["stop"]``)
    stopped: str | None = None

    @property
    def equal(self) -> bool:
        return all(d is None for d in self.differences.values())

    def verdict(self) -> str:
        if self.equal and self.stopped is not None:
            return f"reproduced: stopped again as it did ({self.stopped})"
        if self.equal:
            shape = "x".join(map(str, self.shape))
            return f"reproduced: {' and '.join(self.differences)} identical ({shape})"
        bad = "; ".join(f"{k}: {d}" for k, d in self.differences.items() if d is not None)
        hint = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.changed.items())
        return f"NOT reproduced: {bad}" + (f" (changed since the run: {hint})" if hint else "")


def compare_matrices(a: np.ndarray, b: np.ndarray, atol: float = 0.0) -> str | None:
    """``None`` if ``a`` and ``b`` are equal (NaN == NaN, within ``atol``), else what differs."""
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return f"{int((nan_a != nan_b).sum())} cell(s) defined in only one of them"
    diff = np.where(nan_a, 0.0, np.abs(a - b))
    bad = diff > atol
    if not bad.any():
        return None
    i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return f"{int(bad.sum())} cell(s) differ, largest at [{i}, {j}]: {a[i, j]:.6f} vs {b[i, j]:.6f}"


def reproduce(run_dir: str | Path, out: str | Path | None = None, quiet: bool = False, atol: float = 0.0,
              stream_from: str | None = None, overwrite: bool = False) -> ReproduceReport:
    """Rerun ``run_dir``'s config (into ``out`` if given, else in memory; ``overwrite``: an
    ``out`` that holds results is emptied first, as ``anpyc run --overwrite``) and compare. A
    run on a stream of your own is rebuilt from its ``stream.source`` or from ``stream_from``
    (``MODULE:FUNCTION``, as ``--stream-from``); one passed from Python with neither is refused.
    A run that stopped of itself, its failure recorded (:func:`expected_stop`), must stop again
    with the same message."""
    from anpyc.config import load_mapping
    from anpyc.runner import run

    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol >= 0):
        raise ConfigError(f"--atol must be a finite number >= 0 (a tolerance per accuracy), got {atol}")
    run_dir = existing_dir(run_dir)
    if not (run_dir / "config.yaml").is_file():
        n = len(runs_below(run_dir))
        below = f" ({n} runs below it: reproduce_all reruns them)" if n else ""
        raise OutputError(f"{run_dir} holds no run (no config.yaml){below}")
    finished = (run_dir / "metrics.json").is_file()
    stop = None if finished else expected_stop(run_dir)
    if not finished and stop is None:
        raise OutputError(f"{run_dir} has no metrics.json: the run did not finish (anpyc run --resume {run_dir})")
    original = read_metrics(run_dir) if finished else {}
    cfg = _rebuildable(RunConfig.from_file(run_dir / "config.yaml"), run_dir, stream_from)
    if out is not None and Path(out).resolve() == run_dir.resolve():
        raise OutputError("reproduce --out must differ from the run directory")
    saved_meta = load_mapping(run_dir / "config.yaml").get("meta") or {}
    recorded = saved_meta.get("budget") if isinstance(saved_meta.get("budget"), dict) else None
    report = ReproduceReport(run_dir, changed=_changed_provenance(saved_meta), stopped=stop)
    try:  # config.yaml holds the epochs as run; the budget they came from is recorded again, not applied
        result = run(cfg, out, quiet=quiet, overwrite=overwrite, budget=None, report=False, recorded_budget=recorded)
    except Exception as exc:  # noqa: BLE001 - a recorded failure of any kind may be what reproduces
        message = one_line(exc)
        if stop is None or (message != stop and not isinstance(exc, TrainingError)):
            raise  # a bad input or setting here, or a new fault: not the run's own end
        report.differences["stop"] = None if message == stop else f"stopped with {message!r}, not {stop!r}"
    else:
        report.shape = result.acc_matrix.shape
        if stop is not None:
            report.differences["stop"] = f"finished (ACC {100 * result.metrics['avg_acc']:.2f} %) where the run stopped ({stop})"
        for key in (k for k in COMPARED if k in original):
            mine = result.acc_matrix if key == "acc_matrix" else result.val_acc_matrix
            report.differences[key] = compare_matrices(matrix(original[key]), mine, atol)
    log.info("%s: %s", run_dir, report.verdict())
    return report


def _changed_provenance(saved_meta: dict) -> dict[str, tuple]:
    """The provenance entries (versions, machine, commit) of this process that differ from the
    run's; the machine's as "not recorded" where an older run did not record it."""
    from anpyc.runner import provenance

    now, changed = provenance(), {}
    for key in ("anpyc", "torch", "numpy", "python", "cpu_capability", "cpu_model", "git_commit"):
        if key in saved_meta and saved_meta[key] != now.get(key):
            changed[key] = (saved_meta[key], now.get(key))
        elif key in MACHINE and key not in saved_meta:  # an older run: the machine may be another
            changed[key] = ("not recorded", now.get(key))
    return changed


def expected_stop(run_dir: str | Path) -> str | None:
    """The message an unfinished run stopped with of itself (``None``: killed, or not recorded):
    the failure its ``run.log`` records, else the ``failed`` entry (exit code 2) for its label
    and seed in the ``summary.json`` or ``bench.json`` of its comparison (``<cmp>/<label>/seed_<s>``)
    or of a committed record (``<record>/runs/<label>/seed_<s>``, which keeps no ``run.log``)."""
    run_dir = Path(run_dir)
    if (failure := recorded_failure(run_dir)) is not None:
        return failure
    seed, label = seed_of(run_dir), run_dir.parent.name
    for folder in list(run_dir.parents)[1:3] if seed is not None else ():
        for entry in read_summary(folder).get("failed") or []:
            if (entry.get("method"), entry.get("seed"), entry.get("exit_code")) == (label, seed, 2):
                return str(entry.get("error"))
    return None


@dataclass
class SweepReport:
    """Every finished run below ``root`` reproduced, and every run that stopped of itself
    (``reports``, in path order); ``unfinished``: runs that hold no ``metrics.json`` and no
    recorded failure (killed: nothing to compare, skipped)."""

    root: Path
    reports: list[ReproduceReport] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return bool(self.reports) and all(r.equal for r in self.reports)

    def verdict(self) -> str:
        n = len(self.reports)
        skipped = f"; {len(self.unfinished)} unfinished run(s) skipped" if self.unfinished else ""
        stops = sum(r.stopped is not None for r in self.reports)
        if self.equal:
            what = f"all {n} runs" if n > 1 else "its one run"
            if not stops:
                return f"reproduced: {what} identical{skipped}"
            parts = [f"{n - stops} identical"] if n > stops else []
            parts.append(f"{stops} stopped again as {'they' if stops > 1 else 'it'} did")
            return f"reproduced: {what} ({', '.join(parts)}){skipped}"
        bad = [str(r.run_dir.relative_to(self.root)) for r in self.reports if not r.equal]
        return f"NOT reproduced: {len(bad)} of {n} runs differ ({', '.join(bad)}){skipped}"


def runs_below(root: str | Path) -> list[Path]:
    """The run directories below ``root`` (each holds ``config.yaml``), in path order."""
    root = Path(root)
    return sorted(p.parent for p in root.rglob("config.yaml") if p.parent != root)


def reproduce_all(root: str | Path, out: str | Path | None = None, quiet: bool = False, atol: float = 0.0,
                  stream_from: str | None = None, overwrite: bool = False, jobs: int = 1) -> SweepReport:
    """:func:`reproduce` every finished run below ``root`` (a comparison, suite, tuning or
    benchmark folder), and every run that stopped of itself (:func:`expected_stop`); with
    ``out``, each rerun goes to the same relative path under it; ``jobs > 1``: that many runs at
    a time, in processes of this machine. Each run's verdict is logged as it ends."""
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ConfigError(f"--jobs must be an integer >= 1, got {jobs!r}")
    root = Path(root)
    runs = runs_below(root)
    if not runs:
        raise OutputError(f"{root} holds no run (no config.yaml in it or below it)")
    if out is not None and Path(out).resolve().is_relative_to(root.resolve()):
        raise OutputError("reproduce --out must lie outside the folder reproduced")
    sweep = SweepReport(root, unfinished=[r for r in runs if not (r / "metrics.json").is_file() and expected_stop(r) is None])
    if len(sweep.unfinished) == len(runs):
        raise OutputError(f"{root} holds no finished run ({len(runs)} unfinished: anpyc run --resume DIR continues one)")
    finished = [r for r in runs if r not in sweep.unfinished]
    calls = [(r, Path(out) / r.relative_to(root) if out is not None else None, quiet or jobs > 1, atol, stream_from,
              overwrite) for r in finished]
    bar = progress_bar(len(finished), quiet, f"reproduce {root}", unit="run")
    for report in _reproduced(calls, jobs):
        sweep.reports.append(report)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return sweep


def _reproduced(calls: list[tuple], jobs: int) -> Iterator[ReproduceReport]:
    """:func:`reproduce` of each argument tuple, in order: here, or in ``jobs`` processes (the
    first error stops the others and is raised)."""
    if jobs <= 1 or len(calls) <= 1:
        yield from (reproduce(*call) for call in calls)
        return
    from anpyc.experiments.jobs import stop_workers
    from anpyc.parallel.launch import default_start_method, default_threads

    workers = min(jobs, len(calls))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(default_start_method()),
                               initializer=torch.set_num_threads, initargs=(default_threads(workers),))
    try:
        for future in [pool.submit(reproduce, *call) for call in calls]:
            yield future.result()
    except BaseException:  # an error, Ctrl-C, SIGTERM: no worker goes on unseen
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _rebuildable(cfg: RunConfig, run_dir: Path, stream_from: str | None) -> RunConfig:
    """``cfg`` with a stream it can rebuild: a registered one, a stream of your own from its
    recorded ``stream.source`` or from ``stream_from``; else a one-line :class:`ConfigError`."""
    if stream_from is not None:
        if cfg.stream.benchmark != CUSTOM:
            raise ConfigError(f"{run_dir} ran on {cfg.stream.benchmark!r}, not on a stream of your own: drop --stream-from")
        return cfg.replace(stream=dataclasses.replace(cfg.stream, source=stream_from))
    if cfg.stream.benchmark == CUSTOM and cfg.stream.source is None:
        what = f" ({cfg.stream.description})" if cfg.stream.description else ""
        raise ConfigError(f"{run_dir} ran on a stream of your own passed from Python{what}: rebuild it with "
                          f"anpyc reproduce {run_dir} --stream-from MODULE:FUNCTION")
    return cfg
