"""Choose the baselines' defaults on validation data across settings (issues #29 and #24).

``run`` runs ``anpyc tune`` (every grid point, seed 0, one torch thread) for each method on
each of its settings: a setting is a protocol's tuning proxy (``anpyc.experiments.protocols``: the
protocol's base config with its proxy, its budget) or, for the replay methods, the peer's
matched setting (class-incremental split MNIST with the common optimiser, as Avalanche runs
it). ``choose`` reads every ``tune.json`` back and picks, per method, the grid point with the
highest validation ACC averaged over the method's settings (ties: the earlier point); test
ACC is shown, never used. It writes ``<method>.md`` (every point on every setting) and
``choices.json`` into ``--write``, and copies each ``tune.json`` / ``tune.md`` there.

Usage (from the repository root, a clean tree; ``anpyc`` installed)::

    python docs/benchmarks/baselines-defaults/defaults.py run --methods ewc,hat,er,derpp --out runs/defaults --jobs 2
    python docs/benchmarks/baselines-defaults/defaults.py choose --out runs/defaults \\
        --write docs/benchmarks/baselines-defaults
    python docs/benchmarks/baselines-defaults/defaults.py run --methods ewc-lam,online-ewc --out runs/defaults --jobs 2
    python docs/benchmarks/baselines-defaults/defaults.py choose --out runs/defaults \\
        --write docs/benchmarks/baselines-defaults

(the second stage's grids use the Fisher estimate the first stage chose for EWC). Stage 3 (whether
a single shared head is consolidated too, at stage 2's choices; 2 runs per method)::

    python docs/benchmarks/baselines-defaults/defaults.py run --methods ewc-head,online-ewc-head --out runs/defaults --jobs 1
    python docs/benchmarks/baselines-defaults/defaults.py choose --out runs/defaults \\
        --write docs/benchmarks/baselines-defaults
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from anpyc.config import deep_update
from anpyc.experiments.protocols import get_protocol, protocol_config

#: the peer's matched setting for the replay methods: class-incremental split MNIST, full data,
#: 784-256-256, SGD lr 0.01 momentum 0.9 (one optimizer for the stream), batch 128, 1 epoch of
#: new data plus the replayed examples (Avalanche's way: `--budget epochs`)
CLASS_COMMON = {
    "stream": {"benchmark": "split-mnist"},
    "model": {"hidden": [256, 256]},
    "train": {"epochs": 1, "lr": 0.01, "momentum": 0.9, "batch_size": 128, "optimizer": "sgd", "reset_optimizer": False},
    "scenario": "class",
}


def protocol_setting(name: str, **changes) -> tuple[dict, str]:
    """A protocol's tuning proxy (its config and budget), with ``changes`` deep-updated on."""
    cfg = protocol_config(name, tuning=True).to_dict()
    for key in ("method", "method_params"):
        cfg.pop(key, None)
    return deep_update(cfg, changes), get_protocol(name).budget


def settings() -> dict[str, tuple[dict, str]]:
    return {
        "pmnist10": protocol_setting("pmnist10"),
        "pmnist10-common": protocol_setting("pmnist10-common"),
        "pmnist10-domain": protocol_setting("pmnist10-domain"),
        "split-mnist": protocol_setting("split-mnist"),
        "split-mnist-class": protocol_setting("split-mnist-class"),
        "split-fmnist-class": protocol_setting("split-fmnist-class"),
        "class-common": (CLASS_COMMON, "epochs"),
        # HAT's weakness shows after task 5: its settings run every task of the protocols
        "pmnist10-all-tasks": protocol_setting("pmnist10", stream={"tasks": 10}),
        "pmnist10-common-all-tasks": protocol_setting("pmnist10-common", stream={"tasks": 10}),
        "pmnist10-domain-all-tasks": protocol_setting("pmnist10-domain", stream={"tasks": 10}),
    }


