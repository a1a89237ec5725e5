"""``tune``: grid search of one method's hyper-parameters, selected on the validation split.

Every grid point runs on the same stream(s) and seeds; the point with the highest mean
``val_avg_acc`` (average accuracy on the held-out validation split of every task after the
last task, from ``val_acc_matrix``) wins. Test accuracy is recorded beside it for the report
but never used to choose. Ties go to the earlier point in the grid.

Example:
    >>> from anpyc.config import RunConfig
    >>> base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    >>> result = tune(base, {"lam": [1.0, 10.0]}, seeds=[0], quiet=True)  # doctest: +SKIP
    >>> result["best"]["params"]  # doctest: +SKIP
    {'lam': 10.0}
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.errors import AnpycError, ConfigError, TrainingError, refuse_repeats
from anpyc.experiments.compare import budgeted, open_sweep, own_stream
from anpyc.experiments.executors import ExecutorConfig, execute, resubmits
from anpyc.experiments.executors import check as check_executor
from anpyc.experiments.jobs import Job, run_job
from anpyc.experiments.presets import best_point, expand_grid, grid_for, load_grids, save_preset
from anpyc.experiments.protocols import (
    differences,
    fingerprint,
    get_protocol,
    protocol_config,
    protocol_fingerprint,
)
from anpyc.io import relative_command, write_json
from anpyc.methods import create, typed
from anpyc.runner import build_stream, git_commit, run

if TYPE_CHECKING:
    from collections.abc import Callable

    from anpyc.experiments.executors import Execution
    from anpyc.methods.base import Method

log = logging.getLogger(__name__)


@rundir.releases_locks  # OUT and its runs stay locked until the search ends
def tune(
    base: RunConfig,
    grid: dict[str, list[Any]],
    seeds: list[int],
    out_dir: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    budget: str = "passes",
    executor: ExecutorConfig | None = None,
    stream: Any = None,
    jobs: int = 1,
    resume: bool = False,
) -> dict:
    """Run ``base.method`` at every grid point (over ``base.method_params``) and pick by
    validation accuracy. Writes ``tune.json`` and ``tune.md`` under ``out_dir``.

    A point whose training diverges (non-finite loss) is recorded as failed, not chosen.
    ``executor``: where the runs go (:mod:`anpyc.experiments.executors`; default: here, one
    after another); a submitit sweep into an ``out_dir`` that holds it goes on there, and
    without waiting returns ``{"submitted": ...}`` (the same call again gathers it).
    ``stream``: your own data, as :func:`anpyc.experiments.compare.compare` takes it (a stream,
    a function ``seed -> stream`` or ``"MODULE:FUNCTION"``). ``jobs > 1``: that many (point,
    seed) runs at a time in processes of this machine (every point's seeds then run, also after
    one diverged). ``resume``: continue the killed search in ``out_dir`` (the same grid, seeds
    and config, checked): finished runs are read back, killed ones continue from their newest
    checkpoint, the others run.
    """
    base, own = own_stream(base, stream, jobs=jobs)
    points = expand_grid(grid)
    if not grid or not points:
        raise ConfigError("tune needs at least one --param KEY=V1,V2,...")
    if not seeds:
        raise ConfigError("tune needs at least one seed")
    refuse_repeats("tune", "seed", list(seeds))
    # every (point, seed) run, its method built once, under the comparison's budget: a bad name,
    # value or budget fails here, before any training
    configs = [typed(base.with_params(**p)) for p in points]
    runs = [[_budgeted_run(cfg, budget, s) for s in seeds] for cfg in configs]
    check_executor(executor)
    resume = resume or (resubmits(executor, out_dir, rundir.TUNE) and not overwrite)
    numbers, order = point_numbers(out_dir if resume else None, points)
    record = {"tune": base.method, "grid": grid, "seeds": seeds, "base": base.to_dict(), "budget": budget,
              **({"points": order} if order is not None else {})}
    out = open_sweep(out_dir, record, resume, overwrite, rundir.TUNE)
    metrics_of = _metrics_source(base, runs, seeds, out, executor, overwrite, quiet, own, budget, jobs, resume, numbers)
    if isinstance(metrics_of, dict):  # submitted without waiting
        return metrics_of
    rows = [_point_row(numbers[k], point_cfg, seeds, runs[k], out, metrics_of) for k, point_cfg in enumerate(configs)]
    best = best_point(rows)  # the highest validation ACC; ties: the earlier point
    if best is None:
        raise TrainingError("every grid point diverged; lower the learning rate or the grid's strengths")
    result = {
        "method": base.method,
        "benchmark": base.stream.benchmark,
        "grid": grid,
        "seeds": list(seeds),
        "selected_by": "val_avg_acc (mean over seeds)",
        "budget": {"mode": budget, "per_task": base.train.epochs},
        "points": rows,
        "best": best,
        "config": base.to_dict(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if out is not None:
        write_json(out / rundir.TUNE_JSON, result)
        rundir.write_text(out / rundir.TUNE_MD, tune_markdown(result))
    return result


def point_numbers(out_dir: str | Path | None, points: list[dict[str, Any]]) -> tuple[list[int], list[dict] | None]:
    """The folder number of each grid point (``OUT/point_<n>``) and, for a tuning that grew or
    whose grid was reordered, the points in folder order (kept in ``tune.yaml`` as ``points``;
    else ``None``). A fresh search numbers its points in grid order; one resumed from
    ``out_dir`` keeps the numbers its ``tune.yaml`` gave, and a point added to the grid takes
    the next free one.

    Example:
        >>> point_numbers(None, [{"lam": 1}, {"lam": 10}])
        ([0, 1], None)
    """
    record = Path(out_dir) / rundir.TUNE if out_dir is not None else None
    saved = rundir.read_yaml(record) if record is not None and record.is_file() else None
    if saved is None:
        return list(range(len(points))), None
    known = saved.get("points") or expand_grid(saved.get("grid") or {})
    plain = [yaml.safe_load(yaml.safe_dump(p)) for p in points]  # as tune.yaml holds them
    numbers = []
    for p in plain:
        if p not in known:
            known = [*known, p]
        numbers.append(known.index(p))
    # the grid's own order numbers them so (tune.yaml's grid alone says it): nothing more to keep
    return numbers, None if numbers == list(range(len(known))) and "points" not in saved else known


def _metrics_source(base: RunConfig, runs: list, seeds: list[int], out: Path | None, executor: ExecutorConfig | None,
                    overwrite: bool, quiet: bool, own: Any = None, budget: str = "passes", workers: int = 1,
                    resume: bool = False, numbers: list[int] | None = None,
                    ) -> dict | Callable[[int, int, RunConfig, Method, Path | None], dict]:
    """``metrics_of(k, seed, cfg, method, run_dir)``: a run's metrics, trained here when asked
    (one stream per seed), or read from the results of every run made first by ``workers``
    processes or a submitit sweep; ``{"submitted": ...}`` when the sweep was submitted without
    waiting. ``own``: your own data's ``seed -> stream`` (:func:`anpyc.experiments.compare.own_stream`).
    ``resume``: a run ``out`` holds already is read back (finished) or continued (killed).
    ``numbers``: each point's folder number (:func:`point_numbers`; default: its place)."""
    submitit = executor is not None and executor.uses_submitit
    numbers = numbers if numbers is not None else list(range(len(runs)))
    if submitit or workers > 1:
        jobs = [Job(f"point_{k}", s, cfg, out / f"point_{k}" / f"seed_{s}" if out is not None else None,
                    resume=resume, method_object=None if submitit else method, budget=budget)
                for k, point_runs in zip(numbers, runs) for s, (cfg, method) in zip(seeds, point_runs)]
        execution = execute(jobs, executor, out, workers, overwrite=overwrite, quiet=quiet)
        return {"submitted": execution.submitted} if execution.submitted is not None else _executed(execution)
    streams = {s: own(s) if own is not None else build_stream(base.replace(seed=s)) for s in seeds}

    def metrics_of(k: int, s: int, cfg: RunConfig, method: Any, run_dir: Path | None) -> dict:
        if resume and run_dir is not None and (run_dir / rundir.CONFIG).is_file():  # read back, or continued
            job = Job(f"point_{k}", s, cfg, run_dir, resume=True, method_object=method, budget=budget)
            return run_job(job, quiet=quiet, stream=streams[s]).metrics
        return run(cfg, run_dir, quiet=quiet, overwrite=overwrite or resume, stream=streams[s], method=method,
                   budget=budget, report=False).metrics

    return metrics_of


