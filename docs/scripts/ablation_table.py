"""The ablation's table and verdicts, from the committed bench.json of `anpyc bench ablation`
(and `ablation-domain`).

    python docs/scripts/ablation_table.py docs/benchmarks/ablation/pmnist10 docs/benchmarks/ablation/pmnist10-domain

Per row: ACC (mean ± std over seeds), BWT, learning accuracy, the difference to the row with
every mechanism (``anpyc-all``) and the verdict under the project's rule: a mechanism earns its
place when removing (or replacing) it costs more than both standard deviations; a removal
that gains more than both says the mechanism costs accuracy; anything else is within noise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FULL = "anpyc-all"
#: row -> the mechanism it removes or replaces
MECHANISM = {
    "no-structure": "structure-awareness (structure: spread)",
    "omega-magnitude": "Omega, against \\|theta\\| (importance: omega)",
    "omega-fisher": "Omega, against the Fisher (importance: omega)",
    "no-elementwise": "element-wise updating (update: elementwise)",
    "no-pruning": "neural pruning (prune: true)",
    "no-consolidation": "consolidation (lam > 0)",
}


def verdict(row: dict, full: dict) -> tuple[float, float, str]:
    """``(cost, margin, verdict)`` of removing a mechanism: ``cost`` is the full row's ACC minus
    this row's, ``margin`` the larger of the two standard deviations.

    Example:
        >>> verdict({"avg_acc": {"mean": 0.88, "std": 0.002}, "n_seeds": 3},
        ...         {"avg_acc": {"mean": 0.90, "std": 0.003}, "n_seeds": 3})[2]
        'earns its place'
    """
    a, b = full["avg_acc"], row["avg_acc"]
    cost, margin = a["mean"] - b["mean"], max(a.get("std") or 0.0, b.get("std") or 0.0)
    if min(full.get("n_seeds", 1), row.get("n_seeds", 1)) < 2:
        return cost, margin, "no claim (1 seed)"
    if cost > margin:
        return cost, margin, "earns its place"
    if -cost > margin:
        return cost, margin, "costs accuracy"
    return cost, margin, "within noise"


def verdicts(bench_dir: str | Path) -> dict[str, tuple[float, float, str]]:
    """Each ablation row's verdict in the bench at ``bench_dir``."""
    methods = json.loads((Path(bench_dir) / "bench.json").read_text())["methods"]
    return {row: verdict(methods[row], methods[FULL]) for row in MECHANISM if row in methods}


def table(bench_dir: str | Path) -> str:
    bench = json.loads((Path(bench_dir) / "bench.json").read_text())
    methods, seeds = bench["methods"], max(e.get("n_seeds", 1) for e in bench["methods"].values())
    found = verdicts(bench_dir)

    def pm(stat: dict) -> str:
        return f"{100 * stat['mean']:.2f} ± {100 * (stat.get('std') or 0.0):.2f}"

    lines = [f"{bench['bench']['name']} ({seeds} seeds)", "",
             "| row | mechanism removed | ACC % | BWT % | learning acc % | cost of the removal (points) | verdict |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(methods, key=lambda m: -methods[m]["avg_acc"]["mean"])
    for m in order:
        e = methods[m]
        cost = f"{100 * found[m][0]:+.2f} (margin {100 * found[m][1]:.2f})" if m in found else ""
        lines.append(f"| {m} | {MECHANISM.get(m, 'none (every mechanism)' if m == FULL else 'reference')} | "
                     f"{pm(e['avg_acc'])} | {pm(e['bwt'])} | {pm(e['learning_acc'])} | {cost} | "
                     f"{found[m][2] if m in found else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(table(d), end="\n\n")
