"""The ablation's tables and verdicts, from the committed bench.json of its two stages:
`anpyc bench ablation` / `ablation-domain` (every mechanism of the paper on, one removed or
replaced per row) and `anpyc bench ablation-default` / `ablation-default-domain` (the default's own
base, one mechanism removed, replaced or added back per row).

    python docs/scripts/ablation_table.py docs/benchmarks/ablation/pmnist10 docs/benchmarks/ablation-default/pmnist10

Per row: ACC (mean ± std over seeds), BWT, learning accuracy, what the mechanism adds (the
ACC with it minus the ACC without it: the base row minus a row that removes it, a row that
adds it minus the base row) and the verdict under the project's rule: a mechanism earns its
place when it adds more than both standard deviations; when it takes away more than both it
costs accuracy; anything else is within noise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: base row -> {row: (the mechanism the row removes, replaces or adds, +1 removed / -1 added)}
STAGES = {
    "anpyc-all": {
        "no-structure": ("structure-awareness (structure: spread)", 1),
        "omega-magnitude": ("Omega, against \\|theta\\| (importance: omega)", 1),
        "omega-fisher": ("Omega, against the Fisher (importance: omega)", 1),
        "no-elementwise": ("element-wise updating (update: elementwise)", 1),
        "no-pruning": ("neural pruning (prune: true)", 1),
        "no-consolidation": ("consolidation (lam > 0)", 1),
    },
    "anpyc-default": {
        "omega-magnitude": ("Omega, against \\|theta\\| (importance: omega)", 1),
        "omega-fisher": ("Omega, against the Fisher (importance: omega)", 1),
        "omega-uniform": ("Omega, against ones: a plain L2 pull (importance: omega)", 1),
        "omega-removal-form": ("Omega's authors' sign, against the removal form (taylor_form: reference)", 1),
        "finetune": ("consolidation (lam > 0; without it, fine-tune)", 1),
        "with-elementwise": ("element-wise updating, added (update: elementwise)", -1),
        "with-structure": ("structure-awareness, added (structure: spread)", -1),
        "with-pruning": ("neural pruning, added (prune: true)", -1),
    },
}


def _stage(methods: dict) -> tuple[str, dict]:
    base = next(b for b in STAGES if b in methods)
    return base, STAGES[base]


def verdict(row: dict, base: dict, sign: int = 1) -> tuple[float, float, str]:
    """``(gain, margin, verdict)`` of a mechanism: ``gain`` is the ACC with it minus the ACC
    without it (``sign`` 1: ``row`` removes it from ``base``; -1: ``row`` adds it), ``margin``
    the larger of the two standard deviations.

    Example:
        >>> verdict({"avg_acc": {"mean": 0.88, "std": 0.002}, "n_seeds": 3},
        ...         {"avg_acc": {"mean": 0.90, "std": 0.003}, "n_seeds": 3})[2]
        'earns its place'
        >>> verdict({"avg_acc": {"mean": 0.88, "std": 0.002}, "n_seeds": 3},  # a row that adds it
        ...         {"avg_acc": {"mean": 0.90, "std": 0.003}, "n_seeds": 3}, sign=-1)[2]
        'costs accuracy'
    """
    a, b = base["avg_acc"], row["avg_acc"]
    gain, margin = sign * (a["mean"] - b["mean"]), max(a.get("std") or 0.0, b.get("std") or 0.0)
    if min(base.get("n_seeds", 1), row.get("n_seeds", 1)) < 2:
        return gain, margin, "no claim (1 seed)"
    if gain > margin:
        return gain, margin, "earns its place"
    if -gain > margin:
        return gain, margin, "costs accuracy"
    return gain, margin, "within noise"


def _verdicts(methods: dict) -> dict[str, tuple[float, float, str]]:
    base, rows = _stage(methods)
    return {row: verdict(methods[row], methods[base], sign) for row, (_, sign) in rows.items() if row in methods}


def verdicts(bench_dir: str | Path) -> dict[str, tuple[float, float, str]]:
    """Each ablation row's verdict in the bench at ``bench_dir`` (either stage)."""
    return _verdicts(json.loads((Path(bench_dir) / "bench.json").read_text())["methods"])


def table(bench_dir: str | Path) -> str:
    bench = json.loads((Path(bench_dir) / "bench.json").read_text())
    methods, seeds = bench["methods"], max(e.get("n_seeds", 1) for e in bench["methods"].values())
    found = _verdicts(methods)  # from the bench already read, not read again
    base, rows = _stage(methods)

    def pm(stat: dict) -> str:
        return f"{100 * stat['mean']:.2f} ± {100 * (stat.get('std') or 0.0):.2f}"

    lines = [f"{bench['bench']['name']} ({seeds} seeds)", "",
             "| row | mechanism | ACC % | BWT % | learning acc % | what the mechanism adds (points) | verdict |",
             "|---|---|---|---|---|---|---|"]
    order = sorted(methods, key=lambda m: -methods[m]["avg_acc"]["mean"])
    for m in order:
        e = methods[m]
        cost = f"{100 * found[m][0]:+.2f} (margin {100 * found[m][1]:.2f})" if m in found else ""
        lines.append(f"| {m} | {rows[m][0] if m in rows else ('none (the base)' if m == base else 'reference')} | "
                     f"{pm(e['avg_acc'])} | {pm(e['bwt'])} | {pm(e['learning_acc'])} | {cost} | "
                     f"{found[m][2] if m in found else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(table(d), end="\n\n")
