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
from typing import Any

import numpy as np

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.errors import ConfigError, TrainingError
from anpyc.experiments.compare import budgeted, own_stream
from anpyc.experiments.presets import best_point, expand_grid, grid_for, load_grids, save_preset
from anpyc.experiments.protocols import (
    differences,
    fingerprint,
    get_protocol,
    protocol_config,
    protocol_fingerprint,
)
from anpyc.io import relative_command, write_json, write_yaml
from anpyc.methods import create, typed
from anpyc.runner import build_stream, git_commit, prepare_out_dir, run

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
    stream: Any = None,
) -> dict:
    """Run ``base.method`` at every grid point (over ``base.method_params``) and pick by
    validation accuracy. Writes ``tune.json`` and ``tune.md`` under ``out_dir``.

    A point whose training diverges (non-finite loss) is recorded as failed, not chosen.
    ``stream``: your own data, as :func:`anpyc.experiments.compare.compare` takes it (a stream,
    a function ``seed -> stream`` or ``"MODULE:FUNCTION"``).
    """
    base, own = own_stream(base, stream, jobs=1)
    points = expand_grid(grid)
    if not points:
        raise ConfigError("tune needs at least one --param KEY=V1,V2,...")
    # every (point, seed) run, its method built once, under the comparison's budget: a bad name,
    # value or budget fails here, before any training
    configs = [typed(base.with_params(**p)) for p in points]
    runs = [[_budgeted_run(cfg, budget, s) for s in seeds] for cfg in configs]
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        write_yaml(out / rundir.TUNE, {"tune": base.method, "grid": grid, "seeds": seeds, "base": base.to_dict()})
    streams = {s: own(s) if own is not None else build_stream(base.replace(seed=s)) for s in seeds}
    rows = []
    for k, point_cfg in enumerate(configs):
        params = point_cfg.params_dict()
        val, test, failed = [], [], None
        for s, (cfg, method) in zip(seeds, runs[k]):
            run_dir = out / f"point_{k}" / f"seed_{s}" if out is not None else None
            try:
                m = run(cfg, run_dir, quiet=quiet, overwrite=overwrite, stream=streams[s], method=method, budget=None,
                        report=False).metrics
            except TrainingError as exc:
                failed = str(exc)
                break
            val.append(m["val_avg_acc"])
            test.append(m["avg_acc"])
        row = {"point": k, "params": params, "failed": failed,
               "val_avg_acc": _mean(val) if not failed else None, "val_std": _std(val) if not failed else None,
               "test_avg_acc": _mean(test) if not failed else None}
        log.info("tune %s %s: val %s", base.method, points[k], row["val_avg_acc"])
        rows.append(row)
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
        write_json(out / "tune.json", result)
        (out / "tune.md").write_text(tune_markdown(result))
    return result


def _budgeted_run(cfg: RunConfig, budget: str, seed: int) -> tuple[RunConfig, Any]:
    """``(config, method)`` of one run of a grid point: the method built once, asked for its
    epochs under the budget, then trained by the run."""
    method = create(cfg.method, cfg.method_params)
    return budgeted(cfg, budget, method).replace(seed=seed), method


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
) -> dict:
    """Tune ``method`` on ``protocol`` with the grid of ``presets/grids.yaml``, selected on the
    validation split (:func:`tune`); with ``save``, write the preset ``<method>-<protocol>``
    with its provenance (protocol and fingerprint, proxy, grid, every point's figures,
    command, date, git commit). Returns :func:`tune`'s result with ``preset`` (the path) when saved.
    """
    p = get_protocol(protocol)
    grid = grid_for(protocol, method, load_grids() if grids is None else grids)
    base = protocol_tune_config(protocol, method, machine)
    seeds = list(seeds) if seeds is not None else list(range(base.seed, base.seed + p.tune_seeds))
    result = tune(base, grid, seeds, out_dir, quiet=quiet, overwrite=overwrite, budget=p.budget)
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
        result["preset"] = str(save_preset(method, protocol, result["best"]["params"], tuned, preset_dir))
    if out_dir is not None:
        write_json(Path(out_dir) / "tune.json", result)
    return result
