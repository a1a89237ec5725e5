"""Hand-made run and comparison directories for the report tests, shaped as ``anpyc.runner``/``anpyc.experiments.compare``
write them, with the method extras ANPyC, PackNet, EWC and MAS record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

T = 4


def acc_matrix(final: float, forget: float, seed: int) -> list[list[float | None]]:
    """A lower-triangular accuracy matrix (None above the diagonal: not evaluated)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(T):
        row: list[float | None] = []
        for j in range(T):
            row.append(None if j > i else float(np.clip(final - forget * (i - j) + rng.normal(0, 0.01), 0, 1)))
        rows.append(row)
    return rows


def importance_stats(scale: float) -> list[dict]:
    """One histogram of log10 importance per task; heavier tail for larger ``scale``."""
    edges = np.linspace(-8, 0, 17)
    out = []
    for t in range(T):
        centres = (edges[:-1] + edges[1:]) / 2
        counts = np.round(1000 * np.exp(-((centres + 5 - 0.3 * t) ** 2) / scale)).astype(int)
        out.append({"task": t, "hist_edges": edges.tolist(), "hist_counts": counts.tolist(),
                    "kurtosis": 3.0 + scale * (t + 1), "top90_share": 0.4 - 0.05 * t})
    return out


def metrics(method: str, seed: int, final: float, forget: float, extras: dict | None = None) -> dict:
    R = acc_matrix(final, forget, seed)
    A = np.array([[np.nan if v is None else v for v in r] for r in R])
    curve = [float(np.mean(A[i, : i + 1])) for i in range(T)]
    m = {
        "avg_acc": curve[-1], "bwt": float(np.mean([A[-1, j] - A[j, j] for j in range(T - 1)])),
        "forgetting": forget, "fwt": 0.01, "avg_acc_curve": curve, "method": method, "benchmark": "blobs",
        "n_tasks": T, "seed": seed, "acc_matrix": R, "val_acc_matrix": R, "val_avg_acc": curve[-1] - 0.01,
        "time_s": 2.0 + seed, "task_time_s": [0.5] * T, "eval_time_s": 0.4, "task_eval_time_s": [0.1] * T,
        "train_time_s": 1.6 + seed, "peak_rss_mb": 300.0 + 10 * seed, "method_state_mb": 0.25,
    }
    m.update(extras or {})
    return m


def write_run(path: Path, m: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps(m))
    cfg = {"method": m["method"], "seed": m["seed"], "stream": {"benchmark": "blobs", "tasks": T},
           "model": {"name": "mlp", "hidden": [16], "head": "multi"}, "train": {"epochs": 1, "lr": 0.1},
           "meta": {"anpyc": "0.1.0", "torch": "2.13.0", "git_commit": "0123456789abcdef-dirty"}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


FREE = {"body.layers.0.weight": [0.7, 0.5, 0.35, 0.2], "body.layers.1.weight": [0.8, 0.6, 0.45, 0.3]}
METHODS = {
    "anpyc": (0.9, 0.01, {"free_fraction": FREE, "free_fraction_total": 0.25, "importance_stats": importance_stats(2.0),
                          "prune_guard": [{"task": 0, "val_before": 0.95, "planned_keep": 0.15, "val_pruned": 0.9,
                                           "val_retrained": 0.94, "keep": 0.3}],
                          "weight_distribution": {"zero_share": 0.3, "near_zero_share": 0.35, "bimodality": 0.7,
                                                  "kurtosis": 6.0, "hist_edges": [-3.0, -2.0, -1.0],
                                                  "hist_counts": [20, 80]}}),
    "packnet": (0.85, 0.0, {"free_fraction": FREE, "free_fraction_total": 0.4}),
    "ewc": (0.8, 0.05, {"importance_stats": importance_stats(1.0), "omega_kurtosis": 7.0,
                        "weight_distribution": {"zero_share": 0.0, "near_zero_share": 0.04, "bimodality": 0.4,
                                                "kurtosis": 3.5, "hist_edges": [-3.0, -2.0, -1.0],
                                                "hist_counts": [30, 70]}}),
    "finetune": (0.7, 0.15, {}),
}


def make_run_dir(path: Path) -> Path:
    """One ANPyC run with every extra."""
    final, forget, extras = METHODS["anpyc"]
    return write_run(path, metrics("anpyc", 0, final, forget, extras))


def make_compare_dir(root: Path, methods: tuple[str, ...] = tuple(METHODS)) -> Path:
    """``methods`` x two seeds, plus compare.yaml and summary.json."""
    for name in methods:
        final, forget, extras = METHODS[name]
        for seed in (0, 1):
            write_run(root / name / f"seed_{seed}", metrics(name, seed, final, forget, extras))
    (root / "compare.yaml").write_text(yaml.safe_dump({"methods": list(methods), "seeds": [0, 1]}))
    (root / "summary.json").write_text(json.dumps({"benchmark": "blobs", "n_tasks": T, "seeds": [0, 1],
                                                   "methods": {m: {} for m in methods}}))
    return root


def make_record_dir(root: Path, methods: tuple[str, ...] = tuple(METHODS)) -> Path:
    """A comparison laid out as a committed record of docs/benchmarks: ``bench.json`` (the
    summary, benchmark "recorded") and ``compare.yaml`` beside ``runs/<method>/seed_<s>``."""
    made = make_compare_dir(root / "runs", methods)
    (made / "compare.yaml").rename(root / "compare.yaml")
    summary = json.loads((made / "summary.json").read_text())
    (made / "summary.json").unlink()
    (root / "bench.json").write_text(json.dumps({**summary, "benchmark": "recorded"}))
    return root
