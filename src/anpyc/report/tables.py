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
    kurt = {n: m["importance_kurtosis"] for n, m in summary["methods"].items() if m.get("importance_kurtosis")}
    if kurt:  # how polarised each importance-based method's estimate is (Pearson, Gaussian = 3)
        lines += ["", "| method | importance kurtosis per task |", "|---|---|"]
        for name, ks in kurt.items():
            lines.append(f"| {name} | {', '.join('-' if k is None else f'{k:.0f}' for k in ks)} |")
    return "\n".join(lines) + "\n"
