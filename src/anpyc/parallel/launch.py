"""Data-parallel runs over several processes with torch.distributed.

Two ways to start one, same result:

* ``anpyc run ... --nproc N``: :func:`run_distributed` spawns ``N`` local processes
  (``torch.multiprocessing``, spawn start method) that meet through a file in a temporary
  directory, so no port has to be chosen;
* ``torchrun --nproc-per-node N -m anpyc run ...`` (several machines: add ``--nnodes``,
  ``--node-rank``, ``--rdzv-endpoint``): the CLI sees torchrun's ``WORLD_SIZE``/``RANK``
  variables and calls :func:`run_torchrun` in each process;
* one Slurm job step of ``N`` tasks (``srun``, or a sweep's ``--nproc-per-job N``): every task
  reads its rank and the rendezvous from the Slurm environment (:func:`task_rendezvous`),
  exports them as the ``env://`` variables and calls :func:`run_torchrun`.

Backend ``gloo`` on CPU, ``nccl`` when ``train.device`` is ``cuda`` (process ``k`` on a node
uses GPU ``k``). What the processes do is in :mod:`anpyc.parallel.collectives`: ``train.batch_size`` is
the *global* batch (each rank takes ``batch_size / N`` of it), gradients are averaged over the
global batch, evaluation and importance batches are shared out and summed, and rank 0's model
and method state are broadcast at every task boundary. Only rank 0 writes the run directory.
At the end every rank's model+method checksum is compared; a difference is an error.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> result = run_distributed(cfg, nproc=2, quiet=True)  # doctest: +SKIP
    >>> result.metrics["world_size"]  # doctest: +SKIP
    2
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import json
import logging
import os
import pickle
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from anpyc import errors, rundir
from anpyc.callbacks.distributed import DIVERGED, process_group
from anpyc.config import RunConfig
from anpyc.errors import AnpycError, ConfigError, DistributedError
from anpyc.io import write_json
from anpyc.methods import get_method_class, typed
from anpyc.parallel import collectives as ddist
from anpyc.rundir import METRICS, finite

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch.multiprocessing import ProcessContext

    from anpyc.runner import RunResult

log = logging.getLogger(__name__)

BACKENDS = ("gloo", "nccl")


def collective_timeout() -> _dt.timedelta:
    """How long a rank waits in a collective before giving up: ``$ANPYC_DIST_TIMEOUT``
    seconds, 30 minutes by default (ranks out of step must fail, not hang)."""
    raw = os.environ.get("ANPYC_DIST_TIMEOUT", "1800")
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigError(f"ANPYC_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    return _dt.timedelta(seconds=max(seconds, 1.0))


def default_backend(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def check_setup(device: str, nproc: int, backend: str | None) -> str:
    """Validate a multi-process request before anything starts; returns the backend."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed support")
    cuda = str(device).startswith("cuda")
    if cuda:
        if str(device) != "cuda":
            raise ConfigError(f"with several processes use --device cuda, not {device!r}: process k on a node takes GPU k")
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda but no CUDA GPU is visible")
    if backend == "nccl":
        if not cuda:
            raise ConfigError("backend nccl needs --device cuda (use gloo on CPU)")
        if not dist.is_nccl_available():
            raise DistributedError("this torch build has no NCCL: use --backend gloo")
    return backend


def method_modules(names: list[str]) -> list[str]:
    """Modules that define (and so register) these methods; spawned processes import them,
    which makes methods registered outside anpyc (a user's module, a test) available there."""
    mods = {get_method_class(n).__module__ for n in names}
    return sorted(m for m in mods if m not in ("__main__", "__mp_main__"))


def import_modules(modules: list[str]) -> None:
    for mod in modules:
        importlib.import_module(mod)


