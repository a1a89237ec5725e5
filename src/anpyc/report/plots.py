"""Plots (matplotlib, Agg backend) drawn from results on disk.

Every ``plot_*`` function takes loaded results and a path, writes one PNG and returns its path,
or returns ``None`` without writing when the results hold nothing to draw (e.g. no method
recorded importance statistics). A method has the same colour in every plot
(:func:`method_color`); methods drawn together never look alike (:func:`method_styles`).

Example:
    >>> from anpyc.report.load import load_results
    >>> results = load_results("runs/cmp")  # doctest: +SKIP
    >>> plot_avg_acc(results, "avg_acc.png")  # doctest: +SKIP
    PosixPath('avg_acc.png')
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anpyc.io import atomic_write_bytes
from anpyc.names import DENSITY_REPLAY_SUFFIX, INFERENCE_SUFFIX
from anpyc.report.load import Results, RunData
from anpyc.report.tables import mean_matrix
from anpyc.summary import finite

if TYPE_CHECKING:
    from types import ModuleType

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Fixed colours for the methods anpyc ships; ANPyC stands out in red, the bounds in grey/black.
METHOD_COLORS = {
    "anpyc": "#d62728",
    "anpyc-masks": "#ad494a",
    "packnet": "#9467bd",
    "ewc": "#1f77b4",
    "online-ewc": "#17becf",
    "mas": "#2ca02c",
    "si": "#ff7f0e",
    "lwf": "#8c564b",
    "er": "#e377c2",
    "derpp": "#bcbd22",
    "hat": "#393b79",
    "density": "#637939",
    "slda": "#8c6d31",
    "finetune": "#7f7f7f",
    "joint": "#000000",
}
# Other names get a colour from this list (none of the fixed ones) chosen by a hash of the name, so it
# is stable across plots, runs and machines (Python's hash() is salted per process; crc32 is not).
_EXTRA = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
          "#9edae5", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#843c39", "#a55194", "#c7c7c7"]
# A variant ``<base>+X`` draws its base's colour in its own style; these suffixes keep theirs in every plot.
_VARIANT_SLOTS = {"": 0, INFERENCE_SUFFIX[1:]: 1, DENSITY_REPLAY_SUFFIX[1:]: 2}
# Style k is (_LINESTYLES[k % 4], _MARKERS[k % 5]): 4 and 5 are coprime, so 20 styles are distinct.
_LINESTYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v"]
_HATCHES = ["", "..", "xx", "oo", "\\\\", "++", "**", "OO"]


@dataclass(frozen=True)
class MethodStyle:
    """How one method is drawn in one plot: lines use colour, line style and marker, bars colour and hatch."""

    color: str
    linestyle: str = "-"
    marker: str = "o"
    hatch: str = ""

    def line(self) -> dict[str, str]:
        """Keyword arguments for ``Axes.plot``."""
        return {"color": self.color, "ls": self.linestyle, "marker": self.marker}


def _split(name: str) -> tuple[str, str]:
    """``(base, variant)`` of a method label: ``ewc+inference`` -> ``("ewc", "inference")``."""
    base, _, variant = name.lower().partition("+")
    return base, variant


def method_color(name: str) -> str:
    """The colour of method ``name`` (of its base: ``ewc+inference`` draws as ``ewc``) wherever
    it is alone; :func:`method_styles` keeps methods drawn together apart."""
    base, _ = _split(name)
    if base in METHOD_COLORS:
        return METHOD_COLORS[base]
    return _EXTRA[zlib.crc32(base.encode("utf-8")) % len(_EXTRA)]


def _base_colors(bases: set[str]) -> dict[str, tuple[str, int]]:
    """A distinct colour per base (its own where free, else the next free one, bases taken in
    sorted order so the choice is deterministic) and its round: > 0 once every colour is taken."""
    palette = _EXTRA + [c for b, c in METHOD_COLORS.items() if b not in bases]
    out = {b: (METHOD_COLORS[b], 0) for b in bases if b in METHOD_COLORS}
    taken = {c for c, _ in out.values()}
    spill = 0
    for base in sorted(bases - out.keys()):
        start = palette.index(method_color(base))
        color = next((c for c in palette[start:] + palette[:start] if c not in taken), None)
        if color is None:  # more bases than colours: reuse them, told apart by style
            color, spill = palette[spill % len(palette)], spill + 1
        taken.add(color)
        out[base] = (color, 0 if spill == 0 else 1 + (spill - 1) // len(palette))
    return out


def _variant_slots(names: list[str]) -> dict[str, int]:
    """The style slot of each label within its base: fixed for the known suffixes, the next
    free one past them for any other (in sorted order)."""
    slots: dict[str, int] = {}
    used: dict[str, set[int]] = {}
    for name in names:
        base, variant = _split(name)
        slot = _VARIANT_SLOTS.get(variant)
        if slot is not None and slot not in used.setdefault(base, set()):
            slots[name] = slot
            used[base].add(slot)
    for name in sorted(set(names) - slots.keys(), key=str.lower):
        taken = used.setdefault(_split(name)[0], set())
        slots[name] = next(k for k in itertools.count(len(_VARIANT_SLOTS)) if k not in taken)
        taken.add(slots[name])
    return slots


def method_styles(names: Iterable[str]) -> dict[str, MethodStyle]:
    """The style of each method drawn together in one plot, no two alike: a base method keeps
    its colour (:func:`method_color`, where no other base in the plot holds it), a variant
    ``<base>+X`` draws that colour with its own line style, marker and bar hatch."""
    names = list(dict.fromkeys(names))
    colors = _base_colors({_split(n)[0] for n in names})
    slots = _variant_slots(names)
    width = max(slots.values(), default=0) + 1
    out = {}
    for name in names:
        color, rnd = colors[_split(name)[0]]
        k = rnd * width + slots[name]
        out[name] = MethodStyle(color, _LINESTYLES[k % len(_LINESTYLES)], _MARKERS[k % len(_MARKERS)],
                                _HATCHES[k % len(_HATCHES)])
    return out


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | Path) -> Path:
    plt = _pyplot()
    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # a legend beside the axes included
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


#: lines a legend inside the axes holds; with more it goes beside them, where it covers nothing
LEGEND_INSIDE = 10


def _legend(ax: Axes, count: int, fontsize: int = 8) -> None:
    """The legend of ``count`` lines: inside the axes, or beside them in columns when long."""
    if count <= LEGEND_INSIDE:
        ax.legend(fontsize=fontsize)
    else:  # the figure widens by the legend's columns, so the axes keep their size
        ncol = math.ceil(count / 24)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, ncol=ncol)
        width, height = ax.figure.get_size_inches()
        ax.figure.set_size_inches(width + 2.4 * ncol, height)


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def _nanmean(arr: np.ndarray) -> np.ndarray:
    """Column means ignoring NaN; an all-NaN column gives NaN without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(arr, 0)


