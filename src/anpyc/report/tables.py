"""Tables for run and comparison summaries: mean ± std over seeds, as header + rows.

Tables are plain ``(header, rows)`` pairs of strings so the report can render them as markdown
or HTML; :func:`markdown_table` does the former.

Example:
    >>> fmt_stat([0.91, 0.93], scale=100)
    '92.0 ± 1.4'
    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    |---|---|
    | 1 | 2 |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from anpyc.report.load import Results, RunData
from anpyc.report.stats import format_p, standing
from anpyc.summary import (
    finite,
    last_free_total,
    last_importance,
    learning_accuracy,
    time_ratio,
)


def _pct(stat: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = stat["mean"] * scale, (stat.get("std") or 0.0) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def summary_markdown(summary: dict) -> str:
    """A comparison's ``summary.json`` as a markdown table (accuracy figures in percent)."""
    budget = summary.get("budget") or {}
    lines = [
        # n_tasks is read from a finished run's matrix: 0 when none finished
        f"# {summary['benchmark']}, "
        + (f"{summary['n_tasks']} tasks" if summary["n_tasks"] else "no run finished")
        + f", seeds {summary['seeds']}"
        + (f", scenario {summary['scenario']}" if summary.get("scenario") not in (None, "task") else ""),
        "",
    ]
    if budget:
        lines += [f"Budget: {budget['per_task']:g} {budget['unit']} per task.", ""]
    inference = any("task_inference_acc" in m for m in summary["methods"].values())
    decisions = any("decision_passes_per_task" in m for m in summary["methods"].values())
    groups = grouped(summary)
    lines += [
        "| " + ("group | " if len(groups) > 1 else "") + "method | ACC % | BWT % | forgetting % | learning acc % | val ACC % | "
        "passes / task |" + (" decision passes / task |" if decisions else "") + " time s | time / fine-tune |"
        + (" task inference % |" if inference else ""),
        "|" + "---|" * (9 + (len(groups) > 1) + inference + decisions),
    ]
    for group, names in groups.items():
        for name in names:
            m = summary["methods"][name]
            label = f"{name} (upper bound)" if m.get("upper_bound") else name
            lines.append(
                "| " + (f"{group} | " if len(groups) > 1 else "")
                + f"{label} | {_pct(m['avg_acc'])} | {_pct(m['bwt'])} | {_pct(m['forgetting'])} | "
                f"{_pct(m.get('learning_acc'))} | {_pct(m['val_avg_acc'])} | {_pct(m.get('passes_per_task'), 1.0, 2)} | "
                + (f"{_pct(m.get('decision_passes_per_task'), 1.0, 2)} | " if decisions else "")
                + f"{_pct(m['time_s'], 1.0)} | {_pct(m.get('time_ratio_finetune'), 1.0, 2)} |"
                + (f" {_pct(m.get('task_inference_acc'))} |" if inference else "")
            )
    lines += [""]
    for group, names in groups.items():
        within = _standing({**summary, "methods": {n: summary["methods"][n] for n in names}})
        lines += [f"{group}: {within}" if len(groups) > 1 and within else within]
    if summary["n_tasks"] >= 20:
        lines += ["", _long_table(summary)]
    return "\n".join(lines) + "\n"


#: without a task id, what answers a test input, in the order the tables show the groups
GROUPS = ("one head, no task inference", "one head, replay drawn from the inputs' model", "task inferred, a head per task",
          "the inputs' model alone")


def comparison_group(entry: dict, scenario: str | None) -> str:
    """The group of a comparison's row: where the task id is hidden, rows compare like with
    like only within a group (:data:`GROUPS`); with task ids every row is in one.

    Example:
        >>> comparison_group({"task_inference": "input_density"}, "class")
        'task inferred, a head per task'
    """
    if scenario in (None, "task"):
        return ""
    if entry.get("trains_network") is False:
        return GROUPS[3]
    if entry.get("density_replay"):
        return GROUPS[1]
    return GROUPS[2] if entry.get("task_inference", "none") != "none" else GROUPS[0]


def grouped(summary: dict) -> dict[str, list[str]]:
    """The summary's rows by :func:`comparison_group`, groups in table order, rows in their own."""
    groups: dict[str, list[str]] = {}
    for name, m in summary["methods"].items():
        groups.setdefault(comparison_group(m, summary.get("scenario")), []).append(name)
    order = {g: i for i, g in enumerate(("", *GROUPS))}
    return dict(sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order))))


