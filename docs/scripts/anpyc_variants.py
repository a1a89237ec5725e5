"""The ANPyC variant tables of docs/anpyc.md, one command each.

Every row is one `anpyc run --method anpyc-masks --param ...` (or fine-tune) on the table's stream;
the script runs the rows, selects nothing (the tables show validation ACC, which chose the
defaults, and test ACC beside it) and writes DIR/<table>.md and DIR/<table>.json.

    python docs/scripts/anpyc_variants.py defaults    --out runs/variants   # 10-task pmnist10 protocol, full data
    python docs/scripts/anpyc_variants.py criterion   --out runs/variants   # 5 tasks, 10,000 images per task
    python docs/scripts/anpyc_variants.py protection  --out runs/variants   # 5 tasks, 10,000 images per task
    python docs/scripts/anpyc_variants.py exhaustion  --out runs/variants   # 16 tasks, 10,000 images, keep 50%
    python docs/scripts/anpyc_variants.py TABLE --smoke --out runs/smoke     # 2 blobs tasks per row: checks the script

`--threads N` sets torch threads; `--rows a,b` runs a subset (row keys in ROWS below). Needs
MNIST (`anpyc data fetch mnist`) except with `--smoke`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anpyc.config import RunConfig, deep_update
from anpyc.experiments.protocols import PMNIST
from anpyc.io import atomic_write_text, write_json
from anpyc.runner import build_stream, run

# the streams of the four tables (the pmnist10 protocol's model and training throughout)
SUBSAMPLE_5 = {"stream": {"tasks": 5, "subsample": 10000}}
STREAMS = {
    "defaults": {},  # 10 tasks, full data
    "criterion": SUBSAMPLE_5,
    "protection": SUBSAMPLE_5,
    "exhaustion": {"stream": {"tasks": 16, "subsample": 10000, "test_subsample": 1000, "val_subsample": 1000}},
}

HARD = {"protection": "hard", "task_masks": True, "prune_criterion": "magnitude", "retrain_epochs": 1}
K30 = {"keep_first": 0.3, "keep_decay": 0.9, "keep_min": 0.1}
EXHAUST = {"keep_first": 0.5, "keep_decay": 1.0, "keep_min": 0.5}

#: table -> row key -> (label, method, params)
ROWS: dict[str, dict[str, tuple[str, str, dict]]] = {
    "defaults": {
        "k50-zero": ("keep 50% x0.8 (floor 5%), released weights zero", "anpyc-masks",
                     {**HARD, "keep_first": 0.5, "keep_decay": 0.8, "keep_min": 0.05, "reinit": "zero"}),
        "k30-zero": ("keep 30% x0.9 (floor 10%), zero", "anpyc-masks", {**HARD, **K30, "reinit": "zero"}),
        "k20-zero": ("keep 20% constant, zero", "anpyc-masks",
                     {**HARD, "keep_first": 0.2, "keep_decay": 1.0, "keep_min": 0.2, "reinit": "zero"}),
        "k50-random": ("keep 50% x0.8 (floor 5%), released weights re-initialised", "anpyc-masks",
                       {**HARD, "keep_first": 0.5, "keep_decay": 0.8, "keep_min": 0.05, "reinit": "random"}),
        "k30-random": ("keep 30% x0.9 (floor 10%), re-initialised", "anpyc-masks", {**HARD, **K30, "reinit": "random"}),
        "k30-random-unit": ("same, whole units pruned (prune_unit: unit)", "anpyc-masks",
                            {**HARD, **K30, "reinit": "random", "prune_unit": "unit"}),
        "k20-random": ("keep 20% constant, re-initialised", "anpyc-masks",
                       {**HARD, "keep_first": 0.2, "keep_decay": 1.0, "keep_min": 0.2, "reinit": "random"}),
        "k15-random": ("keep 15% constant, re-initialised", "anpyc-masks",
                       {**HARD, "keep_first": 0.15, "keep_decay": 1.0, "keep_min": 0.15, "reinit": "random"}),
        "k15x095-random": ("keep 15% x0.95 (floor 5%), re-initialised", "anpyc-masks",
                           {**HARD, "keep_first": 0.15, "keep_decay": 0.95, "keep_min": 0.05, "reinit": "random"}),
        "finetune": ("fine-tune (reference point)", "finetune", {}),
    },
    "criterion": {
        "magnitude": ("magnitude |theta|", "anpyc-masks", {**HARD, **K30, "reinit": "zero"}),
        "taylor-abs": ("|g theta| of the loss (taylor_abs)", "anpyc-masks",
                       {**HARD, **K30, "reinit": "zero", "prune_criterion": "taylor_abs"}),
        "removal-loss": ("entropy-Taylor, removal form, loss signal", "anpyc-masks",
                         {**HARD, **K30, "reinit": "zero", "prune_criterion": "taylor", "taylor_form": "removal",
                          "importance_signal": "loss"}),
        "removal-entropy": ("entropy-Taylor, removal form, entropy signal", "anpyc-masks",
                            {**HARD, **K30, "reinit": "zero", "prune_criterion": "taylor", "taylor_form": "removal",
                             "importance_signal": "entropy"}),
        "random": ("random", "anpyc-masks", {**HARD, **K30, "reinit": "zero", "prune_criterion": "random"}),
        "reference-entropy": ("entropy-Taylor, reference form, entropy signal", "anpyc-masks",
                              {**HARD, **K30, "reinit": "zero", "prune_criterion": "taylor", "taylor_form": "reference",
                               "importance_signal": "entropy"}),
        "reference-loss": ("entropy-Taylor, reference form, loss signal", "anpyc-masks",
                           {**HARD, **K30, "reinit": "zero", "prune_criterion": "taylor", "taylor_form": "reference",
                            "importance_signal": "loss"}),
    },
    "protection": {
        "hard": ("hard protection (default)", "anpyc-masks", {}),
        "soft-sum": ("soft, lambda 10, merge sum, structure none, entropy signal", "anpyc-masks",
                     {"protection": "soft", "lam": 10.0, "merge": "sum", "structure": "none", "importance_signal": "entropy"}),
        "soft-max": ("soft, merge max", "anpyc-masks", {"protection": "soft", "lam": 10.0, "merge": "max"}),
        "soft-loss": ("soft, importance signal loss (labels)", "anpyc-masks",
                      {"protection": "soft", "lam": 10.0, "importance_signal": "loss"}),
        "soft-layer-softmax": ("soft, structure layer_softmax (beta 3), lambda 0.05", "anpyc-masks",
                               {"protection": "soft", "lam": 0.05, "structure": "layer_softmax", "beta": 3.0}),
        "scaled": ("scaled (soft + updates divided by 1 + lambda Omega / mean Omega)", "anpyc-masks", {"protection": "scaled"}),
    },
    "exhaustion": {
        "reclaim-5-magnitude": ("reclaim 5% of owned weights, smallest magnitude (default)", "anpyc-masks",
                                {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.05, "reclaim_by": "magnitude"}),
        "reclaim-2-magnitude": ("reclaim 2%, smallest magnitude", "anpyc-masks",
                                {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.02, "reclaim_by": "magnitude"}),
        "reclaim-10-magnitude": ("reclaim 10%, smallest magnitude", "anpyc-masks",
                                 {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.10, "reclaim_by": "magnitude"}),
        "reclaim-5-importance": ("reclaim 5%, lowest consolidated Omega", "anpyc-masks",
                                 {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.05, "reclaim_by": "importance"}),
        "reclaim-10-importance": ("reclaim 10%, lowest Omega", "anpyc-masks",
                                  {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.10, "reclaim_by": "importance"}),
        "reclaim-20-importance": ("reclaim 20%, lowest Omega", "anpyc-masks",
                                  {**EXHAUST, "exhausted_policy": "reclaim", "reclaim_share": 0.20, "reclaim_by": "importance"}),
        **{f"consolidate-{lam:g}": (f"consolidate, lambda {lam:g}", "anpyc-masks",
                                    {**EXHAUST, "exhausted_policy": "consolidate", "lam": lam})
           for lam in (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)},
        "head-only": ("head only (body frozen)", "anpyc-masks", {**EXHAUST, "exhausted_policy": "head_only"}),
    },
}

SMOKE = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200, "test_subsample": None, "val_subsample": None},
         "model": {"hidden": [16, 16]}}


def base_config(table: str, smoke: bool = False, threads: int | None = None) -> RunConfig:
    """The table's stream on the pmnist10 protocol's model and training."""
    data = deep_update(PMNIST, STREAMS[table])
    if smoke:
        data = deep_update(data, SMOKE)
    if threads:
        data = deep_update(data, {"train": {"threads": threads}})
    return RunConfig.from_dict(data)


def row_configs(table: str, smoke: bool = False, threads: int | None = None) -> dict[str, RunConfig]:
    """Every row's run config (checked: a bad parameter fails here, before any training)."""
    base = base_config(table, smoke, threads)
    return {key: base.with_params(method, **params) for key, (_, method, params) in ROWS[table].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(ROWS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", default=None, help="comma-separated row keys (default: all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="2 blobs tasks per row (checks the script, not the figures)")
    args = parser.parse_args(argv)
    configs = row_configs(args.table, args.smoke, args.threads)
    keys = [k.strip() for k in args.rows.split(",")] if args.rows else list(configs)
    unknown = set(keys) - set(configs)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; known: {', '.join(configs)}")
    out = Path(args.out)
    stream = build_stream(next(iter(configs.values())))  # one stream for every row (same seed)
    results = {}
    for key in keys:
        cfg = configs[key]
        try:
            m = run(cfg, out / args.table / key, quiet=True, overwrite=True, stream=stream).metrics
            results[key] = {"val_avg_acc": m["val_avg_acc"], "avg_acc": m["avg_acc"], "bwt": m["bwt"],
                            "exhausted_tasks": m.get("exhausted_tasks")}
        except Exception as exc:  # a diverging row is a result of the table
            results[key] = {"error": str(exc).splitlines()[0]}
        print(key, results[key], flush=True)
    lines = [f"# {args.table} (python docs/scripts/anpyc_variants.py {args.table}{' --smoke' if args.smoke else ''})", "",
             "| variant | val ACC | BWT |", "|---|---|---|"]
    for key in keys:
        r, label = results[key], ROWS[args.table][key][0]
        if "error" in r:
            lines.append(f"| {label} | {r['error']} | |")
        else:
            lines.append(f"| {label} | {100 * r['val_avg_acc']:.2f} ({100 * r['avg_acc']:.2f}) | {100 * r['bwt']:+.2f} |")
    atomic_write_text(out / f"{args.table}.md", "\n".join(lines) + "\n")
    write_json(out / f"{args.table}.json", {"table": args.table, "smoke": args.smoke, "rows": results,
                                            "configs": {k: configs[k].to_dict() for k in keys}})
    print(json.dumps({"written": str(out / f"{args.table}.md")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
