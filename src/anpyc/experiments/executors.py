"""Executors: where a sweep's (method, seed) jobs run.

``compare``, ``bench``, ``tune`` and ``tune-all`` take ``--executor``:

* ``local`` (the default): this machine, one job after another or ``--jobs N`` processes
  (:mod:`anpyc.experiments.jobs`);
* ``slurm``: one Slurm job per run, submitted through `submitit`_ as one job array
  (``--partition``, ``--time``, ``--cpus-per-job``, ``--gpus-per-job``, ``--array-parallelism``,
  any other sbatch option with ``--slurm KEY=VALUE``; or a config file's ``executor:`` section);
* ``submitit-local``: submitit's local executor, the same code path as ``slurm`` on this
  machine (each job a process of its own, ``--jobs N`` at a time): for tests and CI.

submitit comes with the optional extra ``anpyc[cluster]``; without it a submitit executor is a
one-line error (exit code 2) that names the extra.

**A job list that makes submission idempotent.** Every job has a fixed run directory (a
comparison's ``OUT/<method>/seed_<s>``, a tuning's ``OUT/point_<k>/seed_<s>``) that only its
resolved config may use (a directory started with another config is refused). A sweep keeps
its submitted jobs in ``OUT/jobs.json`` and submitit's files in ``OUT/submitit/``. Submitting
the same sweep again (the same command) sends only what is missing:

* a finished run (``metrics.json``) is read back, not submitted;
* a run whose directory is locked by a live process (:mod:`anpyc.rundir`), or whose Slurm job
  is still queued or running, is waited for, not submitted again;
* any other run is submitted: a killed one continues from its newest checkpoint, a new one
  starts. A job takes its run directory's lock before it looks at it, so no run is ever
  trained by two jobs at once.

**Pre-emption.** A job is submitit-checkpointable: on Slurm's pre-emption or time-limit
signal (``USR2``, sent ``signal_delay_s`` before the end) submitit calls
:meth:`SweepJob.checkpoint`, which requeues the job; the requeued job continues from the
run's newest checkpoint (written after every task, and every ``--checkpoint-every`` epochs),
so its results are those of an uninterrupted run.

**Gathering.** The summary, tables and report are built when the jobs end; a failed job is
listed with its one-line error and exit code (2: an error of the input or the run, 1: a bug,
none: the process died). With ``--no-wait`` the command submits and returns; ``anpyc gather
OUT`` (or the same command again) builds the summary later.

**Multi-GPU jobs.** ``--nproc-per-job N`` makes each job one torch.distributed run of ``N``
tasks (one per GPU, ``--ntasks-per-node N``): every task reads its rank and the rendezvous from
the Slurm environment (:func:`anpyc.parallel.launch.task_rendezvous`).

.. _submitit: https://github.com/facebookincubator/submitit

Example:
    >>> cfg = ExecutorConfig.from_dict({"kind": "slurm", "time": "1:30:00", "partition": "gpu"})
    >>> cfg.minutes, slurm_parameters(cfg, "anpyc-demo")["partition"]
    (90, 'gpu')
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anpyc import rundir
from anpyc.config import from_dict, load_mapping
from anpyc.errors import ConfigError, OutputError, one_line
from anpyc.experiments.executor_flags import EXECUTORS, add_executor_flags  # noqa: F401 (re-exported)
from anpyc.experiments.jobs import (
    Job,
    JobFailure,
    check_resumable,
    exit_code_of,
    run_job,
    run_jobs,
)
from anpyc.io import write_json
from anpyc.parallel import launch

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    from submitit import LocalExecutor, LocalJob, SlurmExecutor, SlurmJob
    from submitit.helpers import DelayedSubmission

log = logging.getLogger(__name__)

CLUSTER_EXTRA = "anpyc[cluster]"
#: sbatch options an executor flag sets (``--slurm`` must not set them a second way)
OWN_OPTIONS = {"partition": "--partition", "time": "--time", "cpus_per_task": "--cpus-per-job",
               "gpus_per_node": "--gpus-per-job", "ntasks_per_node": "--nproc-per-job",
               "array": "--array-parallelism", "nodes": "--nproc-per-job (one node per job)"}
#: submitit-local jobs without ``--time``: a week (submitit's own default is 2 minutes)
LOCAL_TIME_MIN = 7 * 24 * 60
#: seconds between two looks at the jobs (Slurm: submitit asks ``sacct`` at most once a minute)
POLL_S = {"submitit-local": 0.5, "slurm": 15.0, "local": 2.0}
#: Slurm states of a job that has not ended
QUEUED_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                           "RESIZING", "SUSPENDED", "COMPLETING", "PREEMPTED", "STAGE_OUT", "SIGNALING"})


# ----------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class ExecutorConfig:
    """Where a sweep's jobs run, and with what (the ``--executor`` flags, or a config file's
    ``executor:`` section; flags win). ``time``: the wall-clock limit per job in Slurm's
    formats (minutes, ``HH:MM:SS``, ``D-HH:MM``...); ``slurm``: more sbatch options
    (``{"account": "proj", "mem": "16G"}`` writes ``#SBATCH --account=proj``...);
    ``setup``: shell lines run before each job (``module load ...``, activating an
    environment); ``parallel``: submitit-local jobs at a time; ``submit=False``: submit
    nothing, only gather (``anpyc gather``)."""

    kind: str = "local"
    partition: str | None = None
    time: str | None = None
    cpus_per_job: int | None = None
    gpus_per_job: int | None = None
    nproc_per_job: int = 1
    array_parallelism: int | None = None
    slurm: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    wait: bool = True
    parallel: int = 1
    submit: bool = True

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        for name, low in (("cpus_per_job", 1), ("gpus_per_job", 0), ("nproc_per_job", 1), ("array_parallelism", 1),
                          ("parallel", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        if self.time is not None:
            slurm_minutes(self.time)  # a bad time fails here
        self._check_kind()
        for key in self.slurm:
            own = OWN_OPTIONS.get(_option(key))
            if own:
                raise ConfigError(f"--slurm {key}=...: set it with {own}")
        if self.cpus_per_job and self.cpus_per_job % self.nproc_per_job:
            raise ConfigError(f"--cpus-per-job {self.cpus_per_job} is not a multiple of --nproc-per-job {self.nproc_per_job}")

    def _check_kind(self) -> None:
        if not self.submit:
            return  # gathering only: nothing is submitted
        if self.kind == "local":
            given = [flag for flag, on in (("--partition", self.partition), ("--time", self.time),
                                           ("--cpus-per-job", self.cpus_per_job), ("--gpus-per-job", self.gpus_per_job),
                                           ("--nproc-per-job", self.nproc_per_job > 1), ("--slurm", self.slurm),
                                           ("--array-parallelism", self.array_parallelism), ("--job-setup", self.setup),
                                           ("--no-wait", not self.wait)) if on]
            if given:
                raise ConfigError(f"{given[0]} needs --executor slurm or submitit-local")
        elif self.kind == "submitit-local":
            given = [f for f, on in (("--partition", self.partition), ("--slurm", self.slurm),
                                     ("--array-parallelism", self.array_parallelism)) if on]
            if given:
                raise ConfigError(f"{given[0]} is a Slurm option: it needs --executor slurm")
        elif self.time is None:
            raise ConfigError("--executor slurm needs --time, the wall-clock limit of one job (e.g. 2:00:00)")
        if self.kind == "slurm" and self.parallel > 1:
            raise ConfigError("--jobs is for this machine; on Slurm --array-parallelism limits the jobs running at once")

    @classmethod
    def from_dict(cls, data: dict | None) -> ExecutorConfig:
        """Typed and checked (one-line :class:`~anpyc.errors.ConfigError` otherwise)."""
        data = dict(data or {})
        if isinstance(data.get("time"), int) and not isinstance(data["time"], bool):
            data["time"] = str(data["time"])
        return from_dict(cls, data, "executor")

    @property
    def uses_submitit(self) -> bool:
        return self.kind != "local"

    @property
    def minutes(self) -> int | None:
        """``time`` in whole minutes (``None``: not given)."""
        return None if self.time is None else slurm_minutes(self.time)


def slurm_minutes(text: str) -> int:
    """A Slurm time limit in whole minutes: ``90``, ``30:00`` (MM:SS), ``2:00:00``,
    ``1-12`` (D-HH), ``1-12:30`` (D-HH:MM), ``1-12:30:00``.

    Example:
        >>> slurm_minutes("90"), slurm_minutes("1:30:00"), slurm_minutes("2-00:00:00"), slurm_minutes("1:30")
        (90, 90, 2880, 2)
    """
    raw = str(text).strip()
    days, _, rest = raw.rpartition("-") if "-" in raw else ("0", "", raw)
    try:
        parts = [int(p) for p in rest.split(":")]
        d = int(days)
    except ValueError:
        raise ConfigError(f"--time {text!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)") from None
    if "-" in raw:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = (parts + [0, 0])[:3]
    else:  # MM, MM:SS, HH:MM:SS
        h, m, s = ([0, 0] + parts)[-3:] if len(parts) == 3 else (0, parts[0], parts[1] if len(parts) > 1 else 0)
    if len(parts) > 3 or min(parts + [d]) < 0:
        raise ConfigError(f"--time {text!r} is not a Slurm time (minutes, HH:MM:SS or D-HH:MM:SS)")
    total = ((d * 24 + h) * 60 + m) * 60 + s
    if total <= 0:
        raise ConfigError(f"--time {text!r} must be more than zero")
    return -(-total // 60)


def _option(key: str) -> str:
    return str(key).strip().lstrip("-").replace("-", "_")


def require_submitit(kind: str) -> ModuleType:
    """The submitit module, or the one-line error that names the extra to install."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--executor {kind} needs submitit: pip install '{CLUSTER_EXTRA}'") from None
    return submitit