def _standing(summary: dict) -> str:
    """Which methods the best ACC (upper bounds aside) is ahead of by both rules: a difference
    beyond both standard deviations over seeds and Welch's p < 0.05
    (:func:`anpyc.report.stats.standing`); the others are not claimed to be behind it."""
    fair = {n: m for n, m in summary["methods"].items() if not m.get("upper_bound") and m["avg_acc"].get("mean") is not None}
    planned = len(summary.get("seeds", []))
    seeds = {n: m.get("n_seeds", planned) for n, m in fair.items()}  # a row whose seed stopped has fewer
    found = standing([(n, m["avg_acc"], seeds[n]) for n, m in fair.items()])
    if found is None:
        return ""
    if max(seeds.values()) < 2:  # no spread to judge a difference by (a single one-seed row is never beaten)
        return (f"Highest ACC: {found.best}, from one seed: no method is claimed ahead of another "
                "(a claim needs a difference beyond both standard deviations over seeds and Welch's p < 0.05).")
    ahead = ", ".join(f"{n} ({format_p(w.p)})" for n, w in found.ahead) or "none"
    # no test where either side has one seed (a row whose other seeds stopped)
    level = ", ".join(f"{n} ({format_p(w.p) if w else 'one seed, no test'})" for n, w in found.level) or "none"
    return (f"Best ACC: {found.best}. Ahead, by both standard deviations and Welch's p < 0.05, of: {ahead}. "
            f"Not separable from it (not claimed to be behind): {level}.")


