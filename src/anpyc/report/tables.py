"""Markdown tables for run and comparison summaries."""

from __future__ import annotations


def _pct(stat: dict | None, scale: float = 100.0, digits: int = 1) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = stat["mean"] * scale, (stat.get("std") or 0.0) * scale
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def summary_markdown(summary: dict) -> str:
    """A comparison's summary as a markdown table (accuracy figures in percent)."""
    lines = [
        f"# {summary['benchmark']}, {summary['n_tasks']} tasks, seeds {summary['seeds']}",
        "",
        "| method | ACC % | BWT % | forgetting % | val ACC % | time s | time / fine-tune |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in summary["methods"].items():
        label = f"{name} (upper bound)" if m.get("upper_bound") else name
        lines.append(
            f"| {label} | {_pct(m['avg_acc'])} | {_pct(m['bwt'])} | {_pct(m['forgetting'])} | "
            f"{_pct(m['val_avg_acc'])} | {_pct(m['time_s'], 1.0)} | {_pct(m.get('time_ratio_finetune'), 1.0, 2)} |"
        )
    if summary["n_tasks"] >= 20:
        lines += ["", _long_table(summary)]
    return "\n".join(lines) + "\n"


def _long_table(summary: dict) -> str:
    """Long sequences: task-1 accuracy every 10 tasks, decay slope, time first vs last tasks."""
    n = summary["n_tasks"]
    marks = [i for i in range(9, n, 10)]
    head = " | ".join(f"task 1 after {i + 1}" for i in marks)
    lines = [
        f"| method | {head} | ACC slope %/task | time/task first 10 s | last 10 s | free left % |",
        "|---|" + "---|" * (len(marks) + 4),
    ]
    for name, m in summary["methods"].items():
        t1 = " | ".join(f"{100 * m['task1_acc_curve'][i]:.1f}" for i in marks)
        free = m.get("free_fraction_total")
        lines.append(
            f"| {name} | {t1} | {_pct(m.get('acc_slope_per_task'), 100.0, 3)} | {_pct(m.get('task_time_first_s'), 1.0)} | "
            f"{_pct(m.get('task_time_last_s'), 1.0)} | {'-' if free is None else f'{100 * free:.1f}'} |"
        )
    return "\n".join(lines)
