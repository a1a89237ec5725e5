"""Would a permuted-MNIST table change if every preset were chosen on all 10 tasks?

The permuted-MNIST presets were first chosen on a 5-task proxy, where five tasks forget too
little to reward consolidation; this check moved the three protocols' proxies to the full stream
(pmnist10's, then pmnist10-domain's and pmnist10-common's, 2026-12-04). It runs every method's grid of the
protocol (the same points, the same budget for every method) on the full 10-task stream, picks each
method's point by validation ACC (seed 0), runs that point on seeds 1 and 2, and tabulates the
test ACC over the three seeds beside fine-tune's. It changes no preset.

    python docs/scripts/full_length_tuning.py OUT [--protocol pmnist10] [--jobs 2] [--methods anpyc,si,...]

Every run is ``anpyc compare --protocol P --methods M --param M.K=V ... --threads 1``;
a run whose summary exists is not run again (the script resumes). Writes OUT/table.md and
OUT/table.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from anpyc.experiments.presets import best_point, expand_grid, grid_for
from anpyc.report.stats import welch_t_test

METHODS = "anpyc,si,online-ewc,ewc,mas,lwf,hat,packnet,anpyc-masks,er,derpp"


def grid_points(method: str, protocol: str = "pmnist10") -> list[dict]:
    """The points `anpyc tune --protocol` would run: the grid file's grid, expanded as it does."""
    return expand_grid(grid_for(protocol, method))


def compare(out: Path, protocol: str, method: str, params: dict, seed: int, seeds: int) -> Path:
    if not (out / "summary.json").exists():
        cmd = [sys.executable, "-m", "anpyc", "compare", "--protocol", protocol, "--methods", method,
               "--seed", str(seed), "--seeds", str(seeds), "--threads", "1", "--quiet", "--no-report",
               "--overwrite", "--out", str(out)]
        for key, value in params.items():
            cmd += ["--param", f"{method}.{key}={value}"]
        # a diverging point fails (exit 2) and is recorded as such, as `anpyc tune` does
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return out


def figures(out: Path, method: str) -> list[tuple[int, float, float]]:
    """(seed, val ACC, test ACC) of every run under ``out``; a failed point: one row of NaNs."""
    rows = []
    for metrics in sorted((out / method).glob("seed_*/metrics.json")):
        m = json.loads(metrics.read_text())
        rows.append((int(metrics.parent.name.split("_")[1]), 100 * m["val_avg_acc"], 100 * m["avg_acc"]))
    return rows or [(-1, float("nan"), float("nan"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--protocol", default="pmnist10")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--methods", default=METHODS)
    args = ap.parse_args()
    methods, proto = args.methods.split(","), args.protocol
    grids = {m: grid_points(m, proto) for m in methods}
    pool = ThreadPoolExecutor(args.jobs)
    first = {m: [pool.submit(compare, args.out / "points" / m / f"p{i}", proto, m, p, 0, 1) for i, p in enumerate(grids[m])]
             for m in methods}
    finetune = pool.submit(compare, args.out / "finetune", proto, "finetune", {}, 0, 3)
    best, later = {}, {}
    for m in methods:
        points = [{"params": p, "val": v, "test": t} for ((_, v, t), p) in
                  ((figures(f.result(), m)[0], p) for f, p in zip(first[m], grids[m]))]
        # chosen as `anpyc tune` chooses (ties: the earlier point; a diverged point never wins)
        chosen = best_point([{**q, "val_avg_acc": None if math.isnan(q["val"]) else q["val"]} for q in points]) or points[0]
        params, val, test = chosen["params"], chosen["val"], chosen["test"]
        best[m] = {"params": params, "val_seed0": val, "test_seed0": test, "points": points}
        later[m] = pool.submit(compare, args.out / "seeds" / m, proto, m, params, 1, 2)
    rows = {"finetune": {"test": [t for _, _, t in figures(finetune.result(), "finetune")]}}
    for m in methods:
        rows[m] = {**best[m], "test": [best[m]["test_seed0"], *(t for _, _, t in figures(later[m].result(), m))]}
    write(args.out, rows)


def _welch_p(a: list[float], b: list[float]) -> str:
    if a is b:
        return ""
    w = welch_t_test({"mean": statistics.mean(a), "std": statistics.stdev(a)},
                     {"mean": statistics.mean(b), "std": statistics.stdev(b)}, len(a), len(b))
    return f"{w.p:.3f}"


def write(out: Path, rows: dict) -> None:
    lines = ["| method | point chosen on 10 tasks (validation, seed 0) | test ACC %, seeds 0-2 "
             "| Welch's p against anpyc | against finetune |", "|---|---|---|---|---|"]
    order = sorted(rows, key=lambda m: -statistics.mean(rows[m]["test"]))
    for m in order:
        t = rows[m]["test"]
        point = ", ".join(f"{k} {v}" for k, v in rows[m].get("params", {}).items()) or "(no grid)"
        lines.append(f"| {m} | {point} | {statistics.mean(t):.1f} ± {statistics.stdev(t):.1f} "
                     f"| {_welch_p(t, rows['anpyc']['test'])} | {_welch_p(t, rows['finetune']['test'])} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