def _point_row(k: int, point_cfg: RunConfig, seeds: list[int], point_runs: list, out: Path | None,
               metrics_of: Callable[[int, int, RunConfig, Method, Path | None], dict]) -> dict:
    """The row of the grid point in ``OUT/point_<k>``: its mean validation and test accuracy over
    the seeds, or the error of the first seed whose training diverged (the others are not run)."""
    val, test, failed = [], [], None
    for s, (cfg, method) in zip(seeds, point_runs):
        run_dir = out / f"point_{k}" / f"seed_{s}" if out is not None else None
        try:
            m = metrics_of(k, s, cfg, method, run_dir)
        except TrainingError as exc:
            failed = str(exc)
            break
        val.append(m["val_avg_acc"])
        test.append(m["avg_acc"])
    params = {**point_cfg.params_dict(), **point_cfg.run_options()}  # run options given among the method's (--param)
    row = {"point": k, "params": params, "failed": failed,
           "val_avg_acc": _mean(val) if not failed else None, "val_std": _std(val) if not failed else None,
           "test_avg_acc": _mean(test) if not failed else None}
    log.info("tune %s %s: val %s", point_cfg.method, row["params"], row["val_avg_acc"])
    return row


def _executed(execution: Execution) -> Callable[[int, int, RunConfig, Method, Path | None], dict]:
    """``metrics_of(k, seed, ...)`` over an executor's results: a run's metrics; a diverged
    run's TrainingError; any other failure ends the search with its one-line error."""
    done = {key: r.metrics for key, r in execution.done.items()}
    failed = {(f.method, f.seed): f for f in execution.failures}

    def metrics_of(k: int, s: int, *_: Any) -> dict:
        if (f"point_{k}", s) in done:
            return done[(f"point_{k}", s)]
        failure = failed[(f"point_{k}", s)]
        if failure.error_type == TrainingError.__name__:
            raise TrainingError(failure.error)
        raise AnpycError(f"tune: point {k}, seed {s} failed: {failure.error}")

    return metrics_of


