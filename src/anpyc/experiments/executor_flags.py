"""The ``--executor`` flags of compare, bench, tune and tune-all, apart from
:mod:`anpyc.experiments.executors` so that building the command line imports no torch (a
mistyped flag or name fails at once).

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_executor_flags(p)
    >>> p.parse_args(["--executor", "slurm", "--time", "60"]).executor_kind
    'slurm'
"""

from __future__ import annotations

import argparse

#: where a sweep's runs go: this machine's process pool, submitit's local path, or Slurm
EXECUTORS = ("local", "submitit-local", "slurm")


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--executor`` flags of compare, bench, tune and tune-all."""
    g = parser.add_argument_group("executor (where the runs go: this machine, or a Slurm cluster through submitit)")
    g.add_argument("--executor", dest="executor_kind", default=None, choices=EXECUTORS,
                   help="local (default: this machine, --jobs processes), slurm (a job per run, needs anpyc[cluster]), "
                   "submitit-local (submitit's path on this machine, --jobs at a time)")
    g.add_argument("--partition", dest="executor_partition", default=None, help="Slurm partition (sbatch --partition)")
    g.add_argument("--time", dest="executor_time", default=None,
                   help="wall-clock limit per job (sbatch --time): minutes or [D-]HH:MM:SS; required with slurm")
    g.add_argument("--cpus-per-job", dest="executor_cpus_per_job", type=int, default=None,
                   help="CPU cores per job (sbatch --cpus-per-task, divided among --nproc-per-job tasks)")
    g.add_argument("--gpus-per-job", dest="executor_gpus_per_job", type=int, default=None, help="GPUs per job (sbatch --gpus-per-node)")
    g.add_argument("--nproc-per-job", dest="executor_nproc_per_job", type=int, default=None,
                   help="torch.distributed processes per job, one Slurm task per GPU (sbatch --ntasks-per-node)")
    g.add_argument("--array-parallelism", dest="executor_array_parallelism", type=int, default=None,
                   help="jobs of the array running at once (sbatch --array=0-N%%P)")
    g.add_argument("--slurm", dest="executor_slurm", action="append", default=[], metavar="KEY[=VALUE]",
                   help="any other sbatch option, repeatable: --slurm account=proj --slurm mem=16G --slurm exclusive")
    g.add_argument("--job-setup", dest="executor_setup", action="append", default=[], metavar="COMMAND",
                   help="shell line run before each job, repeatable (e.g. 'source .venv/bin/activate')")
    g.add_argument("--no-wait", dest="executor_no_wait", action="store_true",
                   help="submit and return; `anpyc gather OUT` (or the same command again) builds the summary later")