def check(executor: ExecutorConfig | None) -> None:
    """Everything about the executor that can fail, before anything is written (a submission
    that cannot start would otherwise leave an output folder holding a sweep that never ran)."""
    if executor is not None and executor.uses_submitit and executor.submit:
        submitit = require_submitit(executor.kind)
        if executor.kind == "slurm" and submitit.SlurmExecutor.affinity() <= 0:  # submitit's own test: srun on PATH
            raise ConfigError("--executor slurm: no srun on this machine (submit from a machine of the Slurm cluster)")


def resubmits(executor: ExecutorConfig | None, out_dir: str | Path | None, marker: str) -> bool:
    """Whether a submitit sweep goes on in ``out_dir`` (it holds ``marker``): submitting the
    same sweep again sends only what is missing."""
    return bool(executor and executor.uses_submitit and out_dir is not None and (Path(out_dir) / marker).is_file())


def slurm_parameters(cfg: ExecutorConfig, name: str) -> dict[str, Any]:
    """submitit's ``SlurmExecutor.update_parameters`` for ``cfg``: one node per job,
    ``--nproc-per-job`` tasks on it (one per GPU), ``--cpus-per-job`` shared among them."""
    params: dict[str, Any] = {"job_name": name, "time": cfg.minutes, "nodes": 1, "ntasks_per_node": cfg.nproc_per_job}
    if cfg.partition:
        params["partition"] = cfg.partition
    if cfg.cpus_per_job:
        params["cpus_per_task"] = cfg.cpus_per_job // cfg.nproc_per_job
    if cfg.gpus_per_job is not None:
        params["gpus_per_node"] = cfg.gpus_per_job
    if cfg.array_parallelism:
        params["array_parallelism"] = cfg.array_parallelism
    if cfg.setup:
        params["setup"] = list(cfg.setup)
    extra = {_option(k): v for k, v in cfg.slurm.items()}
    if "signal_delay_s" in extra:  # submitit's own: seconds between the USR2 signal and the end
        params["signal_delay_s"] = int(extra.pop("signal_delay_s"))
    if extra:
        params["additional_parameters"] = extra
    return params


