"""The compact tables of the README and docs/benchmarks/README.md, from committed bench.json files.

    python docs/scripts/bench_tables.py docs/benchmarks/pmnist10 [DIR ...]

Per benchmark: every label sorted by ACC (mean ± std over its seeds), BWT, learning accuracy
(accuracy right after learning each task), passes per task (training) and decision passes per
task (forward passes spent on choices and stored targets, where recorded), task-inference accuracy where the
scenario hides the task id, time relative to fine-tune, and how the label compares with ANPyC
under the project's rule (a claim needs a difference larger than both standard deviations).
Without task ids the rows are in three groups, compared only within their group: one head and
no task inference, the task inferred with a head per task (``<method>+inference``), and the
model of the inputs alone (``density``, ``slda``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REFERENCE = "anpyc"


def _pm(stat: dict | None, seeds: int, scale: float = 100.0) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if seeds < 2:  # one seed has no spread to show
        return f"{scale * stat['mean']:.1f}"
    return f"{scale * stat['mean']:.1f} ± {scale * (stat.get('std') or 0.0):.1f}"


def _versus(entry: dict, ref: dict | None) -> str:
    """``entry`` against ANPyC: ahead, behind, or within both standard deviations (no claim
    from fewer than two seeds)."""
    if ref is None or entry is ref:
        return ""
    if min(entry.get("n_seeds", 1), ref.get("n_seeds", 1)) < 2:
        return "no claim (1 seed)"
    a, b = entry["avg_acc"], ref["avg_acc"]
    margin = max(a.get("std") or 0.0, b.get("std") or 0.0)
    if a["mean"] - b["mean"] > margin:
        return "ahead of ANPyC"
    if b["mean"] - a["mean"] > margin:
        return "behind ANPyC"
    return "within std"


#: without a task id, what answers a test input; rows compare like with like within a group
GROUPS = ("one head", "task inferred", "inputs alone")


def _group(entry: dict, scenario: str) -> str:
    if scenario == "task":
        return ""
    if entry.get("trains_network") is False:
        return GROUPS[2]
    return GROUPS[1] if entry.get("task_inference", "none") != "none" else GROUPS[0]


def recorded_commit(bench: dict) -> str | None:
    """The commit a bench ran at (``bench.json``'s ``bench`` section): ``commit``, or
    ``git_commit`` in benches recorded before 2026-12-03."""
    return bench.get("commit") or bench.get("git_commit")


def table(bench_dir: Path) -> str:
    data = json.loads((bench_dir / "bench.json").read_text())
    methods = data["methods"]
    groups = {label: _group(e, data.get("scenario", "task")) for label, e in methods.items()}
    grouped = len(set(groups.values())) > 1
    # ANPyC in each group is the group's reference (anpyc, anpyc+inference)
    refs = {groups[label]: e for label, e in methods.items() if e.get("method", label) == REFERENCE}
    inference = any("task_inference_acc" in e for e in methods.values())
    decisions = any("decision_passes_per_task" in e for e in methods.values())  # benches from before it was recorded: none
    head = (["group"] if grouped else []) + ["method", "ACC %", "BWT %", "learning acc %", "passes / task"]
    head += ["decision passes / task"] if decisions else []
    head += ["task inference %"] if inference else []
    head += ["time / fine-tune", "vs ANPyC" + (" (same group)" if grouped else "")]
    seeds = len(data["seeds"])
    commit = recorded_commit(data["bench"])  # recorded since the bench refuses a dirty tree
    at = f", commit {commit[:7]}" + ("" if data["bench"].get("clean_tree") else " with uncommitted changes") if commit else ""
    lines = [f"`{data['bench']['command']}` ({data['scenario']} scenario, {data['n_tasks']} tasks, "
             f"seeds {data['seeds']}, {data['bench']['date'][:10]}{at})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = {g: i for i, g in enumerate(("", *GROUPS))}
    for label, e in sorted(methods.items(), key=lambda kv: (order[groups[kv[0]]], -kv[1]["avg_acc"]["mean"])):
        name = f"{label} (upper bound)" if e.get("upper_bound") else label
        row = ([groups[label]] if grouped else []) + [
            name, _pm(e["avg_acc"], seeds), _pm(e.get("bwt"), seeds), _pm(e.get("learning_acc"), seeds),
            f"{e['passes_per_task']['mean']:.2f}" if e.get("passes_per_task") else "-"]
        row += [f"{e['decision_passes_per_task']['mean']:.2f}" if e.get("decision_passes_per_task") else "-"] if decisions else []
        row += [_pm(e.get("task_inference_acc"), seeds)] if inference else []
        ratio = e.get("time_ratio_finetune") or {}
        row += [f"{ratio['mean']:.2f}" if ratio.get("mean") is not None else "-",
                "" if e.get("upper_bound") else _versus(e, refs.get(groups[label]))]
        lines.append("| " + " | ".join(row) + " |")
    failed: dict[str, list] = {}
    for f in data.get("failed") or []:  # a run that stopped has no row; say so under the table
        failed.setdefault(f["method"], []).append(f)
    for label, runs in failed.items():
        seeds_failed = ", ".join(str(f["seed"]) for f in runs)
        lines += ["", f"No row for {label}: seed(s) {seeds_failed} stopped ({runs[0]['error'].split(':')[0]})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python docs/scripts/bench_tables.py BENCH_DIR [BENCH_DIR ...]")
    print("\n".join(table(Path(d)) for d in sys.argv[1:]))
