"""Per-task table of finished runs: accuracy right after learning each task (the diagonal of
the accuracy matrix), ACC, forgetting, training and decision passes per task (mean over tasks,
``-`` where a run predates the count), and the masks variant's pruning guard figures.

    python docs/scripts/per_task_table.py NAME=RUN_DIR [NAME=RUN_DIR ...]

Used for docs/benchmarks/guard (the commands are in its README). Reads only metrics.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _per_task(metrics: dict, key: str) -> str:
    """Mean over tasks of a per-task count (``passes``, ``decision_passes``); ``-`` where the
    run predates it."""
    values = metrics.get(key)
    return f"{sum(values) / len(values):.2f}" if values else "-"


def row(name: str, metrics: dict) -> str:
    R = metrics["acc_matrix"]
    diag = " | ".join(f"{100 * R[i][i]:.1f}" for i in range(len(R)))
    return (f"| {name} | {diag} | {100 * metrics['avg_acc']:.1f} | {100 * metrics['forgetting']:.2f} | "
            f"{_per_task(metrics, 'passes')} | {_per_task(metrics, 'decision_passes')} |")


def guard_rows(name: str, metrics: dict) -> list[str]:
    out = []
    for rec in metrics.get("prune_guard") or []:
        vals = " | ".join(f"{100 * rec[k]:.1f}" if isinstance(rec.get(k), float) else "-"
                          for k in ("val_before", "val_pruned", "val_retrained"))
        out.append(f"| {name} | {rec['task']} | {vals} | {rec.get('planned_keep', 0):.3g} | {rec.get('keep', 0):.3g} |"
                   f" {rec.get('reason', '')} |")
    return out


def main(argv: list[str]) -> str:
    runs = {arg.split("=", 1)[0]: json.loads((Path(arg.split("=", 1)[1]) / "metrics.json").read_text()) for arg in argv}
    n = max(len(m["acc_matrix"]) for m in runs.values())
    lines = ["| run | " + " | ".join(f"task {j + 1}" for j in range(n))
             + " | ACC | forgetting | passes / task | decision passes / task |",
             "|---|" + "---|" * (n + 4)]
    lines += [row(name, m) for name, m in runs.items()]
    guard = [g for name, m in runs.items() for g in guard_rows(name, m)]
    if guard:
        lines += ["", "| run | task | val before | val pruned | val retrained | keep planned | keep chosen | note |",
                  "|---|---|---|---|---|---|---|---|", *guard]
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