# ----------------------------------------------------------------------------- the CLI
def executor_from_args(args: argparse.Namespace) -> ExecutorConfig:
    """The executor of a command: its config file's ``executor:`` section, then the flags."""
    config = getattr(args, "config", None)
    data = dict((load_mapping(config).get("executor") or {}) if config else {})
    data["slurm"] = {**dict(data.get("slurm") or {}), **_slurm_options(args.executor_slurm)}
    data["setup"] = [*list(data.get("setup") or []), *args.executor_setup]
    flags = {"kind": args.executor_kind, "partition": args.executor_partition, "time": args.executor_time,
             "cpus_per_job": args.executor_cpus_per_job, "gpus_per_job": args.executor_gpus_per_job,
             "nproc_per_job": args.executor_nproc_per_job, "array_parallelism": args.executor_array_parallelism}
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.executor_no_wait:
        data["wait"] = False
    if getattr(args, "jobs", None) is not None and data.get("kind", "local") != "local":
        data["parallel"] = args.jobs
    return ExecutorConfig.from_dict(data)


def _slurm_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key.strip():
            raise ConfigError(f"--slurm expects KEY=VALUE or KEY, got {item!r}")
        out[key.strip()] = value.strip() if sep else True
    return out


# ----------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class JobOutcome:
    """What a job hands back: nothing to say (the run directory holds the results), or the
    one-line error of the run, its exit code and the exception's class name."""

    method: str
    seed: int
    error: str | None = None
    exit_code: int = 0
    error_type: str | None = None


