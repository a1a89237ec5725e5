"""Named benchmarks: fixed protocols run through :func:`anpyc.compare.compare`.

``anpyc bench NAME --out DIR`` writes ``bench.json`` (the summary, the exact command, the
machine and the date) and ``bench.md``, and prints the table. Hyper-parameters in these
definitions were chosen on the validation split (docs/anpyc.md says how).

Example:
    >>> sorted(BENCHMARKS)[:2]
    ['long', 'pmnist10']
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.io import atomic_write_text, write_json
from anpyc.methods import METHODS

log = logging.getLogger(__name__)

#: The shared protocol of the measurements in ../shared/anpyc-method.md: permuted MNIST,
#: task 1 unpermuted, 784-256-256 ReLU MLP, one head per task, plain SGD lr 0.1, batch 128,
#: one epoch per task.
PMNIST = {
    "stream": {"benchmark": "permuted-mnist", "tasks": 10},
    "model": {"hidden": [256, 256]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 128, "optimizer": "sgd"},
}



def reference_preset() -> tuple[dict, dict]:
    """The shipped ``anpyc-reference`` preset as ``(base config, method_params)``: what
    ``anpyc bench reference`` runs, exactly (its stream, model and training; ANPyC as the
    authors' code)."""
    from anpyc.presets import load_preset

    data = load_preset("anpyc-reference")
    return {k: data[k] for k in ("stream", "model", "train", "scenario") if k in data}, dict(data["method_params"])


REFERENCE_BASE, REFERENCE_ANPYC = reference_preset()


@dataclass(frozen=True)
class Benchmark:
    description: str
    base: dict
    methods: tuple[str, ...]
    seeds: int = 1
    params: dict = field(default_factory=dict)  # method -> hyper-parameters
    aliases: dict = field(default_factory=dict)  # label -> (method, params): variants of one method
    budget: str = "passes"  # equal training passes per task; "epochs" only to reproduce a paper's protocol


BENCHMARKS: dict[str, Benchmark] = {
    "quick": Benchmark(
        "5-task permuted MNIST, 5000 training examples per task (a minute or two on a laptop CPU)",
        {**PMNIST, "stream": {"benchmark": "permuted-mnist", "tasks": 5, "subsample": 5000, "test_subsample": 2000}},
        ("anpyc", "finetune", "joint"),
    ),
    "pmnist10": Benchmark(
        "10-task permuted MNIST, full data, 784-256-256, SGD lr 0.1, batch 128, 1 epoch per task",
        PMNIST,
        ("anpyc", "finetune", "joint", "ewc", "online-ewc", "si", "mas", "lwf", "packnet"),
    ),
    "reference": Benchmark(
        "the paper's setting, exactly the shipped anpyc-reference preset: 10-task permuted MNIST, "
        "784-64-32 MLP, SGD lr 0.02, batch 256, 30 epochs per task, ANPyC as the reference code "
        "(30 retraining epochs per 10% pruning step; hours on a CPU)",
        REFERENCE_BASE,
        ("anpyc", "finetune", "joint"),
        aliases={"anpyc-reference": ("anpyc", REFERENCE_ANPYC)},
        budget="epochs",  # the authors' protocol: each pruning step retrains on top of the epoch
    ),
    "long": Benchmark(
        "long permuted-MNIST sequence (50 tasks unless --tasks), 784-256-256, 1 epoch per task, "
        "test accuracy on 2000 images per task",
        {**PMNIST, "stream": {"benchmark": "permuted-mnist", "tasks": 50, "test_subsample": 2000, "val_subsample": 1000}},
        ("anpyc", "finetune", "ewc", "online-ewc", "si", "mas", "packnet"),
    ),
}


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
    }


def method_params(bench: Benchmark, methods: list[str], stream: str, presets: bool = True) -> dict[str, dict]:
    """Hyper-parameters per method: the shipped preset for ``stream`` (when ``presets``)
    updated with the benchmark's own, else the method's defaults (no entry).

    Example:
        >>> method_params(BENCHMARKS["long"], ["ewc", "finetune"], "permuted-mnist")["ewc"]["lam"] > 0
        True
    """
    from anpyc.presets import with_presets

    methods = [m for m in methods if m in METHODS]  # aliases carry their own parameters
    if not presets:
        return {m: dict(bench.params[m]) for m in methods if m in bench.params}
    return with_presets(methods, stream, bench.params)


