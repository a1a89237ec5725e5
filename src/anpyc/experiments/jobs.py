"""Run a comparison's (method, seed) jobs, one after another or in parallel processes.

Every job is an ordinary run writing its own run directory; a job that fails is recorded
(method, seed, its one-line error) and the others go on, so a comparison keeps every result
that was obtained. Parallel jobs run in a ``ProcessPoolExecutor`` (spawn start method unless
``$ANPYC_START_METHOD`` says otherwise, see :func:`anpyc.parallel.launch.default_start_method`); each
process imports the modules that define the compared methods, so methods registered outside
anpyc work too, and uses ``cpu_count // jobs`` threads unless ``train.threads`` is set.

Example:
    >>> from anpyc.config import RunConfig
    >>> base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> jobs = [Job("finetune", 0, base, None), Job("joint", 0, base.replace(method="joint"), None)]
    >>> done, failed = run_jobs(jobs, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from anpyc import rundir
from anpyc.config import RunConfig
from anpyc.errors import AnpycError, ConfigError, one_line
from anpyc.parallel.launch import (
    default_start_method,
    default_threads,
    import_modules,
    method_modules,
)

if TYPE_CHECKING:
    from anpyc.data.streams import Stream
    from anpyc.methods.base import Method
    from anpyc.runner import RunResult

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One run of a comparison. Its method object is handed to the run once (and the job lets go
    of it, so a long comparison does not keep every trained method's state)."""

    method: str  # the label in the comparison (a method id or an alias of one)
    seed: int
    config: RunConfig
    run_dir: Path | None
    tensorboard: bool | str | Path = False
    resume: bool = False  # continue the run already in run_dir, if there is one
    method_object: Any = None  # the Method the run trains (built once, for this job); None: built from config
    budget: str | None = None  # passes / epochs: the run applies it to config (None: config is as it runs)
    recorded_budget: dict | None = None  # with budget None: the budget config was resolved under (recorded, not applied)


@dataclass(frozen=True)
class JobFailure:
    """A job that raised: what it was, the one line that says why and the exit code the same
    run would have ended ``anpyc run`` with (2: an error of the input or the run, 1: a bug;
    ``None``: the process died without saying)."""

    method: str
    seed: int
    error: str
    run_dir: str | None
    exit_code: int | None = None
    error_type: str | None = None  # the exception's class name (``TrainingError``: the run diverged)

    def to_dict(self) -> dict:
        return {"method": self.method, "seed": self.seed, "error": self.error, "run_dir": self.run_dir,
                "exit_code": self.exit_code}


def exit_code_of(exc: BaseException) -> int:
    """The exit code ``anpyc run`` ends with on ``exc``: 2 for an anpyc error, 1 otherwise."""
    return 2 if isinstance(exc, AnpycError) else 1


def run_job(job: Job, overwrite: bool = False, quiet: bool = True, stream: Stream | None = None) -> RunResult:
    """Run ``job`` in this process: a finished run is read back, a killed one (``job.resume``)
    continues from its newest checkpoint, any other starts (``overwrite``: afresh, whatever
    ``job.run_dir`` holds); returns its RunResult without the trained objects. ``stream``: the
    stream it trains on, built already (default: from its config)."""
    return _run_one(job, overwrite, stream=stream, quiet=quiet)


def check_resumable(job: Job, method: Method | None = None) -> None:
    """Refuse to continue ``job.run_dir`` if it was started with another config (``job.config``
    under ``job.budget``, as the run applies it: a generator's run saves Adam and raw inputs)."""
    from anpyc.runner import config_as_run

    saved = RunConfig.from_file(job.run_dir / rundir.CONFIG).to_dict()
    as_run = config_as_run(job.config, job.budget, method).to_dict()
    differ = sorted(k for k, v in as_run.items() if saved.get(k) != v)
    if differ:
        raise ConfigError(f"{job.run_dir} was started with another config ({', '.join(differ)} differ)")