@dataclass(frozen=True)
class SweepJob:
    """What one submitit job runs: one (method, seed) run into its run directory. A finished
    run is read back, a killed one continues from its newest checkpoint, any other starts;
    the run directory's lock is taken first, so a second copy of the job fails at once and
    touches nothing. ``nproc > 1``: every task of the job runs this and joins one
    torch.distributed group through the Slurm environment. Checkpointable (submitit's
    protocol): pre-empted or out of time, the job is requeued and continues."""

    method: str
    seed: int
    config: Any  # the RunConfig, resolved (budget and seed applied)
    run_dir: str  # absolute: a job's working directory is not the submitter's
    modules: tuple[str, ...] = ()  # imported first: they register the methods
    tensorboard: bool | str = False
    threads: int | None = None
    overwrite: bool = False
    nproc: int = 1
    recorded_budget: dict | None = None  # the budget config was resolved under: written to config.yaml

    def __call__(self) -> JobOutcome:
        _job_logging()
        try:
            launch.import_modules(list(self.modules))
            rdzv = launch.task_rendezvous() if self.nproc > 1 else None
            if rdzv is not None and rdzv.world_size > 1:
                self._distributed(rdzv)
            else:
                self._single()
        except Exception as exc:  # told back as the job's outcome: the others go on
            code = exit_code_of(exc)
            log.error("%s, seed %d failed: %s%s", self.method, self.seed, one_line(exc),
                      "\n" + "".join(traceback.format_exception(exc)).rstrip() if code == 1 else "")
            return JobOutcome(self.method, self.seed, one_line(exc), code, type(exc).__name__)
        return JobOutcome(self.method, self.seed)

    def _job(self) -> Job:
        return Job(self.method, self.seed, self.config, Path(self.run_dir), self.tensorboard, resume=not self.overwrite,
                   recorded_budget=self.recorded_budget)

    def _single(self) -> None:
        import torch

        if self.config.train.threads is None:
            torch.set_num_threads(self.threads or _cores())
        job = self._job()
        with rundir.session():
            rundir.acquire(job.run_dir, create=True)
            run_job(job, overwrite=self.overwrite)

    def _distributed(self, rdzv: launch.Rendezvous) -> None:
        job = self._job()
        rdzv.export()
        with rundir.session():
            if rdzv.rank == 0:
                rundir.acquire(job.run_dir, create=True)
            if not self.overwrite and (job.run_dir / rundir.METRICS).is_file():
                return  # finished: every task sees it, no group is formed
            resume = not self.overwrite and (job.run_dir / rundir.CONFIG).is_file()
            if resume:
                check_resumable(job)
            launch.run_torchrun(self.config, job.run_dir, quiet=True, overwrite=self.overwrite, resume=resume,
                                tensorboard=self.tensorboard, recorded_budget=self.recorded_budget)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """submitit's checkpointing protocol: called on the pre-emption (or time-limit) signal;
        the returned submission is requeued and continues from the newest checkpoint."""
        from submitit.helpers import DelayedSubmission

        log.warning("%s: pre-empted or out of time; requeued, it continues from its newest checkpoint", self.run_dir)
        return DelayedSubmission(dataclasses.replace(self, overwrite=False))


def _job_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("anpyc").setLevel(logging.INFO)