def _nanstd(arr: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanstd(arr, 0)


def _curve(r: RunData) -> list[float]:
    c = r.metrics.get("avg_acc_curve")
    if isinstance(c, list) and c:
        return [np.nan if v is None else float(v) for v in c]
    m = mean_matrix([r])
    if m is None:
        return []
    return [float(_nanmean(m[i, : i + 1, None])[0]) for i in range(m.shape[0]) if np.isfinite(m[i, i])]


def plot_avg_acc(results: Results, path: str | Path) -> Path | None:
    """Average accuracy on the tasks learned so far vs number of tasks, all methods on one plot
    (mean over seeds, band = ±1 std)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = False
    styles = method_styles(results.runs)
    for method, runs in results.runs.items():
        curves = [c for c in (_curve(r) for r in runs) if c]
        if not curves:
            continue
        n = max(len(c) for c in curves)
        arr = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            arr[i, : len(c)] = c
        mean, std = 100 * _nanmean(arr), 100 * _nanstd(arr)
        x = np.arange(1, n + 1)
        style = styles[method]
        ax.plot(x, mean, ms=3, **style.line(), label=f"{method} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(x, mean - std, mean + std, color=style.color, alpha=0.15, lw=0)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("number of tasks learned")
    ax.set_ylabel("average accuracy on tasks so far (%)")
    ax.set_title(f"{results.benchmark}: average accuracy vs tasks learned")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _legend(ax, len(ax.get_lines()))
    return _save(fig, path)


def plot_acc_heatmap(results: Results, method: str, path: str | Path) -> Path | None:
    """Accuracy matrix of one method (mean over seeds): row i = after training task i,
    column j = accuracy on task j; blank cells were not evaluated."""
    matrix = mean_matrix(results.runs.get(method, []))
    if matrix is None or not np.isfinite(matrix).any():
        return None
    plt = _pyplot()
    n = matrix.shape[0]
    size = min(3.0 + 0.45 * n, 12.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#f0f0f0")
    im = ax.imshow(np.ma.masked_invalid(100 * matrix), cmap=cmap, vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="test accuracy (%)")
    if n <= 12:  # numbers stay legible up to about a dozen tasks
        for i in range(n):
            for j in range(n):
                if np.isfinite(matrix[i, j]):
                    v = 100 * matrix[i, j]
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if v < 60 else "black")
    ticks = range(0, n, max(1, n // 10))
    ax.set_xticks(list(ticks))
    ax.set_yticks(list(ticks))
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after training task i")
    seeds = len(results.runs[method])
    ax.set_title(f"{method}: accuracy matrix ({results.benchmark}, {seeds} seed{'s' * (seeds > 1)})",
                 color=method_color(method), fontsize=10)
    return _save(fig, path)


def plot_task_accuracy(results: Results, path: str | Path) -> Path | None:
    """Accuracy of each task across the rest of the sequence, one panel per method (lines =
    tasks, coloured from early to late)."""
    mats = {m: mean_matrix(rs) for m, rs in results.runs.items()}
    mats = {m: a for m, a in mats.items() if a is not None and np.isfinite(a).any()}
    if not mats:
        return None
    plt = _pyplot()
    rows, cols = _grid(len(mats))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    styles = method_styles(mats)
    for ax, (method, a) in zip(axes.flat, mats.items()):
        n = a.shape[0]
        colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(n, 1)))
        for j in range(n):
            x = np.arange(j, n)
            y = 100 * a[j:, j]
            ok = np.isfinite(y)
            if ok.any():
                ax.plot(x[ok] + 1, y[ok], marker="o", ms=2.5, lw=1.2, color=colors[j], label=f"task {j}")
        ax.set_title(method, color=styles[method].color)
        ax.set_xlabel("number of tasks learned")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if n <= 10:
            ax.legend(fontsize=7, ncol=2)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy on the task (%)")
    for ax in list(axes.flat)[len(mats):]:
        ax.axis("off")
    fig.suptitle(f"{results.benchmark}: accuracy of each task as later tasks are learned", fontsize=11)
    return _save(fig, path)


def _importance_entries(runs: Sequence[RunData]) -> list[dict]:
    """The first seed's usable ``importance_stats`` entries (edges one longer than counts)."""
    for r in runs:
        stats = r.metrics.get("importance_stats")
        if not isinstance(stats, list):
            continue
        good = []
        for e in stats:
            if not isinstance(e, dict):
                continue
            edges, counts = e.get("hist_edges"), e.get("hist_counts")
            if isinstance(edges, list) and isinstance(counts, list) and len(edges) == len(counts) + 1 and counts:
                if len(finite(edges)) == len(edges) and len(finite(counts)) == len(counts):
                    good.append(e)
        if good:
            return good
    return []


def plot_importance(results: Results, path: str | Path) -> Path | None:
    """Distribution of parameter importance (log10 bins) after each task, one panel per method
    that recorded it (its first seed); the last task is drawn bold and labelled with its kurtosis and top-90%
    share. A heavy tail (high kurtosis) means few parameters carry most of the importance."""
    data = {m: _importance_entries(rs) for m, rs in results.runs.items()}
    data = {m: e for m, e in data.items() if e}
    if not data:
        return None
    plt = _pyplot()
    rows, cols = _grid(len(data) + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.flat)
    styles = method_styles(data)
    for ax, (method, entries) in zip(flat, data.items()):
        color = styles[method].color
        for k, e in enumerate(entries):
            edges = 10.0 ** np.asarray(e["hist_edges"], dtype=float)
            counts = np.asarray(e["hist_counts"], dtype=float)
            share = counts / counts.sum() if counts.sum() > 0 else counts
            last = k == len(entries) - 1
            label = None
            if last:
                kurt = e.get("kurtosis")
                top = e.get("top90_share")
                parts = [f"after task {e.get('task', k)}"]
                if finite([kurt]):
                    parts.append(f"kurtosis {kurt:.1f}")
                if finite([top]):
                    parts.append(f"90% in {100 * top:.1f}% of params")
                label = ", ".join(parts)
            ax.stairs(share, edges, color=color, lw=2.0 if last else 0.8,
                      alpha=1.0 if last else 0.25 + 0.5 * k / max(len(entries), 1), label=label)
        ax.set_xscale("log")
        ax.set_xlabel("importance (log scale)")
        ax.set_ylabel("fraction of parameters")
        ax.set_title(f"{method}: importance distribution", color=color)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
    # last panel: kurtosis after each task, every method on one axis
    kax = flat[len(data)]
    for method, entries in data.items():
        pts = [(e.get("task", k), e.get("kurtosis")) for k, e in enumerate(entries) if finite([e.get("kurtosis")])]
        if pts:
            x, y = zip(*pts)
            kax.plot(x, y, ms=3, **styles[method].line(), label=method)
    kax.set_xlabel("after task")
    kax.xaxis.get_major_locator().set_params(integer=True)
    kax.set_ylabel("kurtosis of importance")
    kax.set_title("importance kurtosis per task")
    kax.grid(alpha=0.3)
    if kax.lines:
        kax.legend(fontsize=8)
    for ax in flat[len(data) + 1:]:
        ax.axis("off")
    fig.suptitle(f"{results.benchmark}: parameter importance", fontsize=11)
    return _save(fig, path)


def plot_weight_distribution(results: Results, path: str | Path) -> Path | None:
    """Distribution of the shared weights' magnitudes (log10 |w|, non-zero weights; the share
    exactly zero in the legend) after the last task, one line per method (its first seed):
    "sparse and polarised" synapses show as a mass at zero and a separate group of large ones."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    drawn = 0
    styles = method_styles(results.runs)
    for method, runs in results.runs.items():
        d = next((r.metrics.get("weight_distribution") for r in runs if r.metrics.get("weight_distribution")), None)
        edges, counts = (d or {}).get("hist_edges"), (d or {}).get("hist_counts")
        if not edges or not counts or len(edges) != len(counts) + 1 or sum(counts) <= 0:
            continue
        share = np.asarray(counts, dtype=float) / sum(counts) * (1 - (d.get("zero_share") or 0.0))
        label = f"{method} ({100 * (d.get('zero_share') or 0.0):.0f}% zero, bimodality {d.get('bimodality', float('nan')):.2f})"
        ax.stairs(share, 10.0 ** np.asarray(edges, dtype=float), color=styles[method].color,
                  ls=styles[method].linestyle, lw=1.5, label=label)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlabel("|weight| (log scale; zeros in the legend)")
    ax.set_ylabel("fraction of shared weights")
    ax.set_title(f"{results.benchmark}: shared weights after the last task")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _free_fraction(runs: Sequence[RunData]) -> dict[str, np.ndarray]:
    """Per layer, free fraction after each task, mean over the seeds that recorded it."""
    per_layer: dict[str, list[list[float]]] = {}
    for r in runs:
        ff = r.metrics.get("free_fraction")
        if not isinstance(ff, dict):
            continue
        for layer, values in ff.items():
            if isinstance(values, list) and values:
                per_layer.setdefault(str(layer), []).append([np.nan if v is None else float(v) for v in values])
    out = {}
    for layer, curves in per_layer.items():
        n = max(len(c) for c in curves)
        arr = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            arr[i, : len(c)] = c
        mean = _nanmean(arr)
        if np.isfinite(mean).any():
            out[layer] = mean
    return out


def plot_free_capacity(results: Results, path: str | Path) -> Path | None:
    """Fraction of each layer's weights still free after each task (ANPyC, PackNet: capacity
    left for later tasks), one panel per method that records it."""
    data = {m: _free_fraction(rs) for m, rs in results.runs.items()}
    data = {m: d for m, d in data.items() if d}
    if not data:
        return None
    plt = _pyplot()
    rows, cols = _grid(len(data))
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.6 * rows), squeeze=False, sharey=True)
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P"]
    method_style = method_styles(data)
    for ax, (method, layers) in zip(axes.flat, data.items()):
        color = method_style[method].color
        for k, (layer, y) in enumerate(layers.items()):
            ax.plot(np.arange(len(y)), 100 * y, color=color, ls=styles[k % len(styles)],
                    marker=markers[k % len(markers)], ms=3, label=layer)
        ax.set_title(f"{method}: free capacity per layer", color=color)
        ax.set_xlabel("after task")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("weights still free (%)")
    for ax in list(axes.flat)[len(data):]:
        ax.axis("off")
    return _save(fig, path)


def plot_cost(results: Results, path: str | Path) -> Path | None:
    """Wall time (training and evaluation stacked) and memory (peak RSS, method state) per
    method; bars are means over seeds, whiskers ±1 std."""
    methods = list(results.runs)
    if not any(finite(r.metrics.get("time_s") for r in rs) for rs in results.runs.values()):
        return None
    plt = _pyplot()

    def ms(method: str, key: str) -> tuple[float, float]:
        v = finite(r.metrics.get(key) for r in results.runs[method])
        if not v:
            return 0.0, 0.0
        return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0

    x = np.arange(len(methods))
    styles = method_styles(methods)
    colors = [styles[m].color for m in methods]
    hatches = [styles[m].hatch for m in methods]  # variants share their base's colour
    fig, (ax_t, ax_m, ax_s) = plt.subplots(1, 3, figsize=(max(10.0, 3 * (1.5 + 0.5 * len(methods))), 4.0))
    total = np.array([ms(m, "time_s") for m in methods])
    evals = np.array([ms(m, "eval_time_s")[0] for m in methods])
    train = np.clip(total[:, 0] - evals, 0, None)
    ax_t.bar(x, train, color=colors, hatch=hatches)
    ax_t.bar(x, evals, bottom=train, color=colors, alpha=0.45, hatch=["//" + h for h in hatches])
    ax_t.errorbar(x, total[:, 0], yerr=total[:, 1], fmt="none", ecolor="#555555", capsize=4)
    from matplotlib.patches import Patch

    ax_t.legend(handles=[Patch(facecolor="#bbbbbb", label="training"),
                         Patch(facecolor="#bbbbbb", alpha=0.45, hatch="//", label="evaluation")], fontsize=7)
    ax_t.set_ylabel("wall time (s)")
    ax_t.set_title("wall time per run")
    rss = np.array([ms(m, "peak_rss_mb") for m in methods])
    ax_m.bar(x, rss[:, 0], yerr=rss[:, 1], color=colors, hatch=hatches, capsize=4, ecolor="#555555")
    ax_m.set_ylabel("peak resident memory (MiB)")
    ax_m.set_title("process memory")
    state = np.array([ms(m, "method_state_mb") for m in methods])
    unit = "MiB"
    if state[:, 0].max() < 1.0:  # small states read better in KiB than as 1e-3 MiB
        state, unit = state * 1024, "KiB"
    ax_s.bar(x, state[:, 0], yerr=state[:, 1], color=colors, hatch=hatches, capsize=4, ecolor="#555555")
    ax_s.set_ylabel(f"method state ({unit})")
    ax_s.set_title("method's own state (buffers)")
    for ax in (ax_t, ax_m, ax_s):
        ax.set_xticks(x)
        ax.set_xticklabels(methods, rotation=30, ha="right")
        ax.set_xlabel("method")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{results.benchmark}: cost per method", fontsize=11)
    return _save(fig, path)


def plot_avg_acc_curves(summary: dict, path: str | Path) -> Path:
    """Average accuracy over the tasks learned so far, one line per method, from a
    comparison's in-memory summary (``compare`` draws this before any report)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = method_styles(summary["methods"])
    for name, m in summary["methods"].items():
        curve = [100 * v for v in m["avg_acc_curve"]]
        ax.plot(range(1, len(curve) + 1), curve, ms=3, label=name, **styles[name].line())
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average accuracy on tasks so far (%)")
    ax.set_title(f"{summary['benchmark']}: average accuracy")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    _legend(ax, len(summary["methods"]), fontsize=10)
    return _save(fig, path)