def default_start_method() -> str:
    """``spawn`` (safe with CUDA and threads), or ``$ANPYC_START_METHOD``: ``fork`` starts
    CPU processes without re-importing torch (seconds saved per process on a busy machine)."""
    method = os.environ.get("ANPYC_START_METHOD", "spawn")
    if method not in ("spawn", "fork", "forkserver"):
        raise ConfigError(f"ANPYC_START_METHOD must be spawn, fork or forkserver, got {method!r}")
    return method


def default_threads(nproc: int) -> int:
    """Intra-op threads per process when the config sets none: share the cores."""
    return max(1, (os.cpu_count() or 1) // max(nproc, 1))


# ------------------------------------------------------------------------ one rank
@rundir.releases_locks  # rank 0 writes metrics.json after run() returns: still under its lock
def _rank_run(cfg: RunConfig, out_dir: str | Path | None, quiet: bool, overwrite: bool,
              backend: str, run_kwargs: dict) -> RunResult:
    """Inside an initialised process group: run, then check every rank holds the same state."""
    from anpyc.runner import run

    if cfg.train.threads is None:
        torch.set_num_threads(default_threads(int(os.environ.get("LOCAL_WORLD_SIZE", ddist.world_size()))))
    main = ddist.is_main_process()
    DIVERGED.clear()
    result = run(cfg, out_dir, quiet=quiet or not main, overwrite=overwrite, **run_kwargs)
    sums = ddist.all_gather_object(ddist.state_checksum(result.model, result.method))
    if len(set(sums)) != 1:
        bad = [r for r, s in enumerate(sums) if s != sums[0]]
        raise DistributedError(f"ranks {bad} ended with a model or method state different from rank 0's")
    # every rank's checksum, kept so that a run directory shows the ranks agreed
    result.metrics["distributed"] = {
        "world_size": ddist.world_size(), "backend": backend, "rank_state_sha256": sums,
        "diverged_before_sync": list(DIVERGED),  # task boundaries where ranks' bodies differed
    }
    if main and result.out_dir is not None:
        write_json(Path(result.out_dir) / METRICS, finite(result.metrics))
    return result


def _worker(
    rank: int, world: int, fn: Callable[..., Any], fn_args: tuple, backend: str, device: str,
    tmp: str, modules: list[str], log_level: int, held: list[str],
) -> None:
    """Entry point of a spawned process (``torch.multiprocessing`` passes ``rank`` first).

    The group is left cleanly on every path (see :func:`anpyc.callbacks.distributed.process_group`);
    ``held`` are the run directories the parent holds locked for this group (rank 0 writes
    them under the parent's lock, see :mod:`anpyc.rundir`).
    """
    logging.basicConfig(level=log_level if rank == 0 else logging.WARNING, format=f"%(levelname)s rank{rank} %(name)s: %(message)s")
    logging.getLogger("anpyc").setLevel(log_level if rank == 0 else logging.WARNING)
    rundir.adopt(held)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(rank)
    try:
        import_modules(modules)
        with process_group(backend, Path(tmp, "rendezvous").as_uri(), rank, world, collective_timeout()):
            value = fn(*fn_args)
        if rank == 0:
            with open(Path(tmp, "result.pkl"), "wb") as fh:
                pickle.dump(value, fh)
    except AnpycError as exc:  # handed to the parent, which raises the same one-line error
        Path(tmp, f"error_{rank}.json").write_text(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        raise


def spawn_group(
    fn: Callable[..., Any], nproc: int, args: tuple = (), device: str = "cpu",
    backend: str | None = None, modules: list[str] | None = None, start_method: str | None = None,
) -> Any:
    """Call ``fn(*args)`` in ``nproc`` spawned processes joined in one torch.distributed
    group; returns rank 0's return value (it must pickle).

    ``fn`` must be importable (a module-level function); ``modules`` are imported in every
    process first (e.g. where a method outside anpyc is registered). An
    :class:`~anpyc.errors.AnpycError` raised on a rank is raised here as the same error; if a
    process dies, the others are stopped and :class:`DistributedError` names it.
    ``start_method``: see :func:`default_start_method`.

    Example:
        >>> from anpyc.parallel.collectives import world_size
        >>> spawn_group(world_size, 2)  # doctest: +SKIP
        2
    """
    import torch.multiprocessing as mp

    backend = check_setup(device, nproc, backend)
    if str(device).startswith("cuda") and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} but only {torch.cuda.device_count()} GPU(s) visible")
    start_method = start_method or default_start_method()
    if str(device).startswith("cuda") and start_method == "fork":
        raise ConfigError("CUDA processes cannot be forked: use the spawn start method")
    tmp = tempfile.mkdtemp(prefix="anpyc-dist-")
    try:
        wargs = (nproc, fn, tuple(args), backend, device, tmp, list(modules or []),
                 logging.getLogger("anpyc").getEffectiveLevel(), rundir.held())
        context = mp.start_processes(_worker, args=wargs, nprocs=nproc, join=False, start_method=start_method)
        try:
            _join(context)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            raise _rank_error(tmp, exc, context.processes) from None
        if not Path(tmp, "result.pkl").is_file():  # the ranks were interrupted (Ctrl-C) and left
            raise KeyboardInterrupt
        with open(Path(tmp, "result.pkl"), "rb") as fh:
            return pickle.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: seconds the other processes get to stop by themselves once one has failed (they fail fast:
#: the failed rank left the group) or after Ctrl-C, before SIGTERM and then SIGKILL
GRACE_S = 10.0


def _join(context: ProcessContext) -> None:
    """Wait for every process; on a failure give the others :data:`GRACE_S` to end, then stop
    them (torch raises the first failure). On KeyboardInterrupt the processes are interrupted
    too and joined before it propagates, so no rank outlives the command."""
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)  # "Terminating process ...": the one-line error says it
    try:
        while not context.join(grace_period=GRACE_S):
            pass
    except KeyboardInterrupt:
        _stop(context.processes)
        raise
    finally:
        spawn_log.setLevel(level)


def _stop(processes: list) -> None:
    """After Ctrl-C: give the processes a moment to leave by themselves (a terminal's Ctrl-C
    reached them too), then interrupt, terminate and kill whatever still runs; reap all."""
    steps = ((None, 2.0), (signal.SIGINT, GRACE_S), (signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S))
    for sig, wait_s in steps:
        alive = [p for p in processes if p.is_alive()]
        for p in alive if sig is not None else ():
            with contextlib.suppress(OSError):
                os.kill(p.pid, sig)
        deadline = time.monotonic() + wait_s
        for p in alive:
            p.join(max(0.0, deadline - time.monotonic()))


def _spawned_run(cfg: RunConfig, out_dir: str | Path | None, quiet: bool, overwrite: bool,
                 run_kwargs: dict) -> RunResult:
    result = _rank_run(cfg, out_dir, quiet, overwrite, dist.get_backend(), run_kwargs)
    result.model = result.method = None  # only the figures travel back
    return result


@rundir.releases_locks
def run_distributed(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    nproc: int = 2,
    quiet: bool = False,
    overwrite: bool = False,
    backend: str | None = None,
    **run_kwargs: Any,
) -> RunResult:
    """:func:`anpyc.runner.run` over ``nproc`` local processes; returns rank 0's RunResult
    (without the model and method objects). ``nproc=1`` is a plain run.

    Errors of the config, output directory or training are raised in the caller as the
    same :class:`~anpyc.errors.AnpycError` the rank raised. A process that dies fails the
    run with :class:`RankDied`, which says where its last checkpoint is. This process holds
    the run directory's lock (:mod:`anpyc.rundir`) until the processes have ended; rank 0
    writes under it.
    """
    from anpyc.runner import prepare_out_dir, run

    check_setup(cfg.train.device, nproc, backend)
    if nproc == 1:
        return run(cfg, out_dir, quiet=quiet, overwrite=overwrite, **run_kwargs)
    cfg = typed(cfg)  # an unknown method or parameter fails before spawning
    if out_dir is not None and not run_kwargs.get("resume"):
        prepare_out_dir(out_dir, overwrite)  # ... and so does an unusable output directory
    elif out_dir is not None and Path(out_dir, "config.yaml").is_file():
        rundir.acquire(out_dir)  # resume: a directory another process writes fails here
    try:
        return spawn_group(
            _spawned_run, nproc, (cfg, out_dir, quiet, overwrite, run_kwargs),
            device=cfg.train.device, backend=backend, modules=method_modules([cfg.method]),
        )
    except RankDied as exc:
        from anpyc.callbacks.checkpoint import list_checkpoints

        if out_dir is None or not list_checkpoints(out_dir):
            raise
        raise RankDied(f"{exc}; {out_dir} keeps its last checkpoint: continue with `anpyc run --resume {out_dir}`") from None


def _rank_error(tmp: str, exc: Exception, processes: Sequence = ()) -> AnpycError:
    """The one error to raise for a failed group: an AnpycError a rank reported; else a
    process that died of a signal we did not send (SIGKILL, SIGABRT: the cause, while its
    peers then fail with connection errors); else the first failure torch saw."""
    reports = sorted(Path(tmp).glob("error_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    if reports:
        info = json.loads(reports[0].read_text())
        cls = getattr(errors, info["type"], None)
        if not (isinstance(cls, type) and issubclass(cls, AnpycError)):
            cls = DistributedError
        return cls(info["message"])
    first = getattr(exc, "error_index", None)
    order = sorted(range(len(processes)), key=lambda i: i != first)  # torch's first failure first
    for i in order:
        code = processes[i].exitcode
        if code is not None and code < 0 and -code not in (signal.SIGTERM, signal.SIGINT):
            return RankDied(f"process {i} (rank {i}) died: killed by signal {signal.Signals(-code).name}")
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    where = "process ?" if first is None else f"process {first} (rank {first})"
    return RankDied(f"{where} failed: {lines[-1] if lines else type(exc).__name__}")


class RankDied(DistributedError):
    """A process of the group died (killed, out of memory, crashed) or raised something that
    is not an :class:`~anpyc.errors.AnpycError`."""


# ------------------------------------------------------------------------ torchrun
def launched_by_torchrun() -> bool:
    """True when torchrun (or another env:// launcher) started this process in a group > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def run_torchrun(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    backend: str | None = None,
    **run_kwargs: Any,
) -> RunResult:
    """Run in a process that torchrun started: join the group from the environment, run,
    leave. Every rank returns the (identical) RunResult; only rank 0 wrote files."""
    backend = check_setup(cfg.train.device, int(os.environ["WORLD_SIZE"]), backend)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if str(cfg.train.device).startswith("cuda"):
        torch.cuda.set_device(local_rank)
    if int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger("anpyc").setLevel(logging.WARNING)
    with process_group(backend, "env://", timeout=collective_timeout()):
        return _rank_run(cfg, out_dir, quiet, overwrite, backend, run_kwargs)


# ------------------------------------------------------------------------ Slurm tasks
@dataclass(frozen=True)
class Rendezvous:
    """Where one task of a job step stands in its torch.distributed group, and where the group
    meets (``master_addr:master_port``, the ``env://`` rendezvous of rank 0's host)."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    master_addr: str
    master_port: int

    def export(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Set the variables ``env://`` and :func:`run_torchrun` read (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        env.update({"RANK": str(self.rank), "LOCAL_RANK": str(self.local_rank), "WORLD_SIZE": str(self.world_size),
                    "LOCAL_WORLD_SIZE": str(self.local_world_size), "MASTER_ADDR": self.master_addr,
                    "MASTER_PORT": str(self.master_port)})


#: the variables of a task, by scheduler: those submitit's local executor sets for the tasks
#: of a job on this machine (first: such a job may run inside a Slurm allocation), and Slurm's
_TASK_VARIABLES = {
    "submitit-local": {"rank": "SUBMITIT_LOCAL_GLOBALID", "local_rank": "SUBMITIT_LOCAL_LOCALID",
                       "world": "SUBMITIT_LOCAL_NTASKS", "nodes": "SUBMITIT_LOCAL_JOB_NUM_NODES",
                       "job": "SUBMITIT_LOCAL_JOB_ID"},
    "slurm": {"rank": "SLURM_PROCID", "local_rank": "SLURM_LOCALID", "world": "SLURM_NTASKS",
              "nodes": "SLURM_JOB_NUM_NODES", "job": "SLURM_JOB_ID"},
}
#: the ports a job's rendezvous is chosen from (by its job id, so every task picks the same)
PORT_RANGE = (20000, 60000)


def task_rendezvous(environ: Mapping[str, str] | None = None) -> Rendezvous | None:
    """The rendezvous of this task of a Slurm job step (or of a submitit-local job), read from
    the environment; None outside one.

    Slurm: rank ``SLURM_PROCID``, local rank ``SLURM_LOCALID``, world ``SLURM_NTASKS``, tasks
    per node ``SLURM_NTASKS_PER_NODE`` (else ``SLURM_NTASKS / SLURM_JOB_NUM_NODES``), rank 0's
    host the first of ``SLURM_JOB_NODELIST`` (``gpu[03-05,09],cpu1`` -> ``gpu03``), and a port
    derived from ``SLURM_JOB_ID`` unless ``MASTER_PORT`` is set (``MASTER_ADDR`` likewise wins).
    submitit's local executor: its ``SUBMITIT_LOCAL_*`` variables, on ``127.0.0.1``.

    Example:
        >>> env = {"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NTASKS": "4", "SLURM_JOB_NUM_NODES": "2",
        ...        "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}
        >>> r = task_rendezvous(env)
        >>> (r.rank, r.local_rank, r.world_size, r.local_world_size, r.master_addr)
        (3, 1, 4, 2, 'gpu07')
    """
    env = os.environ if environ is None else environ
    kind = next((k for k, names in _TASK_VARIABLES.items() if names["world"] in env and names["rank"] in env), None)
    if kind is None:
        return None
    names = _TASK_VARIABLES[kind]
    try:
        world, rank = int(env[names["world"]]), int(env[names["rank"]])
        local_rank = int(env.get(names["local_rank"], rank))
        nodes = max(1, int(env.get(names["nodes"], "1")))
        per_node = int(env.get("SLURM_NTASKS_PER_NODE", world // nodes)) if kind == "slurm" else world // nodes
        port = int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else _job_port(env.get(names["job"], "0"))
    except ValueError as exc:
        raise DistributedError(f"cannot read the task's place from the {kind} environment: {exc}") from None
    if not 0 <= rank < world:
        raise DistributedError(f"{names['rank']}={rank} is not a rank of {names['world']}={world}")
    host = env.get("MASTER_ADDR") or (first_host(env.get("SLURM_JOB_NODELIST", "")) if kind == "slurm" else "") or "127.0.0.1"
    return Rendezvous(rank, local_rank, world, max(per_node, 1), host, port)


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list (``SLURM_JOB_NODELIST``): ``a[01-03],b7`` -> ``a01``,
    ``rack[2-3]-n[5,9]`` -> ``rack2-n5``; empty for an empty list.

    Example:
        >>> first_host("node[001-004,010],login1"), first_host("c5,c6"), first_host("solo")
        ('node001', 'c5', 'solo')
    """
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):  # the first group: up to a comma outside brackets
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            end = i
            break
    group = nodelist[:end].strip()
    return re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split(",")[0].split("-")[0], group)


def _job_port(job_id: str) -> int:
    """A port every task of job ``job_id`` derives alike (two jobs on one node rarely collide)."""
    low, high = PORT_RANGE
    digest = hashlib.sha256(job_id.encode()).digest()
    return low + int.from_bytes(digest[:4], "big") % (high - low)
