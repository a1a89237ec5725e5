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

from anpyc import rundir
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

REFERENCE_ANPYC = {
    "lam": 3.0, "protection": "soft", "task_masks": False, "prune_criterion": "taylor", "taylor_form": "reference",
    "keep_schedule": "reference", "prune_step": 0.1, "retrain_epochs": 1,
}


@dataclass(frozen=True)
class Benchmark:
    description: str
    base: dict
    methods: tuple[str, ...]
    seeds: int = 1
    params: dict = field(default_factory=dict)  # method -> hyper-parameters
    aliases: dict = field(default_factory=dict)  # label -> (method, params): variants of one method


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
        "the paper's setting: 10-task permuted MNIST, 784-64-32 MLP, SGD lr 0.02, batch 256, "
        "ANPyC as the reference code (1 retraining epoch per 10% pruning step instead of 30)",
        {**PMNIST, "model": {"hidden": [64, 32]}, "train": {"epochs": 1, "lr": 0.02, "batch_size": 256}},
        ("anpyc", "finetune", "joint"),
        aliases={"anpyc-reference": ("anpyc", REFERENCE_ANPYC)},
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


@rundir.releases_locks  # OUT stays locked while bench.json and bench.md are written after the runs
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
) -> dict:
    """Run benchmark ``name``; returns the summary written to ``out_dir/bench.json``.

    Each method runs with its shipped preset for the benchmark's stream (hyper-parameters
    chosen on validation data, ``anpyc tune``) unless ``presets=False`` or the benchmark fixes
    its parameters; the parameters used are recorded in ``bench.json``. ``jobs`` runs that
    many (method, seed) runs in parallel processes.
    """
    from anpyc.compare import compare
    from anpyc.config import deep_update
    from anpyc.report.tables import summary_markdown

    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    bench = BENCHMARKS[name]
    chosen = list(methods) if methods else [*bench.methods, *bench.aliases]
    known = [m for m in chosen if m in METHODS or m in bench.aliases]
    for m in sorted(set(chosen) - set(known)):
        log.warning("bench %s: method %r is not available in this build; skipped", name, m)
    base = RunConfig.from_dict(deep_update(bench.base, overrides or {}))
    params = method_params(bench, known, base.stream.benchmark, presets)
    start = _dt.datetime.now(_dt.UTC)
    summary = compare(
        base, known, list(range(seeds or bench.seeds)), out_dir,
        params=params,
        aliases={a: bench.aliases[a] for a in known if a in bench.aliases},
        quiet=quiet, overwrite=overwrite, jobs=jobs,
    )
    host = machine()
    summary["bench"] = {
        "name": name,
        "description": bench.description,
        "command": "anpyc " + " ".join(sys.argv[1:]) if sys.argv and "anpyc" in sys.argv[0] else f"anpyc bench {name}",
        # the runs' torch threads (train.threads), not this parent process's
        "machine": {**host, "torch_threads": base.train.threads or host["torch_threads"]},
        "date": start.isoformat(timespec="seconds"),
        "method_params": params,
        "jobs": jobs,
    }
    out = Path(out_dir)
    write_json(out / "bench.json", summary)
    text = (
        f"{summary_markdown(summary)}\n{bench.description}.\n\n"
        f"Command: `{summary['bench']['command']}`  \nMachine: {summary['bench']['machine']}  \nDate: {summary['bench']['date']}\n"
    )
    atomic_write_text(out / "bench.md", text)
    return summary
