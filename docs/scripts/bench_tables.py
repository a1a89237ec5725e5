"""The compact tables of the README and docs/benchmarks/README.md, from committed bench.json files.

    python docs/scripts/bench_tables.py docs/benchmarks/pmnist10 [DIR ...]
    python docs/scripts/bench_tables.py --versus hat finetune docs/benchmarks/pmnist10

Per benchmark: every label sorted by ACC (mean ± std over its seeds), BWT, learning accuracy
(accuracy right after learning each task), passes per task (training) and decision passes per
task (forward passes spent on choices and stored targets, where recorded), task-inference accuracy where the
scenario hides the task id, time relative to fine-tune, and how the label compares with ANPyC
under the project's rule (a claim needs a difference larger than both standard deviations), with
Welch's t-test beside it (two-sided p over the seeds; :mod:`anpyc.report.stats`). Under each table,
per group, which rows the best one is ahead of by both rules.
Without task ids the rows are in three groups, compared only within their group: one head and
no task inference, the task inferred with a head per task (``<method>+inference``), and the
model of the inputs alone (``density``, ``slda``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from anpyc.report.stats import Welch, format_p, standing, welch_t_test
from anpyc.report.tables import GROUPS as LIBRARY_GROUPS
from anpyc.report.tables import comparison_group
from anpyc.summary import clearly_ahead

REFERENCE = "anpyc"


class MissingRow(LookupError):
    """A label ``--versus`` names is not a row of the bench (said in one line, not a traceback)."""


def _pm(stat: dict | None, seeds: int, scale: float = 100.0) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    if seeds < 2:  # one seed has no spread to show
        return f"{scale * stat['mean']:.1f}"
    return f"{scale * stat['mean']:.1f} ± {scale * (stat.get('std') or 0.0):.1f}"


def compare(entry: dict, other: dict) -> tuple[str, Welch | None]:
    """``entry`` against ``other`` by the project's both-std rule (:func:`anpyc.summary.clearly_ahead`:
    "ahead", "behind", "within std", or "no claim" from one seed) and Welch's t-test (``None``
    from one seed)."""
    a, b = entry["avg_acc"], other["avg_acc"]
    welch = welch_t_test(a, b, entry.get("n_seeds", 1), other.get("n_seeds", 1))
    if welch is None:
        return "no claim (1 seed)", None
    return ("ahead" if clearly_ahead(a, b) else "behind" if clearly_ahead(b, a) else "within std"), welch


def _versus(entry: dict, ref: dict | None) -> str:
    """``entry`` against ANPyC: ahead, behind, or within both standard deviations, and Welch's
    p; where the two disagree the cell says so."""
    if ref is None or entry is ref:
        return ""
    verdict, welch = compare(entry, ref)
    if welch is None:
        return verdict
    disagree = (verdict == "within std") == welch.significant()
    verdict = {"ahead": "ahead of ANPyC", "behind": "behind ANPyC"}.get(verdict, verdict)
    return f"{verdict} ({format_p(welch.p)}{', Welch disagrees' if disagree else ''})"


def _standing(rows: list[tuple[str, dict]], group: str) -> str | None:
    """The best row of a group and which rows it is ahead of by both the both-std rule and
    Welch's p < 0.05 (:func:`anpyc.report.stats.standing`); the rest are not claimed to be behind it."""
    fair = [(label, e) for label, e in rows if not e.get("upper_bound")]
    if len(fair) < 2 or min(e.get("n_seeds", 1) for _, e in fair) < 2:
        return None
    found = standing([(label, e["avg_acc"], e.get("n_seeds", 1)) for label, e in fair])
    level = [f"{label} ({format_p(welch.p)})" for label, welch in found.level]
    where = f"{group}: best" if group else "Best"
    return (f"{where} **{found.best}**; ahead (both std and Welch p < 0.05) of {len(found.ahead)} of {len(fair) - 1}; "
            f"not separable from it: {', '.join(level) or 'none'}.")


#: the library's groups (what answers a test input without a task id), in short, in its order
GROUPS = ("one head", "one head, density replay", "task inferred", "inputs alone")


def _group(entry: dict, scenario: str) -> str:
    """The row's group, as the library's tables decide it (:func:`comparison_group`), in short."""
    group = comparison_group(entry, scenario)
    return GROUPS[LIBRARY_GROUPS.index(group)] if group else ""


def recorded_commit(bench: dict) -> str | None:
    """The commit a bench ran at (``bench.json``'s ``bench`` section): ``commit``, or
    ``git_commit`` in benches recorded before 2026-12-03."""
    return bench.get("commit") or bench.get("git_commit")


