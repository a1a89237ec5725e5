"""Summary figures of finished runs, as pure functions of their ``metrics.json`` dicts.

The one place that computes what a comparison's table shows (mean and std over seeds, time
relative to fine-tune on the same seed, decay slope, time per task early and late, free
capacity, importance statistics); :mod:`anpyc.experiments.compare` and :mod:`anpyc.report` both use it.
No function modifies its input.

Example:
    >>> stat([0.9, 0.92])["mean"]
    0.91
    >>> time_ratio([{"seed": 0, "time_s": 4.0}], [{"seed": 0, "time_s": 2.0}])
    [2.0]
    >>> learning_accuracy({"acc_matrix": [[0.9, None], [0.8, 0.7]]})
    [0.9, 0.7]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

#: scalar metrics summarised as mean and std over seeds
SUMMARY_KEYS = ("avg_acc", "bwt", "forgetting", "fwt", "val_avg_acc", "time_s", "train_time_s", "eval_time_s",
                "peak_rss_mb", "method_state_mb")


def finite(values: Iterable[Any]) -> list[float]:
    """The values that are real finite numbers (None, NaN, strings, bools dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out.append(float(v))
    return out


def stat(values: Iterable[Any]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values."""
    vals = finite(values)
    if not vals:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0}


def time_ratio(runs: Sequence[dict], reference: Sequence[dict] | None) -> list[float]:
    """Wall time over the reference method's (fine-tune) on the same seed: a method's cost
    independent of the machine. Seeds missing on either side are left out."""
    if not reference:
        return []
    ref = {r.get("seed"): r.get("time_s") for r in reference}
    out = []
    for r in runs:
        a, b = r.get("time_s"), ref.get(r.get("seed"))
        if finite([a]) and finite([b]) and b > 0:
            out.append(a / b)
    return out


def acc_slope(curve: Sequence[float]) -> float | None:
    """Least-squares slope of average accuracy against tasks learned (decay per task)."""
    if len(curve) < 2:
        return None
    return float(np.polyfit(np.arange(len(curve)), np.asarray(curve, dtype=float), 1)[0])


def clearly_ahead(a: dict, b: dict) -> bool:
    """Whether summary statistic ``a`` (``{"mean", "std"}`` over seeds) beats ``b`` by more
    than both standard deviations: the rule for claiming that one method beats another.

    Example:
        >>> clearly_ahead({"mean": 0.92, "std": 0.003}, {"mean": 0.91, "std": 0.004})
        True
        >>> clearly_ahead({"mean": 0.92, "std": 0.02}, {"mean": 0.91, "std": 0.004})
        False
    """
    if a.get("mean") is None or b.get("mean") is None:
        return False
    return a["mean"] - b["mean"] > max(a.get("std") or 0.0, b.get("std") or 0.0)


def learning_accuracy(metrics: dict) -> list[float]:
    """Accuracy on each task right after learning it (the diagonal of the accuracy matrix):
    where a method that protects old tasks pays, if it does, in plasticity."""
    return finite(row[i] for i, row in enumerate(metrics.get("acc_matrix") or []) if i < len(row))


def last_free_total(metrics: dict) -> float | None:
    """Share of the body still free after the last task (mask methods), else ``None``."""
    v = metrics.get("free_fraction_total")
    return float(v) if finite([v]) else None


def last_importance(metrics: dict, key: str) -> float | None:
    """``key`` (e.g. ``kurtosis``) of the importance statistics after the last task."""
    stats = metrics.get("importance_stats")
    if isinstance(stats, list) and stats and isinstance(stats[-1], dict):
        v = stats[-1].get(key)
        return float(v) if finite([v]) else None
    return None


def importance_kurtosis(runs: Sequence[dict]) -> list[float | None] | None:
    """Per task, the mean over seeds of the importance kurtosis (how polarised it is)."""
    per_run = [[s.get("kurtosis") for s in r["importance_stats"]] for r in runs if r.get("importance_stats")]
    if not per_run:
        return None
    return [float(np.mean(finite(ks))) if finite(ks) else None for ks in zip(*per_run)]


def _first_last(per_run: list[np.ndarray], k: int) -> tuple[dict, dict]:
    return stat(float(a[:k].mean()) for a in per_run), stat(float(a[-k:].mean()) for a in per_run)


def method_summary(runs: Sequence[dict], reference: Sequence[dict] | None = None) -> dict[str, Any]:
    """Every summary figure of one method's runs (one ``metrics.json`` dict per seed);
    ``reference``: fine-tune's runs, for the time ratio."""
    out: dict[str, Any] = {key: stat(r.get(key) for r in runs) for key in SUMMARY_KEYS}
    if reference:
        out["time_ratio_finetune"] = stat(time_ratio(runs, reference))
    curves = np.array([r["avg_acc_curve"] for r in runs], dtype=float)
    out["acc_slope_per_task"] = stat(acc_slope(c) for c in curves)
    k = max(1, min(10, curves.shape[1] // 2))
    totals = [np.asarray(r["task_time_s"], dtype=float) for r in runs]
    evals = [np.asarray(r.get("task_eval_time_s") or [0.0] * len(t), dtype=float) for r, t in zip(runs, totals, strict=True)]
    out["task_time_first_s"], out["task_time_last_s"] = _first_last(totals, k)
    out["train_time_first_s"], out["train_time_last_s"] = _first_last([t - e for t, e in zip(totals, evals, strict=True)], k)
    out["eval_time_first_s"], out["eval_time_last_s"] = _first_last(evals, k)
    out["learning_acc"] = stat(float(np.mean(learning_accuracy(r))) for r in runs if learning_accuracy(r))
    out["learning_acc_per_task"] = np.array([learning_accuracy(r) for r in runs], dtype=float).mean(0).tolist()
    if any("task_inference_acc" in r for r in runs):
        out["task_inference_acc"] = stat(r.get("task_inference_acc") for r in runs)
    if any("task_inference_cost" in r for r in runs):  # the memory of the inputs the inference keeps
        out["task_inference_memory_mb"] = stat((r.get("task_inference_cost") or {}).get("memory_mb") for r in runs)
    passes = [r["passes"] for r in runs if r.get("passes")]
    if passes:
        out["passes_per_task"] = stat(float(np.mean(p)) for p in passes)
    importance = [r["importance_passes"] for r in runs if r.get("importance_passes")]
    if importance:
        out["importance_passes_per_task"] = stat(float(np.mean(p)) for p in importance)
    decisions = [r["decision_passes"] for r in runs if r.get("decision_passes")]
    if decisions:
        out["decision_passes_per_task"] = stat(float(np.mean(p)) for p in decisions)
    out["avg_acc_curve"] = curves.mean(0).tolist()
    out["task1_acc_curve"] = np.array([[row[0] for row in r["acc_matrix"]] for r in runs], dtype=float).mean(0).tolist()
    first = runs[0]
    for extra in ("free_fraction", "free_fraction_total"):
        if extra in first:
            out[extra] = first[extra]
    kurt = importance_kurtosis(runs)
    if kurt is not None:
        out["importance_kurtosis"] = kurt
    return out