PER_SAMPLE = ["sampled", "empirical"]
#: the streams at their full length (EWC's penalty sums one term per task: its best strength
#: falls as the stream grows, so the 5-task proxies choose it too strong for 10 tasks)
FULL_LENGTH = ["pmnist10-all-tasks", "pmnist10-common-all-tasks", "pmnist10-domain-all-tasks", "split-mnist"]
#: key -> (the method, its settings, the parts of its grid; each part a Cartesian grid)
GRIDS: dict[str, tuple[str, list[str], list[dict]]] = {
    # EWC, stage 1: the Fisher estimate (and a first lambda) on the protocols' tuning proxies
    "ewc": ("ewc", ["pmnist10", "pmnist10-common", "pmnist10-domain", "split-mnist"], [
        {"fisher": PER_SAMPLE, "lam": [1, 3, 10, 30]},
        {"fisher": ["empirical_batch"], "lam": [30, 100, 300, 1000]},  # ~1/batch of the per-sample scale
    ]),
    "er": ("er", ["split-mnist-class", "split-fmnist-class", "pmnist10-domain", "class-common"], [
        {"buffer_policy": ["reservoir", "class_balanced", "task_balanced"], "buffer_update": ["online", "task_end"]},
    ]),
    "derpp": ("derpp", ["split-mnist-class", "split-fmnist-class", "pmnist10-domain", "class-common"], [
        {"buffer_policy": ["reservoir", "class_balanced", "task_balanced"], "buffer_update": ["online"],
         "logits_at": ["insert", "task_end"], "replay_batches": [1, 2]},
        {"buffer_policy": ["reservoir", "class_balanced", "task_balanced"], "buffer_update": ["task_end"],
         "replay_batches": [1, 2]},  # logits are taken at the insertion, the task's end
    ]),
    "hat": ("hat", ["pmnist10-all-tasks", "pmnist10-common-all-tasks"], [
        {"c": [0.75, 2, 4], "anneal_cycles": [1, 8]},
    ]),
}
#: stage 2, with the Fisher stage 1 chose: lambda (EWC), lambda and gamma (online EWC) on the
#: full-length streams; stage 3, at what stage 2 chose: whether a single shared head is
#: consolidated too (Avalanche's EWC penalises every parameter), on the one full-length
#: setting with a shared head (with a head per task it changes nothing)
LATER = {
    "ewc-lam": lambda c: ("ewc", FULL_LENGTH, [{"fisher": [_fisher(c)], "lam": _lams(_fisher(c))}]),
    "online-ewc": lambda c: ("online-ewc", FULL_LENGTH, [{"fisher": [_fisher(c)], "lam": _lams(_fisher(c)), "gamma": [0.9, 1.0]}]),
    "ewc-head": lambda c: ("ewc", ["pmnist10-domain-all-tasks"], [{**_single(c["ewc-lam"]), "consolidate_head": [False, True]}]),
    "online-ewc-head": lambda c: ("online-ewc", ["pmnist10-domain-all-tasks"],
                                  [{**_single(c["online-ewc"]), "consolidate_head": [False, True]}]),
}
#: what each stage needs chosen before it
NEEDS = {"ewc-lam": "ewc", "online-ewc": "ewc", "ewc-head": "ewc-lam", "online-ewc-head": "online-ewc"}


def _fisher(chosen: dict) -> str:
    return chosen["ewc"]["params"]["fisher"]


def _single(choice: dict) -> dict:
    """A stage's choice as a one-point grid."""
    return {k: [v] for k, v in choice["params"].items()}


def _lams(fisher: str) -> list[float]:
    return [300, 1000, 3000, 10000] if fisher == "empirical_batch" else [3, 10, 30, 100]


def grid_of(key: str, out: Path) -> tuple[str, list[str], list[dict]]:
    if key in LATER:
        path = out / "choices.json"
        if not path.is_file():  # the committed copy holds it beside runs/, not in it
            path = out.parent / "choices.json"
        chosen = json.loads(path.read_text()) if path.is_file() else {}
        if NEEDS[key] not in chosen:
            raise SystemExit(f"{key}'s grid uses what {NEEDS[key]} chose: run `choose` after {NEEDS[key]}'s runs")
        return LATER[key](chosen)
    return GRIDS[key]


def _flag(values: list) -> str:
    return ",".join(str(v) for v in values)


def tune_command(method: str, setting: str, grid: dict, out: Path, where: Path) -> list[str]:
    cfg, budget = settings()[setting]
    path = out / "configs" / f"{setting}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=True))
    cmd = [sys.executable, "-m", "anpyc", "tune", "--method", method, "--config", str(path), "--budget", budget,
           "--threads", "1", "--quiet", "--out", str(where)]
    for key, values in grid.items():
        cmd += ["--param", f"{key}={_flag(values)}"]
    return cmd


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    jobs = []
    for key in args.methods.split(","):
        method, names, parts = grid_of(key, out)
        for setting in names:
            for k, grid in enumerate(parts):
                where = out / key / setting / f"part{k}"
                if not (where / "tune.json").is_file():
                    jobs.append(tune_command(method, setting, grid, out, where))
    log = out / "commands.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for cmd, rc in zip(jobs, pool.map(lambda c: subprocess.run(c, check=False).returncode, jobs)):
            with log.open("a") as f:
                f.write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} rc={rc} {' '.join(cmd[1:])}\n")
            if rc:
                print(f"failed ({rc}): {' '.join(cmd)}", file=sys.stderr)
    return 0


def _key(params: dict, names: list[str]) -> str:
    return ", ".join(f"{n} {params[n]}" for n in names)