def references(methods: dict[str, dict], groups: dict[str, str]) -> dict[str, dict]:
    """Each group's ANPyC row, the one every other row is compared with: the row labelled
    ``anpyc`` (``anpyc+inference`` with the inference), else ``anpyc-all`` (the ablation's full
    method); a group whose only ANPyC rows are other variants (the ablation's removals) has
    none, rather than one picked by the order of the rows.

    Example:
        >>> rows = {"no-pruning": {"method": "anpyc"}, "anpyc-all": {"method": "anpyc"}}
        >>> references(rows, dict.fromkeys(rows, ""))[""] is rows["anpyc-all"]
        True
    """
    ranked: dict[str, list[tuple[int, dict]]] = {}
    for label, e in methods.items():
        if e.get("method", label) == REFERENCE:
            rank = 0 if label in (REFERENCE, f"{REFERENCE}+inference") else 1 if label == f"{REFERENCE}-all" else 2
            ranked.setdefault(groups[label], []).append((rank, e))
    refs = {}
    for group, rows in ranked.items():
        best = min(rank for rank, _ in rows)
        top = [e for rank, e in rows if rank == best]
        if best < 2 or len(top) == 1:
            refs[group] = top[0]
    return refs


def table(bench_dir: Path) -> str:
    data = json.loads((bench_dir / "bench.json").read_text())
    methods = data["methods"]
    groups = {label: _group(e, data.get("scenario", "task")) for label, e in methods.items()}
    grouped = len(set(groups.values())) > 1
    refs = references(methods, groups)
    inference = any("task_inference_acc" in e for e in methods.values())
    decisions = any("decision_passes_per_task" in e for e in methods.values())  # benches from before it was recorded: none
    head = (["group"] if grouped else []) + ["method", "ACC %", "BWT %", "learning acc %", "passes / task"]
    head += ["decision passes / task"] if decisions else []
    head += ["task inference %"] if inference else []
    head += ["time / fine-tune", "vs ANPyC" + (" (same group)" if grouped else "") + ": both std, Welch p"]
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
    by_group: dict[str, list] = {}
    for label, e in methods.items():
        by_group.setdefault(groups[label], []).append((label, e))
    standings = [_standing(by_group[g], g) for g in sorted(by_group, key=order.__getitem__)]
    lines += [""] + [s for s in standings if s] if any(standings) else []
    failed: dict[str, list] = {}
    for f in data.get("failed") or []:  # a run that stopped has no row; say so under the table
        failed.setdefault(f["method"], []).append(f)
    for label, runs in failed.items():
        seeds_failed = ", ".join(str(f["seed"]) for f in runs)
        why = runs[0]["error"].split(":")[0]
        kept = methods.get(label, {}).get("n_seeds")
        lines += ["", f"{label}: seed(s) {seeds_failed} stopped ({why}); its row is the other {kept} seeds." if kept
                  else f"No row for {label}: seed(s) {seeds_failed} stopped ({why})."]
    return "\n".join(lines) + "\n"


def versus(a: str, b: str, bench_dir: Path) -> str:
    """One claim of the README checked: row ``a`` against row ``b`` of one bench."""
    methods = json.loads((bench_dir / "bench.json").read_text())["methods"]
    for label in (a, b):
        if label not in methods:
            raise MissingRow(f"no row {label!r} in {bench_dir / 'bench.json'}; its rows: {', '.join(sorted(methods))}")
    ea, eb = methods[a], methods[b]
    verdict, welch = compare(ea, eb)
    diff = 100 * (ea["avg_acc"]["mean"] - eb["avg_acc"]["mean"])
    test = f"Welch t {welch.t:.2f}, df {welch.df:.1f}, {format_p(welch.p)}" if welch else "no test (1 seed)"
    return (f"{a} {_pm(ea['avg_acc'], ea['n_seeds'])} vs {b} {_pm(eb['avg_acc'], eb['n_seeds'])}: "
            f"{diff:+.2f} points; both-std rule: {verdict}; {test}")


def main(argv: list[str]) -> int:
    """Print the tables (or one ``--versus`` line); 2 and one line on stderr for a row the bench lacks."""
    if len(argv) == 4 and argv[0] == "--versus":
        try:
            print(versus(argv[1], argv[2], Path(argv[3])))
        except MissingRow as exc:
            print(f"bench_tables.py: {exc}", file=sys.stderr)
            return 2
    elif not argv or argv[0].startswith("-"):
        print("usage: python docs/scripts/bench_tables.py BENCH_DIR [BENCH_DIR ...]\n"
              "       python docs/scripts/bench_tables.py --versus LABEL_A LABEL_B BENCH_DIR", file=sys.stderr)
        return 1
    else:
        print("\n".join(table(Path(d)) for d in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
