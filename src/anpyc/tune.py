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
import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.data.streams import make_stream
from anpyc.errors import ConfigError, TrainingError
from anpyc.io import write_json, write_yaml
from anpyc.methods import method_config
from anpyc.runner import prepare_out_dir, run

log = logging.getLogger(__name__)


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order given (first key varies slowest).

    Example:
        >>> expand_grid({"lam": [1, 10], "xi": [0.1]})
        [{'lam': 1, 'xi': 0.1}, {'lam': 10, 'xi': 0.1}]
    """
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


@rundir.releases_locks  # OUT and its runs stay locked until the search ends
def tune(
    base: RunConfig,
    grid: dict[str, list[Any]],
    seeds: list[int],
    out_dir: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run ``base.method`` at every grid point (over ``base.method_params``) and pick by
    validation accuracy. Writes ``tune.json`` and ``tune.md`` under ``out_dir``.

    A point whose training diverges (non-finite loss) is recorded as failed, not chosen.
    """
    points = expand_grid(grid)
    if not points:
        raise ConfigError("tune needs at least one --param KEY=V1,V2,...")
    for p in points:  # fail on a bad name or value before any training
        method_config(base.method, {**base.method_params, **p})
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        write_yaml(out / "tune.yaml", {"tune": base.method, "grid": grid, "seeds": seeds, "base": base.to_dict()})
    labels = "local" if base.model.head == "multi" else "global"
    streams = {s: make_stream(base.stream, s, labels=labels) for s in seeds}
    rows = []
    for k, p in enumerate(points):
        params = {**base.method_params, **p}
        val, test, failed = [], [], None
        for s in seeds:
            cfg = base.replace(method_params=params, seed=s)
            run_dir = out / f"point_{k}" / f"seed_{s}" if out is not None else None
            try:
                m = run(cfg, run_dir, quiet=quiet, overwrite=overwrite, stream=streams[s]).metrics
            except TrainingError as exc:
                failed = str(exc)
                break
            val.append(m["val_avg_acc"])
            test.append(m["avg_acc"])
        row = {"point": k, "params": params, "failed": failed,
               "val_avg_acc": _mean(val) if not failed else None, "val_std": _std(val) if not failed else None,
               "test_avg_acc": _mean(test) if not failed else None}
        log.info("tune %s %s: val %s", base.method, p, row["val_avg_acc"])
        rows.append(row)
    ok = [r for r in rows if r["val_avg_acc"] is not None]
    if not ok:
        raise TrainingError("every grid point diverged; lower the learning rate or the grid's strengths")
    best = max(ok, key=lambda r: (r["val_avg_acc"], -r["point"]))
    result = {
        "method": base.method,
        "benchmark": base.stream.benchmark,
        "grid": grid,
        "seeds": list(seeds),
        "selected_by": "val_avg_acc (mean over seeds)",
        "points": rows,
        "best": best,
        "config": base.to_dict(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if out is not None:
        write_json(out / "tune.json", result)
        (out / "tune.md").write_text(tune_markdown(result))
    return result


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
