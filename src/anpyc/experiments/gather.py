"""``anpyc gather DIR``: the summary of a sweep whose jobs ran without the command waiting.

``anpyc compare ... --executor slurm --no-wait`` (or ``bench``) submits its jobs and returns;
``anpyc gather DIR`` later reads back every finished run of the comparison (or suite) in
``DIR``, lists the others (failed: their one-line error and exit code; still queued or
running; never run), and writes ``summary.json``, ``summary.md`` and the plot (a suite: also
``bench.json`` and ``bench.md``), exactly as the command would have had it waited. It submits
nothing; ``wait=True`` (``--wait``) first waits for the jobs still queued or running. Running
the submitting command again does the same and also submits what is missing.

Example:
    >>> summary = gather("runs/cmp")  # doctest: +SKIP
    >>> [f["error"] for f in summary["failed"]]  # doctest: +SKIP
    []
"""

from __future__ import annotations

from pathlib import Path

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.errors import OutputError
from anpyc.experiments.bench import run_suite
from anpyc.experiments.compare import compare
from anpyc.experiments.executors import ExecutorConfig, ledger_kind


def gather(out_dir: str | Path, wait: bool = False, quiet: bool = False) -> dict:
    """The summary of the comparison or suite in ``out_dir`` from the runs its jobs finished;
    ``wait``: wait for the jobs still queued or running first."""
    out = rundir.existing_dir(out_dir)
    if not (out / rundir.COMPARE).is_file():
        if (out / rundir.TUNE).is_file():
            raise OutputError(f"{out} holds a tuning: run its tune command again (without --overwrite) to gather it")
        raise OutputError(f"{out} holds no comparison to gather (no {rundir.COMPARE})")
    spec = rundir.read_yaml(out / rundir.COMPARE)
    executor = ExecutorConfig(kind=ledger_kind(out), wait=wait, submit=False)
    bench = (spec.get("sweep") or {}).get("bench")
    if bench:
        return run_suite(bench["name"], out, bench.get("seeds"), bench.get("methods"), bench.get("overrides"),
                         quiet=quiet, presets=bench.get("presets", True), params=bench.get("params"),
                         tensorboard=bench.get("tensorboard", False), budget=bench.get("budget"), resume=True,
                         executor=executor, allow_dirty=bench.get("allow_dirty", False))
    aliases = {label: (m, dict(p)) for label, (m, p) in (spec.get("aliases") or {}).items()}
    return compare(RunConfig.from_dict(spec["base"]), list(spec["methods"]), list(spec["seeds"]), out,
                   params=spec.get("params") or {}, quiet=quiet, aliases=aliases, budget=spec.get("budget", "passes"),
                   resume=True, executor=executor)