def _budgeted_run(cfg: RunConfig, budget: str, seed: int) -> tuple[RunConfig, Any]:
    """``(config, method)`` of one run of a grid point: the method built once and asked for its
    epochs under the budget (a budget that leaves nothing to train fails here, before any run);
    the run applies the budget again to that very object and records it, as compare's do."""
    method = create(cfg.method, cfg.method_params)
    budgeted(cfg, budget, method)
    return cfg.replace(seed=seed), method


def tune_markdown(result: dict) -> str:
    """Each point with validation and test ACC; the chosen one marked."""
    keys = list(result["grid"])
    lines = [
        f"# tune {result['method']} on {result['benchmark']}, seeds {result['seeds']}",
        "",
        f"Selected by {result['selected_by']}; test ACC is reported only.",
        "",
        "| " + " | ".join(keys) + " | val ACC % | test ACC % | chosen |",
        "|" + "---|" * (len(keys) + 3),
    ]
    for r in result["points"]:
        vals = " | ".join(str(r["params"][k]) for k in keys)
        if r["failed"]:
            lines.append(f"| {vals} | diverged | - | |")
            continue
        mark = "**yes**" if r["point"] == result["best"]["point"] else ""
        lines.append(f"| {vals} | {100 * r['val_avg_acc']:.2f} | {100 * r['test_avg_acc']:.2f} | {mark} |")
    return "\n".join(lines) + "\n"


def _mean(v: list[float]) -> float | None:
    return float(np.mean(v)) if v else None


def _std(v: list[float]) -> float | None:
    return float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 if v else None


#: settings ``anpyc tune --protocol`` lets the command line change: the machine's, never the protocol's
MACHINE_SETTINGS = {"stream": {"data_dir"}, "train": {"device", "threads", "eval_batch_size", "checkpoint_every"}}