def choose(out: Path, method: str) -> dict | None:
    _, names, parts = grid_of(method, out)
    knobs = list(dict.fromkeys(k for part in parts for k in part))
    val: dict[str, dict[str, float | None]] = {}
    test: dict[str, dict[str, float | None]] = {}
    order: list[str] = []
    full: dict[str, dict] = {}
    runs = 0
    for setting in names:
        for k in range(len(parts)):
            path = out / method / setting / f"part{k}" / "tune.json"
            if not path.is_file():
                return None
            for row in json.loads(path.read_text())["points"]:
                params = {n: row["params"].get(n, "-") for n in knobs}
                key = _key(params, knobs)
                if key not in order:
                    order.append(key)
                    full[key] = row["params"]
                val.setdefault(key, {})[setting] = row["val_avg_acc"]
                test.setdefault(key, {})[setting] = row["test_avg_acc"]
                runs += 1
    mean = {k: (sum(v[s] for s in names) / len(names) if all(v.get(s) is not None for s in names) else None)
            for k, v in val.items()}
    best = max((k for k in order if mean[k] is not None), key=lambda k: (mean[k], -order.index(k)))
    per_setting = {s: max((k for k in order if val[k].get(s) is not None), key=lambda k: (val[k][s], -order.index(k)))
                   for s in names}
    return {"method": method, "settings": names, "knobs": knobs, "order": order, "val": val, "test": test,
            "mean_val": mean, "best": best, "params": {n: full[best][n] for n in knobs if n in full[best]},
            "best_per_setting": per_setting, "runs": runs}


def markdown(c: dict) -> str:
    names = c["settings"]
    head = "| point | " + " | ".join(names) + " | mean val ACC % | mean test ACC % (report only) |"
    lines = [f"# {c['method']}: validation ACC % on each setting (seed 0)", "",
             f"{c['runs']} validation runs; chosen: **{c['best']}** (highest mean validation ACC).", "",
             head, "|" + "---|" * (len(names) + 3)]
    for key in c["order"]:
        vals = [c["val"][key].get(s) for s in names]
        tests = [c["test"][key].get(s) for s in names]
        cells = [("diverged" if v is None else f"{100 * v:.2f}") + (" *" if c["best_per_setting"][s] == key else "")
                 for v, s in zip(vals, names)]
        m = c["mean_val"][key]
        t = sum(tests) / len(tests) if all(x is not None for x in tests) else None
        mark = "**" if key == c["best"] else ""
        lines.append(f"| {mark}{key}{mark} | " + " | ".join(cells) + f" | {'-' if m is None else f'{100 * m:.2f}'} | "
                     f"{'-' if t is None else f'{100 * t:.2f}'} |")
    lines += ["", "`*`: the best point of that setting alone."]
    return "\n".join(lines) + "\n"


def cmd_choose(args: argparse.Namespace) -> int:
    out, dest = Path(args.out), Path(args.write)
    dest.mkdir(parents=True, exist_ok=True)
    previous = json.loads((dest / "choices.json").read_text()) if (dest / "choices.json").is_file() else {}
    for method in [*GRIDS, *LATER]:
        if method in LATER and "ewc" not in previous:
            continue
        c = choose(out, method)
        if c is None:
            continue
        (dest / f"{method}.md").write_text(markdown(c))
        previous[method] = {"params": c["params"], "mean_val_acc": c["mean_val"][c["best"]], "runs": c["runs"],
                            "settings": c["settings"]}
        for tune_json in (out / method).rglob("tune.json"):
            rel = tune_json.parent.relative_to(out)
            (dest / "runs" / rel).mkdir(parents=True, exist_ok=True)
            for name in ("tune.json", "tune.md"):
                shutil.copy2(tune_json.parent / name, dest / "runs" / rel / name)
        print(f"{method}: {c['best']} (mean val {100 * c['mean_val'][c['best']]:.2f}%, {c['runs']} runs)")
        (dest / "choices.json").write_text(json.dumps(previous, indent=1, sort_keys=True) + "\n")
        shutil.copy2(dest / "choices.json", out / "choices.json")
    for setting, (cfg, budget) in settings().items():
        (dest / "configs").mkdir(exist_ok=True)
        (dest / "configs" / f"{setting}.yaml").write_text(f"# budget: {budget}\n" + yaml.safe_dump(cfg, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--methods", default="ewc,hat,er,derpp", help=f"of {', '.join([*GRIDS, *LATER])}")
    p_run.add_argument("--out", required=True)
    p_run.add_argument("--jobs", type=int, default=2)
    p_choose = sub.add_parser("choose")
    p_choose.add_argument("--out", required=True)
    p_choose.add_argument("--write", required=True)
    args = parser.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_choose(args)


if __name__ == "__main__":
    raise SystemExit(main())