def _cores() -> int:
    """The cores this process may use (a Slurm job's allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- running a sweep
@dataclass
class Execution:
    """The jobs' results ``{(method, seed): RunResult}`` and failures; ``submitted``: with
    ``--no-wait``, what was submitted (nothing is gathered yet)."""

    done: dict[tuple[str, int], Any]
    failures: list[JobFailure]
    submitted: dict | None = None


def execute(
    jobs: list[Job], executor: ExecutorConfig | None, out: Path | None, workers: int = 1, overwrite: bool = False,
    streams: Any = None, quiet: bool = True,
) -> Execution:
    """Run ``jobs`` with ``executor`` (``None``: local): the process pool of
    :func:`~anpyc.experiments.jobs.run_jobs`, or a submitit sweep writing into ``out``."""
    if executor is None or (executor.kind == "local" and executor.submit):
        done, failures = run_jobs(jobs, workers, overwrite=overwrite, streams=streams, quiet=quiet)
        return Execution(done, failures)
    if out is None:
        raise ConfigError(f"--executor {executor.kind} needs an output directory: the jobs write their runs there")
    return _Sweep([_as_run(job) for job in jobs], executor, Path(out), overwrite, quiet).run()


def _as_run(job: Job) -> Job:
    """``job`` with its budget applied to its config: a submitted job carries the config as it
    runs (and as its run directory records it), so it is checked and hashed as such."""
    from anpyc.runner import apply_budget, budget_record

    if job.budget is None:
        return job
    return dataclasses.replace(job, config=apply_budget(job.config, job.budget, job.method_object), budget=None,
                               recorded_budget=budget_record(job.config, job.budget))  # config.yaml records it


#: jobs this process submitted that have not been gathered yet: a second look at the same
#: sweep (tune-all's) waits for them instead of submitting them again
_LIVE: dict[str, Any] = {}


class _Sweep:
    """One submission (or gathering) of a sweep's jobs through submitit."""

    def __init__(self, jobs: list[Job], executor: ExecutorConfig, out: Path, overwrite: bool, quiet: bool) -> None:
        self.jobs, self.cfg, self.out, self.overwrite, self.quiet = jobs, executor, out, overwrite, quiet
        self.folder = out / rundir.JOB_FOLDER
        self.submitit = require_submitit(executor.kind) if executor.uses_submitit and executor.submit else _maybe_submitit()
        self.ledger = {} if overwrite else _read_ledger(out)
        self.ended: dict[str, Any] = {}
        self.submitted: list[str] = []  # job ids this submission sent
        self._executor = None

    def key(self, job: Job) -> str:
        return Path(os.path.relpath(job.run_dir, self.out)).as_posix()

    def run(self) -> Execution:
        self._check_devices()
        waiting, queue, finished = {}, [], 0
        for job in self.jobs:
            found = self._existing(job)
            if found == "finished":
                finished += 1
            elif found is not None:
                waiting[self.key(job)] = found
            else:
                queue.append(job)
        if not self.cfg.submit:  # gathering only: what never ran is listed as not finished
            if self.cfg.wait:
                self._wait(waiting, [])
            return self._collect(pending=waiting)
        if self.cfg.kind == "slurm" or not self.cfg.wait:
            waiting.update(self._submit(queue))
            queue = []
        if not self.cfg.wait:
            return Execution({}, [], self._record(finished, waiting))
        log.info("%s: %d run(s) finished already, %d to wait for, %d to submit", self.out, finished, len(waiting), len(queue))
        self._wait(waiting, queue)
        return self._collect()

    def _check_devices(self) -> None:
        cfg = self.cfg
        cuda = any(str(job.config.train.device).startswith("cuda") for job in self.jobs)
        if cuda and cfg.nproc_per_job > 1 and (cfg.gpus_per_job or 0) < cfg.nproc_per_job and cfg.submit:
            raise ConfigError(f"--nproc-per-job {cfg.nproc_per_job} with --device cuda: each task takes a GPU; "
                              f"give --gpus-per-job {cfg.nproc_per_job}")
        if cfg.gpus_per_job and not cuda and cfg.submit:
            log.warning("--gpus-per-job %d but the runs train on %s: add --device cuda to use the GPUs",
                        cfg.gpus_per_job, self.jobs[0].config.train.device if self.jobs else "cpu")

    # -------------------------------------------------------------- what a job is now
    def _existing(self, job: Job) -> str | _SubmititHandle | _LockHandle | None:
        """``"finished"``, a handle to wait on (running or queued), or None (to submit)."""
        if not self.overwrite and (job.run_dir / rundir.METRICS).is_file():
            return "finished"
        live = _LIVE.get(str(Path(job.run_dir).resolve()))
        if live is not None:
            return live
        pid = rundir.holder(job.run_dir) if Path(job.run_dir).is_dir() else None
        if pid is not None:
            if self.overwrite:
                raise OutputError(f"{job.run_dir} is being written by another anpyc process (pid {pid}); "
                                  "wait for it to end or choose another --out")
            return _LockHandle(job, pid)
        entry = self.ledger.get(self.key(job))
        if entry is None or self.overwrite or self.submitit is None or not entry.get("job_id"):
            return None
        attached = _attach(self.submitit, self.out / entry.get("folder", rundir.JOB_FOLDER), entry)
        if attached is None:
            return None
        if entry.get("executor") == "slurm" and _slurm_state(attached) in QUEUED_STATES:
            return _SubmititHandle(job, attached, "slurm", self.out)
        if not self.cfg.submit and attached.paths.result_pickle.exists():  # ended: its outcome says how
            return _SubmititHandle(job, attached, entry.get("executor", self.cfg.kind), self.out)
        return None

    # -------------------------------------------------------------- submitting
    def _submit(self, jobs: list[Job]) -> dict[str, Any]:
        if not jobs:
            return {}
        ex = self._submitit_executor()
        calls = [self._call(job) for job in jobs]
        if self.cfg.kind == "slurm" and len(calls) > 1:
            with ex.batch():  # one job array
                submitted = [ex.submit(call) for call in calls]
        else:
            with _output_to(self.folder / CONTROLLER_LOG):
                submitted = [ex.submit(call) for call in calls]
        handles = {}
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        for job, sjob in zip(jobs, submitted, strict=True):
            handle = _SubmititHandle(job, sjob.task(0) if sjob.num_tasks > 1 else sjob, self.cfg.kind, self.out)
            handles[self.key(job)] = handle
            _LIVE[str(Path(job.run_dir).resolve())] = handle
            self.ledger[self.key(job)] = {"method": job.method, "seed": job.seed, "executor": self.cfg.kind,
                                          "job_id": str(sjob.job_id), "folder": rundir.JOB_FOLDER, "submitted": now,
                                          "config_sha256": config_digest(job.config)}
        self._save_ledger()
        self.submitted += [str(s.job_id) for s in submitted]
        log.info("submitted %d job(s) to %s: %s", len(jobs), self.cfg.kind, ", ".join(str(s.job_id) for s in submitted))
        return handles

    def _call(self, job: Job) -> SweepJob:
        threads = (self.cfg.cpus_per_job // self.cfg.nproc_per_job if self.cfg.cpus_per_job
                   else launch.default_threads(self.cfg.parallel) if self.cfg.kind == "submitit-local" else None)
        return SweepJob(job.method, job.seed, job.config, str(Path(job.run_dir).resolve()),
                        tuple(launch.method_modules([job.config.method])), job.tensorboard, threads,
                        self.overwrite, self.cfg.nproc_per_job, job.recorded_budget)

    def _submitit_executor(self) -> SlurmExecutor | LocalExecutor:
        if self._executor is not None:
            return self._executor
        cfg = self.cfg
        if cfg.kind == "slurm":
            try:
                ex = self.submitit.SlurmExecutor(folder=self.folder)
            except RuntimeError as exc:  # no srun on this machine
                raise ConfigError(f"--executor slurm: {one_line(exc)} (submit from a machine of the cluster)") from None
            ex.update_parameters(**slurm_parameters(cfg, f"anpyc-{self.out.resolve().name}"))
        else:
            ex = self.submitit.LocalExecutor(folder=self.folder)
            ex.update_parameters(timeout_min=cfg.minutes or LOCAL_TIME_MIN, tasks_per_node=cfg.nproc_per_job,
                                 gpus_per_node=cfg.gpus_per_job or 0, **({"setup": list(cfg.setup)} if cfg.setup else {}))
        self._executor = ex
        return ex

    # -------------------------------------------------------------- waiting
    def _wait(self, waiting: dict[str, Any], queue: list[Job]) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(waiting) + len(queue), desc=f"jobs ({self.cfg.kind})", unit="job", disable=self.quiet)
        try:
            while waiting or queue:
                if queue and len(waiting) < self.cfg.parallel:  # submitit-local: `parallel` at a time
                    free = self.cfg.parallel - len(waiting)
                    waiting.update(self._submit(queue[:free]))
                    queue = queue[free:]
                for key, handle in list(waiting.items()):
                    if handle.done():
                        self.ended[key] = waiting.pop(key)
                        bar.update(1)
                if waiting:
                    time.sleep(POLL_S[self.cfg.kind])
        except KeyboardInterrupt:
            self._interrupted(waiting)
            raise
        finally:
            bar.close()

    def _interrupted(self, waiting: dict[str, Any]) -> None:
        """Ctrl-C: jobs on this machine end with the command; a cluster's go on."""
        if self.cfg.kind == "submitit-local":
            for handle in waiting.values():
                handle.cancel()
        elif waiting:
            log.warning("the submitted jobs go on; `anpyc gather %s` builds the summary when they end", self.out)

    # -------------------------------------------------------------- gathering
    def _collect(self, pending: dict[str, Any] | None = None) -> Execution:
        """Every job's result, read back from its run directory, or its failure; ``pending``:
        jobs not waited for (gathering without waiting): still running, or ended."""
        done, failures = {}, []
        for key, handle in (pending or {}).items():
            self.ended[key] = handle if handle.done() else _Running(handle)
        for job in self.jobs:
            _LIVE.pop(str(Path(job.run_dir).resolve()), None)
            if (job.run_dir / rundir.METRICS).is_file():
                try:
                    done[(job.method, job.seed)] = run_job(dataclasses.replace(job, resume=True, method_object=None))
                except Exception as exc:  # a finished run of another config, an unreadable one
                    failures.append(JobFailure(job.method, job.seed, one_line(exc), str(job.run_dir),
                                               exit_code_of(exc), type(exc).__name__))
                continue
            handle = self.ended.get(self.key(job))
            failures.append(handle.failure() if handle is not None else self._not_run(job))
        return Execution(done, failures)

    def _not_run(self, job: Job) -> JobFailure:
        """A job that left no result and is not running (gathering only)."""
        entry = self.ledger.get(self.key(job))
        started = (job.run_dir / rundir.CONFIG).is_file()
        what = (f"job {entry['job_id']} left no result (killed, cancelled, or never started)" if entry and entry.get("job_id")
                else "killed before it finished" if started else "never ran")
        again = "run the command again with --resume" if self.cfg.kind == "local" else "run the command again to submit it"
        return JobFailure(job.method, job.seed, f"{what}; {again}" + (" (it continues from its newest checkpoint)" if started else ""),
                          str(job.run_dir), None, "NotRun")

    def _record(self, finished: int, waiting: dict[str, Any]) -> dict:
        """What ``--no-wait`` submitted: job ids, runs finished already, runs queued or running
        from an earlier submission (not sent again)."""
        return {"executor": self.cfg.kind, "out": str(self.out), "finished": finished, "job_ids": list(self.submitted),
                "elsewhere": len(waiting) - len(self.submitted), "jobs": str(self.out / rundir.JOB_LIST),
                "logs": str(self.folder)}

    def _save_ledger(self) -> None:
        write_json(self.out / rundir.JOB_LIST, {"format": 1, "jobs": self.ledger})


