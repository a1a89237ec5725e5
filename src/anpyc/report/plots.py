"""Plots (matplotlib, non-interactive backend)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_avg_acc_curves(summary: dict, path: str | Path) -> Path:
    """Average accuracy over the tasks learned so far, one line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, m in summary["methods"].items():
        curve = [100 * v for v in m["avg_acc_curve"]]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=name)
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average accuracy on tasks so far (%)")
    ax.set_title(f"{summary['benchmark']}: average accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