def fmt_stat(values: Iterable[Any], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` (sample std over seeds) of the finite values, ``-`` if there are none."""
    vals = finite(values)
    if not vals:
        return "-"
    mean = float(np.mean(vals)) * scale
    if round(mean, digits) == 0:
        mean = 0.0  # print "0.0", not "-0.0"
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    std = float(np.std(vals, ddof=1)) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (``|`` inside cells escaped)."""

    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _values(runs: Sequence[RunData], key: str) -> list[Any]:
    return [r.metrics.get(key) for r in runs]


def _metrics(runs: Sequence[RunData]) -> list[dict]:
    return [{**r.metrics, "seed": r.seed} for r in runs]


def summary_table(results: Results) -> tuple[list[str], list[list[str]]]:
    """One row per method: accuracy metrics in percent, cost in seconds and MiB."""
    header = [
        "method", "seeds", "ACC %", "BWT %", "forgetting %", "FWT %", "learning acc %", "val ACC %", "passes / task",
        "time s", "time / fine-tune", "peak RSS MiB", "method state MiB",
    ]
    reference = results.runs.get("finetune") or []
    rows = []
    for method, runs in results.runs.items():
        rows.append([
            method,
            str(len(runs)),
            fmt_stat(_values(runs, "avg_acc"), 100),
            fmt_stat(_values(runs, "bwt"), 100),
            fmt_stat(_values(runs, "forgetting"), 100),
            fmt_stat(_values(runs, "fwt"), 100),
            fmt_stat([sum(la) / len(la) for r in runs if (la := learning_accuracy(r.metrics))], 100),
            fmt_stat(_values(runs, "val_avg_acc"), 100),
            fmt_stat([sum(r.metrics["passes"]) / len(r.metrics["passes"]) for r in runs if r.metrics.get("passes")], 1, 2),
            fmt_stat(_values(runs, "time_s"), 1, 2),
            fmt_stat(time_ratio(_metrics(runs), _metrics(reference)), 1, 2),
            fmt_stat(_values(runs, "peak_rss_mb"), 1, 0),
            fmt_stat(_values(runs, "method_state_mb"), 1, 2),
        ])
    return header, rows


def extras_table(results: Results) -> tuple[list[str], list[list[str]]] | None:
    """Free capacity and importance statistics after the last task, for methods that have them."""
    header = ["method", "free capacity after last task %", "importance kurtosis", "top-90% share %"]
    rows = []
    for method, runs in results.runs.items():
        free = [last_free_total(r.metrics) for r in runs]
        kurt = [last_importance(r.metrics, "kurtosis") for r in runs]
        share = [last_importance(r.metrics, "top90_share") for r in runs]
        if finite(free) or finite(kurt) or finite(share):
            rows.append([method, fmt_stat(free, 100), fmt_stat(kurt, 1, 2), fmt_stat(share, 100)])
    return (header, rows) if rows else None


def polarisation_table(results: Results) -> tuple[list[str], list[list[str]]] | None:
    """"Sparse and polarised synapses" (ANPyC's claim) after the last task, every method alike:
    the consolidated importance's kurtosis (where a method has one) and the shared weights'
    distribution: share exactly zero, share near zero (``|w| < 0.05 rms``), bimodality of
    ``|w|`` (Sarle's coefficient; above 0.56 suggests two modes) and kurtosis."""
    header = ["method", "importance kurtosis", "weights zero %", "weights near zero %", "bimodality of |w|",
              "weight kurtosis"]
    rows = []
    for method, runs in results.runs.items():
        dist = [r.metrics.get("weight_distribution") or {} for r in runs]
        if not any(dist):
            continue
        rows.append([method, fmt_stat([r.metrics.get("omega_kurtosis") for r in runs], 1, 1),
                     fmt_stat([d.get("zero_share") for d in dist], 100), fmt_stat([d.get("near_zero_share") for d in dist], 100),
                     fmt_stat([d.get("bimodality") for d in dist], 1, 2), fmt_stat([d.get("kurtosis") for d in dist], 1, 1)])
    return (header, rows) if rows else None


def mean_matrix(runs: Sequence[RunData], key: str = "acc_matrix") -> np.ndarray | None:
    """Element-wise mean over seeds of a task x task matrix; NaN where never evaluated."""
    mats = []
    for r in runs:
        m = r.metrics.get(key)
        if not isinstance(m, list) or not m:
            continue
        try:
            a = np.array([[np.nan if v is None else float(v) for v in row] for row in m], dtype=float)
        except (TypeError, ValueError):
            continue
        if a.ndim == 2:
            mats.append(a)
    if not mats:
        return None
    n = max(a.shape[0] for a in mats)
    padded = np.full((len(mats), n, n), np.nan)
    for i, a in enumerate(mats):
        padded[i, : a.shape[0], : a.shape[1]] = a
    with np.errstate(all="ignore"):
        count = np.isfinite(padded).sum(0)
        total = np.nansum(padded, 0)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def matrix_table(matrix: np.ndarray) -> tuple[list[str], list[list[str]]]:
    """An accuracy matrix in percent: row = after training task i, column = task j."""
    n = matrix.shape[1]
    header = ["after task"] + [f"task {j}" for j in range(n)]
    rows = [
        [str(i)] + ["" if not np.isfinite(v) else f"{100 * v:.1f}" for v in matrix[i]]
        for i in range(matrix.shape[0])
    ]
    return header, rows

def _long_table(summary: dict) -> str:
    """Long sequences: task-1 accuracy every 10 tasks, decay slope, time per task (training
    apart from evaluation) over the first vs the last tasks, peak memory, free capacity."""
    n = summary["n_tasks"]
    marks = [i for i in range(9, n, 10)]
    k = max(1, min(10, n // 2))
    head = " | ".join(f"task 1 after {i + 1}" for i in marks)
    lines = [
        f"| method | {head} | ACC slope %/task | train s/task first {k} | last {k} | eval s/task first {k} | last {k} "
        "| peak MiB | free left % |",
        "|---|" + "---|" * (len(marks) + 7),
    ]
    for name, m in summary["methods"].items():
        t1 = " | ".join(f"{100 * m['task1_acc_curve'][i]:.1f}" for i in marks)
        free = m.get("free_fraction_total")
        times = " | ".join(_pct(m.get(key), 1.0) for key in (
            "train_time_first_s", "train_time_last_s", "eval_time_first_s", "eval_time_last_s"))
        lines.append(
            f"| {name} | {t1} | {_pct(m.get('acc_slope_per_task'), 100.0, 3)} | {times} | "
            f"{_pct(m.get('peak_rss_mb'), 1.0, 0)} | {'-' if free is None else f'{100 * free:.1f}'} |"
        )
    return "\n".join(lines)


def learning_table(results: Results) -> tuple[list[str], list[list[str]]] | None:
    """Accuracy on each task right after learning it (mean over seeds), every method beside
    fine-tune: the plasticity a protecting method gives up, task by task."""
    if len(results.runs) < 2 and "finetune" not in results.runs:
        return None
    per_method = {m: np.array([learning_accuracy(r.metrics) for r in rs], dtype=float).mean(0) for m, rs in results.runs.items()}
    n = max(len(v) for v in per_method.values())
    header = ["method"] + [f"task {j}" for j in range(n)] + ["mean"]
    rows = [[m] + [f"{100 * v:.1f}" for v in acc] + [f"{100 * float(np.mean(acc)):.1f}"] for m, acc in per_method.items()]
    return header, rows


def guard_table(results: Results) -> tuple[list[str], list[list[str]]] | None:
    """The pruning guard (first seed of each method that has one): validation accuracy before
    pruning, pruned, retrained, and the keep share it chose per task."""
    header = ["method", "task", "val before %", "val pruned %", "val retrained %", "keep share planned", "keep share", "note"]
    rows = []
    for method, runs in results.runs.items():
        for rec in runs[0].metrics.get("prune_guard") or []:
            pct = [f"{100 * rec[k]:.1f}" if finite([rec.get(k)]) else "-" for k in ("val_before", "val_pruned", "val_retrained")]
            rows.append([method, str(rec.get("task")), *pct, f"{rec.get('planned_keep', float('nan')):.3g}",
                         f"{rec.get('keep', float('nan')):.3g}", str(rec.get("reason", ""))])
    return (header, rows) if rows else None