#: where submitit-local's job controllers write (in the job folder)
CONTROLLER_LOG = "controllers.log"


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's standard output and error go to ``path`` inside the block. submitit-local
    starts each job's controller with them: a pipe that reads this command (``| tee``, a CI step
    capturing it) stayed open until the jobs ended, so ``--no-wait`` waited after all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


class _SubmititHandle:
    """A submitit job (its task 0) running one run."""

    def __init__(self, job: Job, sjob: Any, kind: str, out: Path) -> None:
        self.job, self.sjob, self.kind, self.out = job, sjob, kind, out
        self.job_id = str(sjob.job_id)

    def done(self) -> bool:
        return bool(self.sjob.done())

    def cancel(self) -> None:
        self.sjob.cancel(check=False)

    def failure(self) -> JobFailure:
        job, paths = self.job, self.sjob.paths
        where = str(job.run_dir)
        if not paths.result_pickle.exists():
            logfile = os.path.relpath(paths.stderr, self.out)
            why = ("its process died (killed, or out of memory)" if self.kind != "slurm"
                   else f"Slurm state {_slurm_state(self.sjob) or 'unknown'}")
            return JobFailure(job.method, job.seed, f"job {self.job_id} ended without a result ({why}); log: {logfile}",
                              where, _slurm_exit_code(self.job_id) if self.kind == "slurm" else None, "JobDied")
        exc = self.sjob.exception()
        if exc is not None:  # raised outside the run (the job could not even start it)
            return JobFailure(job.method, job.seed, trace_line(str(exc)), where, 1, type(exc).__name__)
        outcome = self.sjob.result()
        if getattr(outcome, "error", None):
            return JobFailure(job.method, job.seed, outcome.error, where, outcome.exit_code, outcome.error_type)
        return JobFailure(job.method, job.seed, f"job {self.job_id} ended but {job.run_dir} holds no {rundir.METRICS}",
                          where, None, "JobDied")