def _run_one(
    job: Job, overwrite: bool, stream: Stream | None = None, modules: tuple[str, ...] = (),
    threads: int | None = None, quiet: bool = True
) -> RunResult:
    from anpyc.runner import run

    import_modules(list(modules))
    if threads is not None and job.config.train.threads is None:
        torch.set_num_threads(threads)
    method, job.method_object = job.method_object, None
    if job.resume and job.run_dir is not None and (job.run_dir / rundir.CONFIG).is_file():
        res = _resumed(job, quiet, method, stream)
    else:
        res = run(job.config, job.run_dir, quiet=quiet, overwrite=overwrite or job.resume, stream=stream,
                  tensorboard=job.tensorboard, method=method, budget=job.budget, report=False,
                  recorded_budget=job.recorded_budget)
    res.model = res.method = None  # keep memory flat; only the figures travel back
    return res


def _resumed(job: Job, quiet: bool, method: Method | None = None,
             stream: Stream | None = None) -> RunResult:
    """The run in ``job.run_dir`` read back (finished) or continued (killed); it must have
    been started with ``job.config``."""
    from anpyc.runner import resume_run

    check_resumable(job, method)
    return resume_run(job.run_dir, quiet=quiet, tensorboard=job.tensorboard, method=method, report=False, stream=stream)


def _record_failure(job: Job, exc: BaseException, failures: list[JobFailure]) -> None:
    line = one_line(exc)
    code = None if isinstance(exc, BrokenProcessPool) else exit_code_of(exc)
    failures.append(JobFailure(job.method, job.seed, line, str(job.run_dir) if job.run_dir else None, code,
                               type(exc).__name__))
    if isinstance(exc, AnpycError):
        log.error("compare: %s, seed %d failed: %s", job.method, job.seed, line)
    else:  # a bug, not a user error: keep the traceback in the log
        log.error("compare: %s, seed %d failed: %s\n%s", job.method, job.seed, line,
                  "".join(traceback.format_exception(exc)).rstrip())


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes now: ``shutdown`` alone waits for their running
    jobs (Python before 3.14 has no public call for this)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def run_jobs(
    jobs: list[Job],
    workers: int = 1,
    overwrite: bool = False,
    streams: dict | None = None,
    start_method: str | None = None,
    quiet: bool = True,
) -> tuple[dict[tuple[str, int], object], list[JobFailure]]:
    """Run ``jobs``; returns ``({(method, seed): RunResult}, [JobFailure, ...])``.

    ``workers=1`` runs them here, one after another (``streams`` maps a seed to a built
    stream shared by that seed's jobs); ``workers > 1`` runs them in that many processes.
    Either way a failing job does not stop the others. Parallel jobs show no progress bars
    (``quiet`` applies to sequential ones).
    """
    done: dict[tuple[str, int], object] = {}
    failures: list[JobFailure] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            log.info("compare: %s, seed %d", job.method, job.seed)
            try:
                stream = (streams or {}).get(job.seed)
                done[(job.method, job.seed)] = _run_one(job, overwrite, stream, quiet=quiet)
            except Exception as exc:  # recorded; the other jobs go on
                _record_failure(job, exc, failures)
        return done, failures
    workers = min(workers, len(jobs))
    modules = tuple(method_modules(sorted({j.config.method for j in jobs})))
    ctx = multiprocessing.get_context(start_method or default_start_method())
    threads = default_threads(workers)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        futures = {pool.submit(_run_one, job, overwrite, None, modules, threads): job for job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                done[(job.method, job.seed)] = fut.result()
                log.info("compare: %s, seed %d done", job.method, job.seed)
            except BrokenProcessPool:
                _record_failure(job, BrokenProcessPool("its worker process died (killed, or out of memory)"), failures)
            except Exception as exc:
                _record_failure(job, exc, failures)
    except BaseException:  # Ctrl-C, SIGTERM: a worker left alone would finish its job unseen
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    order = {(j.method, j.seed): i for i, j in enumerate(jobs)}
    failures.sort(key=lambda f: order[(f.method, f.seed)])
    return done, failures