def _relative_to(path: str | None, base: Path) -> str | None:
    """``path`` relative to ``base`` where it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path


def bench_command(name: str, out_dir: str | Path, argv: list[str] | None = None) -> str:
    """The command line that ran benchmark ``name``, with its ``--out`` relative to the working
    directory (a committed bench.json must not carry a machine path).

    Example:
        >>> bench_command("pmnist10", "bench-out/p", ["anpyc", "bench", "pmnist10", "--out", "/abs/bench-out/p"])
        'anpyc bench pmnist10 --out bench-out/p'
    """
    argv = list(sys.argv if argv is None else argv)
    rel = Path(os.path.relpath(Path(out_dir).resolve(), Path.cwd().resolve())).as_posix()
    if not argv or "anpyc" not in Path(argv[0]).name or "bench" not in argv[1:]:
        return f"anpyc bench {name} --out {rel}"  # called from Python: the equivalent command
    args, out = [], False
    for a in argv[1:]:
        if out:
            args.append(rel)
            out = False
        elif a == "--out":
            args.append(a)
            out = True
        elif a.startswith("--out="):
            args.append(f"--out={rel}")
        else:
            args.append(a)
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", rel]
    return "anpyc " + " ".join(args)


@dataclass(frozen=True)
class BenchPlan:
    """What a benchmark run will do: its base config, labels, parameters per label, aliases
    and budget (resolved, nothing run)."""

    bench: Benchmark
    base: RunConfig
    methods: list[str]
    params: dict[str, dict]
    aliases: dict[str, tuple[str, dict]]
    budget: str

    def configs(self) -> dict[str, RunConfig]:
        """The config each label runs with (before its seed is set), as :func:`compare` runs it."""
        from anpyc.compare import job_configs

        return job_configs(self.base, self.methods, self.params, self.aliases, self.budget)


def bench_plan(
    name: str, methods: list[str] | None = None, overrides: dict[str, Any] | None = None, presets: bool = True,
    params: dict[str, dict] | None = None, budget: str | None = None,
) -> BenchPlan:
    """Resolve benchmark ``name`` (methods, base config with ``overrides``, presets, explicit
    ``params``, budget) without running it.

    Example:
        >>> bench_plan("reference", ["anpyc-reference"]).configs()["anpyc-reference"].method_params.reinit
        'zero'
    """
    from anpyc.config import deep_update

    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    chosen = list(methods) if methods else [*bench.methods, *bench.aliases]
    if overrides and "method" in overrides:
        raise ConfigError("bench runs its own methods: use --methods, not a config file's method")
    known = [m for m in chosen if m in METHODS or m in bench.aliases]
    for m in sorted(set(chosen) - set(known)):
        log.warning("bench %s: method %r is not available in this build; skipped", name, m)
    base = RunConfig.from_dict(deep_update(bench.base, overrides or {}))
    chosen_params = method_params(bench, known, base.stream.benchmark, presets)
    for m, given in (params or {}).items():  # explicit --param wins over presets
        chosen_params[m] = {**chosen_params.get(m, {}), **given}
    aliases = {a: bench.aliases[a] for a in known if a in bench.aliases}
    return BenchPlan(bench, base, known, chosen_params, aliases, budget or bench.budget)


def run_benchmark(
    name: str,
    out_dir: str | Path,
    seeds: int | None = None,
    methods: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    presets: bool = True,
    params: dict[str, dict] | None = None,
    tensorboard: bool = False,
    budget: str | None = None,
) -> dict:
    """Run benchmark ``name``; returns the summary written to ``out_dir/bench.json``.

    Each method runs with its shipped preset for the benchmark's stream (hyper-parameters
    chosen on validation data, ``anpyc tune``) unless ``presets=False`` or the benchmark fixes
    its parameters; the parameters used are recorded in ``bench.json``. ``jobs`` runs that
    many (method, seed) runs in parallel processes.
    """
    from anpyc.compare import compare
    from anpyc.report.tables import summary_markdown

    plan = bench_plan(name, methods, overrides, presets, params, budget)
    bench, base, known, params = plan.bench, plan.base, plan.methods, plan.params
    start = _dt.datetime.now(_dt.UTC)
    summary = compare(
        base, known, list(range(base.seed, base.seed + (seeds or bench.seeds))), out_dir,
        params=params, aliases=plan.aliases,
        quiet=quiet, overwrite=overwrite, jobs=jobs, tensorboard=tensorboard, budget=plan.budget,
    )
    host = machine()
    summary["bench"] = {
        "name": name,
        "description": bench.description,
        "command": bench_command(name, out_dir),
        # the runs' torch threads (train.threads), not this parent process's
        "machine": {**host, "torch_threads": base.train.threads or host["torch_threads"]},
        "date": start.isoformat(timespec="seconds"),
        "method_params": params,
        "jobs": jobs,
    }
    out = Path(out_dir)
    for entry in summary["methods"].values():  # run dirs relative to OUT: no machine path in bench.json
        entry["runs"] = [_relative_to(r, out) for r in entry.get("runs", [])]
    write_json(out / "bench.json", summary)
    text = (
        f"{summary_markdown(summary)}\n{bench.description}.\n\n"
        f"Command: `{summary['bench']['command']}`  \nMachine: {summary['bench']['machine']}  \nDate: {summary['bench']['date']}\n"
    )
    atomic_write_text(out / "bench.md", text)
    return summary