def protocol_tune_config(protocol: str, method: str, machine: dict[str, Any] | None = None) -> RunConfig:
    """The config ``anpyc tune --protocol`` runs ``method``'s grid points from: the protocol's
    base with its tuning proxy and the ``machine`` settings (threads, device, data dir); its
    fingerprint is checked to be the protocol's.
    """
    from anpyc.config import deep_update

    machine = machine or {}
    for section, keys in machine.items():
        bad = set(keys) - MACHINE_SETTINGS.get(section, set()) if isinstance(keys, dict) else {section}
        if bad:
            names = ", ".join(f"{section}.{k}" for k in sorted(bad))
            raise ConfigError(f"tune --protocol {protocol}: {names} is fixed by the protocol and its tuning proxy; "
                              "only the machine's settings (--threads, --device, --data-dir, --eval-batch-size) may be given")
    p = get_protocol(protocol)
    cfg = RunConfig.from_dict(deep_update(deep_update(p.base, p.tune), machine)).with_params(method)
    diff = differences(protocol_fingerprint(protocol), fingerprint(cfg, p.budget))
    if diff:  # a proxy may change only what the fingerprint leaves out (tasks, evaluation subsets)
        raise ConfigError(f"protocol {protocol}: its tuning proxy changes the protocol: {diff[0]}")
    return cfg


def tune_protocol(
    protocol: str,
    method: str,
    out_dir: str | Path,
    seeds: list[int] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    machine: dict[str, Any] | None = None,
    save: bool = False,
    preset_dir: Path | None = None,
    grids: dict | None = None,
    executor: ExecutorConfig | None = None,
    jobs: int = 1,
    resume: bool = False,
) -> dict:
    """Tune ``method`` on ``protocol`` with the grid of ``presets/grids.yaml``, selected on the
    validation split (:func:`tune`); with ``save``, write the preset ``<method>-<protocol>``
    with its provenance (protocol and fingerprint, proxy, grid, every point's figures,
    command, date, git commit). Returns :func:`tune`'s result with ``preset`` (the path) when saved
    (``executor`` without waiting: ``{"submitted": ...}``, as :func:`tune`; ``jobs``, ``resume``: as there).
    """
    p = get_protocol(protocol)
    grid = grid_for(protocol, method, load_grids() if grids is None else grids)
    base = protocol_tune_config(protocol, method, machine)
    seeds = list(seeds) if seeds is not None else list(range(base.seed, base.seed + p.tune_seeds))
    result = tune(base, grid, seeds, out_dir, quiet=quiet, overwrite=overwrite, budget=p.budget, executor=executor,
                  jobs=jobs, resume=resume)
    if "submitted" in result:
        return result
    # the command line when started as `anpyc tune`, else the equivalent one (tune-all, Python)
    command = relative_command(f"tune --protocol {protocol} --method {method}" + (" --save-preset" if save else ""), out_dir)
    fp = protocol_fingerprint(protocol)
    result["protocol"] = {"name": protocol, "budget": p.budget, "description": p.description, "fingerprint": fp}
    result["command"], result["git_commit"] = command, git_commit()
    if save:
        from anpyc.experiments.protocols import digest

        tuned = {
            "protocol": {"name": protocol, "budget": p.budget, "fingerprint": fp, "digest": digest(fp)},
            "proxy": p.tune,
            "grid": grid,
            "seeds": list(seeds),
            "selected_by": result["selected_by"],
            "points": [{k: r[k] for k in ("point", "params", "val_avg_acc", "val_std", "test_avg_acc", "failed")}
                       for r in result["points"]],
            "command": command,
            "date": result["date"],
            "git_commit": git_commit(),
            "config": typed(protocol_config(protocol).with_params(method)).to_dict(),
        }
        # the file's name in the presets folder: tune.json is committed beside results, with no machine path
        result["preset"] = save_preset(method, protocol, result["best"]["params"], tuned, preset_dir).name
    if out_dir is not None:
        write_json(Path(out_dir) / rundir.TUNE_JSON, result)
    return result
