"""``compare``: several methods on the same stream, same network, same budget, same seeds.

Each (method, seed) run is a normal run directory under ``OUT/<method>/seed_<s>``; the
comparison writes ``summary.json`` and ``summary.md`` (mean and std over seeds) and a plot of
average accuracy against the number of tasks learned.

Example:
    >>> from anpyc.config import RunConfig
    >>> base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> summary = compare(base, ["finetune", "joint"], seeds=[0], quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.data.streams import make_stream
from anpyc.errors import AnpycError
from anpyc.io import write_json, write_yaml
from anpyc.jobs import Job, run_jobs
from anpyc.methods import get_method_class, method_config
from anpyc.report.tables import summary_markdown
from anpyc.runner import RunResult, prepare_out_dir

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("avg_acc", "bwt", "forgetting", "fwt", "val_avg_acc", "time_s", "train_time_s", "eval_time_s", "peak_rss_mb", "method_state_mb")


@rundir.releases_locks  # OUT and each OUT/<method>/seed_<s> stay locked until the comparison ends
def compare(
    base: RunConfig,
    methods: list[str],
    seeds: list[int],
    out_dir: str | Path | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    tensorboard: bool = False,
    aliases: dict[str, tuple[str, dict[str, Any]]] | None = None,
    jobs: int = 1,
) -> dict:
    """Run every method for every seed and aggregate; returns the summary dict.

    ``aliases`` names variants of a method (``{"anpyc-reference": ("anpyc", {...})}``) that
    can then be listed in ``methods`` beside the method itself. ``tensorboard``: each run logs
    to ``out_dir/tb/<method>/seed_<s>`` so one ``tensorboard --logdir out_dir/tb`` shows them
    all side by side. ``jobs > 1`` runs the (method, seed) jobs in that many processes (see
    :mod:`anpyc.jobs`). A job that fails is listed under ``summary["failed"]`` with its error
    line; the summary is made of the jobs that finished.
    """
    params = params or {}
    aliases = aliases or {}

    def resolve(label: str) -> tuple[str, dict[str, Any]]:
        method, preset = aliases.get(label, (label, {}))
        return method, {**preset, **params.get(label, {})}

    for label in methods:  # fail on a bad name or parameter before any training
        method_config(*resolve(label))
    unknown = set(params) - set(methods)
    if unknown:
        raise AnpycError(f"--param given for method(s) not compared: {', '.join(sorted(unknown))}")
    if tensorboard:
        from anpyc.report.tracking import tensorboard_writer_class

        tensorboard_writer_class()  # a missing TensorBoard fails before any training
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        write_yaml(out / "compare.yaml", {"methods": methods, "seeds": list(seeds), "params": params,
                                          "aliases": {k: [m, p] for k, (m, p) in aliases.items()}, "base": base.to_dict()})
    labels = "local" if base.model.head == "multi" else "global"
    job_list = []
    for seed in seeds:
        for m in methods:
            method, method_params = resolve(m)
            tb = out / "tb" / m / f"seed_{seed}" if tensorboard and out is not None else tensorboard
            job_list.append(Job(m, seed, base.replace(method=method, method_params=method_params, seed=seed),
                                out / m / f"seed_{seed}" if out is not None else None, tb))
    # one process: one stream per seed shared by its jobs (built lazily, seed by seed)
    streams = _LazyStreams(base, labels) if jobs <= 1 else None
    done, failures = run_jobs(job_list, jobs, overwrite=overwrite, streams=streams, quiet=quiet)
    results: dict[str, list[RunResult]] = {m: [done[(m, s)] for s in seeds if (m, s) in done] for m in methods}
    summary = summarize_results({m: r for m, r in results.items() if r}, base, seeds)
    summary["failed"] = [f.to_dict() for f in failures]
    if out is not None:
        write_json(out / "summary.json", summary)
        failed = failures_text(summary)
        (out / "summary.md").write_text(summary_markdown(summary) + (f"\n## Failed jobs\n\n{failed}" if failed else ""))
        try:
            if not summary["methods"]:
                raise ValueError("no job finished")
            from anpyc.report.plots import plot_avg_acc_curves

            plot_avg_acc_curves(summary, out / "avg_acc.png")
        except Exception as exc:  # a plot must never cost the results
            log.warning("could not draw the plot: %s", exc)
    if not done:
        first = failures[0]
        raise AnpycError(f"every job failed ({len(failures)}); first: {first.method} seed {first.seed}: {first.error}")
    return summary


def summarize_results(results: dict[str, list[RunResult]], base: RunConfig, seeds: list[int]) -> dict:
    """Mean and std over seeds of each metric, and time relative to fine-tune (same seed)."""
    ref = {r.config.seed: r for r in results.get("finetune", [])}
    methods = {}
    for m, runs in results.items():
        entry: dict[str, Any] = {
            "method": runs[0].config.method,
            "params": runs[0].config.method_params,
            "n_seeds": len(runs),
            "upper_bound": bool(get_method_class(runs[0].config.method).upper_bound),
        }
        for key in SUMMARY_KEYS:
            vals = [r.metrics.get(key) for r in runs]
            vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
            entry[key] = _stat(vals)
        if ref:  # same seed only (a failed job leaves a seed out)
            ratios = [r.metrics["time_s"] / ref[r.config.seed].metrics["time_s"] for r in runs if r.config.seed in ref]
            entry["time_ratio_finetune"] = _stat(ratios)
        curves = np.array([r.metrics["avg_acc_curve"] for r in runs])
        # decay of average accuracy per task learned (least squares over the whole sequence)
        slopes = [float(np.polyfit(np.arange(len(c)), c, 1)[0]) for c in curves if len(c) > 1]
        entry["acc_slope_per_task"] = _stat(slopes)
        k = max(1, min(10, curves.shape[1] // 2))
        entry["task_time_first_s"] = _stat([float(np.mean(r.metrics["task_time_s"][:k])) for r in runs])
        entry["task_time_last_s"] = _stat([float(np.mean(r.metrics["task_time_s"][-k:])) for r in runs])
        # training (and the method's own work) apart from evaluating every seen task, which must grow
        evals = [np.asarray(r.metrics.get("task_eval_time_s") or [0.0] * len(r.metrics["task_time_s"])) for r in runs]
        trains = [np.asarray(r.metrics["task_time_s"]) - e for r, e in zip(runs, evals, strict=True)]
        entry["train_time_first_s"] = _stat([float(tr[:k].mean()) for tr in trains])
        entry["train_time_last_s"] = _stat([float(tr[-k:].mean()) for tr in trains])
        entry["eval_time_first_s"] = _stat([float(e[:k].mean()) for e in evals])
        entry["eval_time_last_s"] = _stat([float(e[-k:].mean()) for e in evals])
        entry["avg_acc_curve"] = curves.mean(0).tolist()
        entry["task1_acc_curve"] = np.array([r.acc_matrix[:, 0] for r in runs]).mean(0).tolist()
        for extra in ("free_fraction", "free_fraction_total", "importance_kurtosis"):
            if extra in runs[0].metrics:
                entry[extra] = runs[0].metrics[extra]
        if "importance_stats" in runs[0].metrics and "importance_kurtosis" not in entry:
            # per task, mean over seeds: how polarised each method's importance is
            per_run = [[s.get("kurtosis") for s in r.metrics["importance_stats"]] for r in runs]
            entry["importance_kurtosis"] = [
                float(np.mean([k for k in ks if k is not None])) if any(k is not None for k in ks) else None
                for ks in zip(*per_run)
            ]
        entry["runs"] = [str(r.out_dir) if r.out_dir else None for r in runs]
        methods[m] = entry
    return {
        "benchmark": base.stream.benchmark,
        "n_tasks": int(len(next(iter(results.values()))[0].acc_matrix)) if results else 0,  # 0: no job finished
        "seeds": list(seeds),
        "config": base.to_dict(),
        "methods": methods,
    }


def _stat(vals: list[float]) -> dict:
    if not vals:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}


class _LazyStreams:
    """``seed -> stream``, each built on first use and the previous one dropped (memory)."""

    def __init__(self, base: RunConfig, labels: str) -> None:
        self.base, self.labels, self.seed, self.stream = base, labels, None, None

    def get(self, seed: int, default=None):
        if seed != self.seed:
            self.stream = None  # free the previous seed's stream first
            self.stream, self.seed = make_stream(self.base.stream, seed, labels=self.labels), seed
        return self.stream


def failures_text(summary: dict) -> str:
    """The failed jobs of a summary, one line each (empty when none failed)."""
    return "".join(f"FAILED {f['method']} seed {f['seed']}: {f['error']}\n" for f in summary.get("failed", []))