class _Running:
    """A job still queued or running when the sweep was gathered without waiting."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def failure(self) -> JobFailure:
        job, h = self.handle.job, self.handle
        what = (f"job {h.job_id} is {_slurm_state(h.sjob) or 'queued'}" if isinstance(h, _SubmititHandle)
                else f"pid {h.pid} is running it")
        return JobFailure(job.method, job.seed, f"not finished yet: {what}; gather again when it ends (or --wait)",
                          str(job.run_dir), None, "Running")


class _LockHandle:
    """A run another process is writing (its directory's lock is held)."""

    def __init__(self, job: Job, pid: int) -> None:
        self.job, self.pid = job, pid

    def done(self) -> bool:
        return rundir.holder(self.job.run_dir) is None

    def cancel(self) -> None:  # not ours to stop
        pass

    def failure(self) -> JobFailure:
        return JobFailure(self.job.method, self.job.seed,
                          f"the process that ran it (pid {self.pid}) ended before the run finished; "
                          "run the command again to continue it", str(self.job.run_dir), None, "JobDied")


def _attach(submitit: ModuleType, folder: Path,
            entry: dict) -> SlurmJob[JobOutcome] | LocalJob[JobOutcome] | None:
    """The submitit job of a job-list entry (submitted by an earlier command)."""
    cls = submitit.SlurmJob if entry.get("executor") == "slurm" else submitit.LocalJob
    try:
        return cls(folder=folder, job_id=str(entry["job_id"]))
    except Exception as exc:  # noqa: BLE001 - a damaged entry: submit again
        log.warning("cannot follow job %s: %s", entry.get("job_id"), one_line(exc))
        return None


def _slurm_state(sjob: Any) -> str:
    try:
        return str(sjob.state).split()[0].upper() if sjob.state else ""
    except Exception:  # noqa: BLE001 - sacct missing or failing: the state is unknown
        return ""


def _slurm_exit_code(job_id: str) -> int | None:
    """The job's exit code from ``sacct`` (``ExitCode`` is ``code:signal``; a signal counts as
    128 + signal, as a shell shows it); None if sacct cannot say."""
    import subprocess

    try:
        out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "ExitCode"], capture_output=True,
                             text=True, timeout=30).stdout.split()
        code, _, sig = out[0].partition(":")
        return 128 + int(sig) if sig and int(sig) else int(code)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def trace_line(text: str) -> str:
    """The last line of the traceback in a submitit ``FailedJobError`` message (the error
    itself: ``ModuleNotFoundError: No module named 'x'``), else its first line.

    Example:
        >>> trace_line("Job failed with trace:\\n-----\\nTraceback (most recent call last):\\n  File x\\nKeyError: 'a'\\n-----\\nmore")
        "KeyError: 'a'"
    """
    lines = [ln.rstrip() for ln in text.splitlines()]
    marks = [i for i, ln in enumerate(lines) if ln and set(ln) == {"-"}]
    body = lines[marks[0] + 1:marks[1]] if len(marks) >= 2 else lines
    body = [ln for ln in body if ln.strip() and not ln.startswith(" ")]
    return body[-1].strip() if body else (lines[0] if lines else "the job failed")


def _maybe_submitit() -> ModuleType | None:
    try:
        import submitit
    except ImportError:
        return None
    return submitit


def config_digest(cfg: Any) -> str:
    """sha256 of a resolved run config (how a job list names the config a run must have)."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def _read_ledger(out: Path) -> dict[str, dict]:
    path = out / rundir.JOB_LIST
    if not path.is_file():
        return {}
    data = rundir.read_json(path)
    jobs = data.get("jobs")
    return dict(jobs) if isinstance(jobs, dict) else {}


def ledger_kind(out_dir: str | Path) -> str:
    """The executor the sweep in ``out_dir`` was submitted with (``local`` without a job list)."""
    kinds = {entry.get("executor") for entry in _read_ledger(Path(out_dir)).values()}
    return "slurm" if "slurm" in kinds else "submitit-local" if "submitit-local" in kinds else "local"
