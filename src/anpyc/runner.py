"""``run(cfg)``: one method on one stream, end to end, with the run-directory contract.

A run directory holds ``config.yaml`` (written first: the resolved config plus seed,
versions and git commit), ``log.jsonl`` (one record per task), ``run.log``, and at the end
``metrics.json``, ``acc_matrix.csv`` and ``val_acc_matrix.csv``. Every file is written
atomically. ``checkpoints/`` holds the last two checkpoints (see :mod:`anpyc.checkpoint`);
``run(cfg, out_dir, resume=True)`` continues a killed run from the newest one.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> result = run(cfg, quiet=True)
    >>> result.acc_matrix.shape
    (2, 2)
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anpyc import __version__, rundir
from anpyc import checkpoint as ckpt_mod
from anpyc.config import RunConfig
from anpyc.data.streams import Stream, make_stream
from anpyc.distributed import decorrelate_rng_, is_main_process, sync_task_state_, world_size
from anpyc.errors import ConfigError, OutputError
from anpyc.io import append_jsonl, write_csv, write_json, write_yaml
from anpyc.methods import create, resolved_params
from anpyc.methods.base import Method
from anpyc.metrics import summarize
from anpyc.models import build_model
from anpyc.models.generative import is_generative
from anpyc.models.heads import ContinualModel
from anpyc.report.tracking import TaskTracker, open_tracker, tensorboard_writer_class
from anpyc.train import evaluate, fit, make_optimizer
from anpyc.utils import peak_rss_mb, seed_everything

log = logging.getLogger(__name__)
runlog = logging.getLogger("anpyc.runlog")  # per-task lines for run.log only
runlog.propagate = False
runlog.setLevel(logging.INFO)


@dataclass
class RunResult:
    """What a run returns: the matrices, the scalar metrics and the trained objects."""

    config: RunConfig
    acc_matrix: np.ndarray
    val_acc_matrix: np.ndarray
    metrics: dict
    out_dir: Path | None = None
    model: ContinualModel | None = field(default=None, repr=False)
    method: Method | None = field(default=None, repr=False)


def git_commit() -> str | None:
    """Commit of the source tree anpyc runs from, with ``-dirty`` if it has local changes."""
    here = Path(__file__).resolve().parent
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = proc.stdout.strip()
        if proc.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    return {
        "anpyc": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def resolved_config(cfg: RunConfig) -> dict:
    """The config as saved: method defaults filled in, plus provenance under ``meta``."""
    data = cfg.to_dict()
    data["method_params"] = resolved_params(cfg.method, cfg.method_params)
    data["meta"] = provenance()
    return data


def prepare_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir`` and lock it for this process (:mod:`anpyc.rundir`); refuse one that
    already holds a run unless ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path {out} exists and is not a directory")
    rundir.acquire(out, create=True)  # before anything is checked or removed: another writer fails here
    if any((out / marker).exists() for marker in ("config.yaml", "compare.yaml", "tune.yaml")) and not overwrite:
        raise OutputError(f"{out} already holds a run; choose another --out or pass --overwrite")
    if overwrite:
        for stale in ("metrics.json", "log.jsonl", "run.log", "acc_matrix.csv", "val_acc_matrix.csv", "acc_curve.csv", "fid_matrix.csv"):
            (out / stale).unlink(missing_ok=True)
        for stale in ckpt_mod.list_checkpoints(out):
            stale.unlink(missing_ok=True)
    return out


class _Baseline:
    """Accuracy of the randomly initialised body (for forward transfer)."""

    def __init__(self, model: ContinualModel) -> None:
        self.initial_body = {k: v.detach().clone() for k, v in model.body.state_dict().items()}

    def accuracy(self, model: ContinualModel, data, cfg, task_id: int) -> float:
        current = {k: v.detach().clone() for k, v in model.body.state_dict().items()}
        model.body.load_state_dict(self.initial_body)
        try:
            return evaluate(model, _NO_METHOD, data, cfg, task_id)
        finally:
            model.body.load_state_dict(current)


_NO_METHOD = Method()


@rundir.releases_locks  # the run directory is this process's until the run ends
def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    stream: Stream | None = None,
    tensorboard: bool | str | Path = False,
    resume: bool = False,
) -> RunResult:
    """Train ``cfg.method`` on every task of the stream; evaluate all seen tasks after each.

    ``stream`` may be passed to share one built stream between runs (it must match
    ``cfg.stream`` and ``cfg.seed``). ``tensorboard``: True logs to ``out_dir/tb``, a path
    logs there (see :mod:`anpyc.report.tracking`); ``acc_curve.csv`` is written always.
    ``resume=True`` continues the run in ``out_dir`` from its newest valid checkpoint (from
    the start if it has none); see :func:`anpyc.checkpoint.resume_run`.
    """
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    generative = is_generative(cfg.model.name)
    if generative:  # VAE / GAN: their own loop and metrics, same hooks and run-dir contract
        from anpyc.generative import resolve_train_defaults, run_generative
        from anpyc.generative_eval import dataset_of

        cfg = resolve_train_defaults(cfg)
        dataset_of(cfg.stream.benchmark)  # a stream a generator cannot learn fails before any file is written
        if resume or tensorboard:
            raise ConfigError("generative runs (--model vae|gan) support neither --resume nor --tensorboard yet")
    method = create(cfg.method, cfg.method_params)  # validates the method before data loading
    if tensorboard:
        tensorboard_writer_class()  # a missing TensorBoard fails before anything is written
    saved_cfg = resolved_config(cfg)
    if stream is None:  # before the output directory is touched: bad data must not cost a result
        stream = make_stream(cfg.stream, cfg.seed, labels="local" if cfg.model.head == "multi" and not generative else "global")
    if not generative:
        build_model(cfg.model, stream.input_shape)  # a model that cannot be built fails here too
    if torch.device(cfg.train.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {cfg.train.device!r} but torch sees no CUDA device")
    snapshot = None
    if resume:
        if out_dir is None:
            raise OutputError("resume needs the run directory")
        out = Path(out_dir)
        if not (out / "config.yaml").is_file():
            raise OutputError(f"{out} holds no run to resume (no config.yaml)")
        if is_main_process():
            rundir.acquire(out)  # before the checkpoint is read: another writer fails here
        snapshot = ckpt_mod.load_latest(out, cfg)  # fails here, before any file is touched
        out = out if is_main_process() else None  # every rank reads the checkpoint; rank 0 writes
    else:
        # under torch.distributed every rank trains; only rank 0 writes (see anpyc.launch)
        out = prepare_out_dir(out_dir, overwrite) if out_dir is not None and is_main_process() else None
        if out is not None:
            write_yaml(out / "config.yaml", saved_cfg)
    file_handler = None
    if out is not None:
        file_handler = logging.FileHandler(out / "run.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("anpyc").addHandler(file_handler)
        runlog.addHandler(file_handler)
    tracker = None
    try:
        if generative:
            return run_generative(cfg, method, out, quiet, stream)
        tracker = open_tracker(out, tensorboard) if is_main_process() else None
        return _run(cfg, method, out, quiet, stream, tracker, snapshot if resume else None, resume)
    finally:
        if tracker is not None:
            tracker.close()
        if file_handler is not None:
            logging.getLogger("anpyc").removeHandler(file_handler)
            runlog.removeHandler(file_handler)
            file_handler.close()


def _run(
    cfg: RunConfig, method: Method, out: Path | None, quiet: bool, stream: Stream,
    tracker: TaskTracker | None = None, snapshot: dict | None = None, resume: bool = False,
) -> RunResult:
    seed_everything(cfg.seed, cfg.train.device)
    device = torch.device(cfg.train.device)
    model = build_model(cfg.model, stream.input_shape).to(device)
    method.to(device)
    baseline = _Baseline(model)
    generator = torch.Generator().manual_seed(cfg.seed)
    T = len(stream)
    R = np.full((T, T), np.nan)
    V = np.full((T, T), np.nan)
    acc_before, acc_random = [], []
    task_time, eval_time = [], []
    optimizer = None
    pos, clock = {"task": 0, "epoch": 0}, {}
    if snapshot is not None:  # resume: state, RNGs and results so far as at the checkpoint
        optimizer, saved = ckpt_mod.restore(snapshot, cfg, model, method, generator, stream.tasks)
        R, V = saved["R"], saved["V"]
        acc_before, acc_random = saved["acc_before"], saved["acc_random"]
        task_time, eval_time = saved["task_time"], saved["eval_time"]
        pos, clock = snapshot["position"], snapshot["clock"]
        log.info("resuming from %s: task %d, epoch %d", snapshot["file"], pos["task"] + 1, pos["epoch"])
    decorrelate_rng_(cfg.seed)  # ranks > 0 only (after a restore, too): their own dropout masks
    if resume and out is not None:
        for record in ckpt_mod.trim_log(out, pos["task"]):
            if tracker is not None:  # acc_curve.csv gets the rows of the tasks done before the kill
                tracker.log_task(record)
    checkpointer = None
    if out is not None:
        checkpointer = ckpt_mod.Checkpointer(out, cfg, model, method, generator, {
            "R": R, "V": V, "acc_before": acc_before, "acc_random": acc_random,
            "task_time": task_time, "eval_time": eval_time})
    progress = _progress(T, quiet, f"{cfg.method} on {stream.name}")
    if progress is not None:
        progress.update(pos["task"])
    t_start = time.perf_counter() - clock.get("elapsed", 0.0)
    for t in range(pos["task"], T):
        task = stream[t]
        mid_task = t == pos["task"] and pos["epoch"] > 0  # resumed inside this task's training
        t0 = time.perf_counter() - (clock.get("task_elapsed", 0.0) if mid_task else 0.0)
        if mid_task:
            fwt_eval = clock.get("fwt_eval", 0.0)
        else:
            n_heads = len(model.heads)
            model.add_head(task.n_outputs)
            method.before_task(model, task)
            sync_task_state_(model, method, where=f"task {t} start")  # no-op in one process; rank 0's new head
            e0 = time.perf_counter()
            acc_before.append(evaluate(model, method, task.test, cfg.train, t))
            acc_random.append(baseline.accuracy(model, task.test, cfg.train, t))
            fwt_eval = time.perf_counter() - e0
            if cfg.train.reset_optimizer or optimizer is None:
                optimizer = make_optimizer(model.parameters(), cfg.train)
            elif len(model.heads) > n_heads:
                optimizer.add_param_group({"params": list(model.heads[-1].parameters())})
        data = method.training_data(task, stream[: t + 1])

        def epoch_checkpoint(done: int, _stats: dict, _t=t, _t0=t0, _fwt=fwt_eval, _opt=optimizer) -> None:
            if checkpointer is not None and checkpointer.due(done):
                now = time.perf_counter()
                checkpointer.save(_t, done, _opt, {"elapsed": now - t_start, "task_elapsed": now - _t0, "fwt_eval": _fwt})

        stats = fit(
            model, method, data, cfg.train, cfg.train.epochs, generator, optimizer=optimizer, task_id=t,
            on_step=tracker.on_step if tracker is not None else None,
            start_epoch=pos["epoch"] if mid_task else 0, on_epoch_end=epoch_checkpoint,
        )

        def retrain(epochs: int, _data=data, _t=t) -> dict:
            return fit(model, method, _data, cfg.train, epochs, generator, task_id=_t)

        method.after_task(model, task, retrain)
        sync_task_state_(model, method, where=f"task {t} end")  # masks, ownership, random draws: rank 0's
        e1 = time.perf_counter()
        for j in range(t + 1):
            R[t, j] = evaluate(model, method, stream[j].test, cfg.train, j)
            V[t, j] = evaluate(model, method, stream[j].val, cfg.train, j)
        eval_s = time.perf_counter() - e1 + fwt_eval
        eval_time.append(eval_s)
        task_time.append(time.perf_counter() - t0)
        record = {
            "task": t,
            "loss": stats["loss"],
            "steps": stats["steps"],
            "acc": R[t, : t + 1].tolist(),
            "val_acc": V[t, : t + 1].tolist(),
            "avg_acc": float(np.mean(R[t, : t + 1])),
            "time_s": task_time[-1],
            "eval_time_s": eval_s,
        }
        record.update({k: v for k, v in method.summary().items() if k in ("free_fraction_total",)})
        line = f"task {t + 1}/{T}: avg acc {record['avg_acc']:.4f}, loss {stats['loss']:.4f}, {task_time[-1]:.1f}s"
        runlog.info(line)  # run.log always; stderr only when no progress bar shows it
        if progress is None:
            log.info(line)
        if out is not None:
            append_jsonl(out / "log.jsonl", record)
        if tracker is not None:
            tracker.log_task(record)
        if checkpointer is not None:
            checkpointer.save(t + 1, 0, optimizer, {"elapsed": time.perf_counter() - t_start})
        if progress is not None:
            progress.set_postfix(avg_acc=f"{record['avg_acc']:.3f}")
            progress.update(1)
    if progress is not None:
        progress.close()
    total = time.perf_counter() - t_start
    metrics = summarize(R, acc_before, acc_random)
    val_summary = summarize(V)
    metrics.update(
        {
            "method": cfg.method,
            "benchmark": stream.name,
            "n_tasks": T,
            "seed": cfg.seed,
            "acc_matrix": R.tolist(),
            "val_acc_matrix": V.tolist(),
            "val_avg_acc": val_summary["avg_acc"],
            "val_bwt": val_summary["bwt"],
            "acc_before_training": acc_before,
            "acc_random_init": acc_random,
            **cost_metrics(model, method, total, task_time, eval_time),
            "world_size": world_size(),
        }
    )
    metrics.update(method.summary())
    if out is not None:
        header = [f"task_{j}" for j in range(T)]
        write_csv(out / "acc_matrix.csv", [[_fmt(v) for v in row] for row in R], header)
        write_csv(out / "val_acc_matrix.csv", [[_fmt(v) for v in row] for row in V], header)
        write_json(out / "metrics.json", _finite(metrics))
    return RunResult(cfg, R, V, metrics, out, model, method)


def cost_metrics(model, method: Method, total: float, task_time: list[float], eval_time: list[float]) -> dict:
    """Time, memory and size figures every run directory's metrics.json carries."""
    return {
        "time_s": total,
        "task_time_s": task_time,
        "eval_time_s": float(sum(eval_time)),
        "task_eval_time_s": eval_time,
        "train_time_s": float(total - sum(eval_time)),
        "peak_rss_mb": peak_rss_mb(),
        "n_shared_params": sum(p.numel() for _, p in model.shared_parameters()),
        "n_params": sum(p.numel() for p in model.parameters()),
        "method_state_mb": sum(b.numel() * b.element_size() for b in method.buffers()) / 2**20,
    }


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.6f}"


def _finite(obj):
    """JSON has no NaN: write null instead."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _progress(total: int, quiet: bool, desc: str):
    if quiet or os.environ.get("CI"):
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="task", leave=False)
