"""``run(cfg)``: one method on one stream, end to end, into a run directory.

The runner builds what the config names (stream, model, method), opens the run directory
(:mod:`anpyc.rundir`: ``config.yaml`` first), hands everything to the one training loop
(:func:`anpyc.loop.train.train_stream`) with the callbacks a run needs (logs, checkpoints,
distributed synchronisation) and writes the results. ``run(cfg, out_dir, resume=True)``
continues a killed run from its newest checkpoint.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> result = run(cfg, quiet=True)
    >>> result.acc_matrix.shape
    (2, 2)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from anpyc import rundir
from anpyc.callbacks import checkpoint as ckpt
from anpyc.callbacks.distributed import DistributedSync
from anpyc.callbacks.progress import RunLogger, attach_run_log, detach_run_log, note_stop
from anpyc.callbacks.tracking import TaskTracker, open_tracker, tensorboard_writer_class
from anpyc.config import CUSTOM, RunConfig
from anpyc.data.streams import Stream, make_stream
from anpyc.data.user import stream_from_source
from anpyc.errors import ConfigError, OutputError, first_line, unknown
from anpyc.loop.train import LoopConfig, LoopState, train_stream
from anpyc.methods import for_run, method_names, typed
from anpyc.methods.base import Method
from anpyc.metrics import summarize, weight_distribution
from anpyc.parallel.collectives import (
    decorrelate_rng_,
    is_main_process,
    world_size,
)
from anpyc.problems import Problem, problem_for
from anpyc.utils import peak_rss_mb, seed_everything
from anpyc.version import __version__

if TYPE_CHECKING:
    from anpyc.models.generative import GenerativeModel
    from anpyc.models.heads import ContinualModel

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run returns: the matrices, the scalar metrics and the trained objects."""

    config: RunConfig
    acc_matrix: np.ndarray
    val_acc_matrix: np.ndarray
    metrics: dict
    out_dir: Path | None = None
    model: Any = field(default=None, repr=False)
    method: Method | None = field(default=None, repr=False)
    report: Any = field(default=None, repr=False)  # the report's files (anpyc.report.report.ReportFiles), if written


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


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (``"AVX2"``, ``"AVX512"``...): two
    machines that differ in it may compute a few predictions differently, bit for bit, from the
    same code and seed."""
    return str(torch.backends.cpu.get_cpu_capability())


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``, else ``platform.processor()``): machines
    with one ``cpu_capability`` but another processor can still round differently (the math
    libraries may choose kernels and blockings by processor, beyond that label), so a run
    reproduces bit for bit on the same model.

    Example:
        >>> isinstance(cpu_model(), str)
        True
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            found = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        found = None
    return found or platform.processor() or ""


def provenance() -> dict:
    return {
        "anpyc": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "cpu_model": cpu_model(),
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def resolved_config(cfg: RunConfig, **meta: Any) -> dict:
    """The config as saved: every field (the method's defaults filled in), plus provenance
    (and ``meta``, such as the budget a run applied) under ``meta``."""
    return {**cfg.to_dict(), "meta": {**provenance(), **meta}}


BUDGETS = ("passes", "epochs")


def apply_budget(cfg: RunConfig, budget: str | None = "passes", method: Method | None = None) -> RunConfig:
    """``cfg`` as it runs under a budget. ``passes`` (the default): ``train.epochs`` training
    passes per task, the method's own extra passes included (a method that retrains or
    replays trains fewer epochs; :meth:`~anpyc.methods.Method.epochs_for_budget`); joint
    training, an upper bound, keeps its growing data. ``epochs`` (or ``None``): ``train.epochs``
    epochs, and whatever the method adds on top. ``method``: the method object to ask
    (default: one built from ``cfg``).

    Example:
        >>> cfg = RunConfig.from_dict({"method": "packnet", "train": {"epochs": 2}})
        >>> apply_budget(cfg).train.epochs  # 1.5 epochs + 0.5 of retraining (packnet's retrain_epochs)
        1.5
    """
    if budget is not None and budget not in BUDGETS:
        raise ConfigError(unknown("budget", budget, BUDGETS))
    if budget != "passes":
        return cfg
    try:
        method = for_run(cfg, method)  # a run option's wrapper (replay from the density model) spends passes too
        epochs = method.epochs_for_budget(cfg.train.epochs, batch_size=cfg.train.batch_size)
    except ValueError as exc:
        raise ConfigError(f"budget of {cfg.train.epochs:g} passes per task: {exc}") from None
    return cfg.replace(train=dataclasses.replace(cfg.train, epochs=float(epochs)))


def config_as_run(cfg: RunConfig, budget: str | None = "passes", method: Method | None = None) -> RunConfig:
    """``cfg`` as a run saves it in ``config.yaml``: with the settings its kind of problem
    needs (a generator's Adam and raw inputs), under ``budget`` (:func:`apply_budget`). What a
    resume compares a saved run against.

    Example:
        >>> vae = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist"}})
        >>> config_as_run(vae).train.optimizer, config_as_run(vae).stream.standardize
        ('adam', False)
    """
    return apply_budget(_resolved(cfg, problem_for(cfg)), budget, method)


def _resolved(cfg: RunConfig, kind: type[Problem]) -> RunConfig:
    """``cfg`` with its method's parameters typed (unless they are already) and the settings
    its kind of problem needs: what a run trains with, before the budget."""
    return kind.resolve(typed(cfg))


def prepare_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``out_dir`` for a run (see :func:`anpyc.rundir.prepare`)."""
    return rundir.prepare(out_dir, overwrite)


@rundir.releases_locks  # the run directory is this process's until the run ends
def run(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    stream: Stream | None = None,
    tensorboard: bool | str | Path = False,
    resume: bool = False,
    method: Method | None = None,
    budget: str | None = None,
    report: bool = True,
    recorded_budget: dict | None = None,  # with budget None: the budget cfg was resolved under
) -> RunResult:
    """Train ``cfg.method`` on every task of the stream; evaluate all seen tasks after each.

    ``method``: an object (a method of your own, or one to inspect after the run) instead of
    the one ``cfg.method`` names. ``stream``: one built stream shared between runs, or your own
    data (:func:`anpyc.data.stream_from_datasets`; the run records ``benchmark: custom`` and the
    stream's description); it must match ``cfg.stream``, ``cfg.seed`` and the scenario's labels.
    ``budget``: ``passes`` (as ``anpyc run`` and ``compare`` apply it) gives the method
    ``train.epochs`` training passes per task, its retraining and replay included; ``epochs``
    gives it ``train.epochs`` epochs and lets it add its own passes (recorded); ``None``: ``cfg``
    is as it runs, and ``recorded_budget`` (a saved ``meta.budget``) is recorded, not applied. ``tensorboard``: True
    logs to ``out_dir/tb``, a path there. ``resume=True`` continues the run in ``out_dir`` from
    its newest valid checkpoint. ``report`` (with ``out_dir``): write ``report.md``,
    ``report.html`` and ``plots/`` at the end, as the command line does. Classifiers and
    generators take the same path (:mod:`anpyc.problems`). Everything that can be checked is
    checked before the run directory is touched.
    """
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    kind = problem_for(cfg)
    cfg = _checked(cfg, kind, tensorboard)
    method = for_run(cfg, method)
    cfg, stream, meta = _with_stream_and_budget(cfg, kind, stream, method, budget, recorded_budget)
    problem = kind(cfg, stream)  # a generator's judge is trained (or read) here, before the run's seeds
    seed_everything(cfg.seed, cfg.train.device)
    model = problem.build_model().to(torch.device(cfg.train.device))
    evaluators = problem.callbacks(model)  # made from the untrained model
    state = _resume_state(cfg, out_dir, model, method, len(stream)) if resume else None
    state = state or LoopState.fresh(len(stream), cfg.seed)
    out = _open_out_dir(cfg, out_dir, overwrite, resume, meta)
    problem.start(out, state)
    handler = attach_run_log(out) if out is not None else None
    tracker = open_tracker(out, tensorboard) if is_main_process() else None
    if resume and out is not None:  # log.jsonl keeps the tasks the checkpoint has; acc_curve.csv gets them
        for record in rundir.trim_log(out, state.task):
            if tracker is not None:
                tracker.log_task(record)
    try:
        result = _run_loop(cfg, problem, model, method, stream, out, quiet, tracker, state, evaluators)
    finally:
        if tracker is not None:
            tracker.close()
        detach_run_log(handler)
    if report and out is not None:
        from anpyc.report.report import write_report_safely

        result.report = write_report_safely(out)
    return result


def budget_record(cfg: RunConfig, budget: str) -> dict:
    """What ``config.yaml`` records under ``meta.budget`` for ``cfg`` (as given, before the
    budget is applied) run under ``budget``.

    Example:
        >>> budget_record(RunConfig.from_dict({"train": {"epochs": 2}}), "passes")
        {'mode': 'passes', 'per_task': 2.0}
    """
    return {"mode": budget, "per_task": cfg.train.epochs}


def _with_stream_and_budget(cfg: RunConfig, kind: type[Problem], stream: Stream | None, method: Method,
                            budget: str | None, recorded: dict | None = None) -> tuple[RunConfig, Stream, dict]:
    """``(cfg as it runs, its stream, what config.yaml records under meta)``: the method checked
    against the kind of problem, then the stream built (before the output directory is touched:
    bad data must not cost a result), recorded when it is your own, its labels checked against
    the scenario, and the budget applied (or, for a cfg already resolved, the ``recorded`` one kept)."""
    check_method_fits(cfg, method, kind)
    if stream is None:
        stream = build_stream(cfg)
    cfg = own_stream_config(cfg, stream)
    check_labels(cfg, stream, kind)
    if budget is not None:
        recorded = budget_record(cfg, budget)
    meta = {"budget": dict(recorded)} if recorded else {}
    return apply_budget(cfg, budget, method), stream, meta


def build_stream(cfg: RunConfig) -> Stream:
    """The stream ``cfg`` names, with the settings and labels its problem kind needs; a stream
    of your own (``benchmark: custom``) is rebuilt from ``stream.source``."""
    if cfg.stream.benchmark == CUSTOM:
        if cfg.stream.source is None:
            what = f" ({cfg.stream.description})" if cfg.stream.description else ""
            raise ConfigError(f"this run's stream is your own{what}, passed from Python: pass it again "
                              "(run(cfg, out, stream=...)) or give --stream-from MODULE:FUNCTION")
        return stream_from_source(cfg.stream.source, cfg.seed)
    kind = problem_for(cfg)
    return make_stream(kind.resolve(cfg).stream, cfg.seed, labels=kind.labels(cfg))


def own_stream_config(cfg: RunConfig, stream: Stream) -> RunConfig:
    """``cfg`` as it records a stream of your own: ``benchmark: custom``, the stream's
    description and length (a registered stream's config is returned as it is)."""
    if not getattr(stream, "custom", False):
        return cfg
    description = cfg.stream.description or stream.description or stream.name
    return cfg.replace(stream=dataclasses.replace(cfg.stream, benchmark=CUSTOM, tasks=len(stream), description=description))


def check_labels(cfg: RunConfig, stream: Stream, kind: type[Problem] | None = None) -> None:
    """A one-line :class:`ConfigError` when the stream's labels cannot serve the scenario: one
    head over every class seen (``class``) needs labels that differ from task to task."""
    needed = (kind or problem_for(cfg)).labels(cfg)
    if needed == "global" and getattr(stream, "labels", "global") == "local":
        shared = ", ".join(f"task {t.id}: {list(t.classes)}" for t in list(stream)[:2])
        raise ConfigError(
            f"scenario {cfg.scenario!r} needs each task's own class ids (one head over every class seen), but the "
            f"tasks of this stream share labels ({shared}, ...): give task t the labels y + t * classes_per_task "
            "in your datasets, or use --scenario task or domain")


def check_method_fits(cfg: RunConfig, method: Method, kind: type[Problem] | None = None) -> None:
    """A method the run's kind of problem cannot train (a classifier's replay for a generator)
    is one line (:class:`ConfigError`), before anything is written.

    Example:
        >>> from anpyc.methods import create
        >>> check_method_fits(RunConfig.from_dict({"model": {"name": "vae"}}), create("er"))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        anpyc.errors.ConfigError: er (classifier-only) cannot train a generation model (--model vae); ...
    """
    kind = kind or problem_for(cfg)
    refused = kind.refused_tags & method.tags
    if refused:
        fits = method_names(without=kind.refused_tags)
        raise ConfigError(f"{method.name} ({', '.join(sorted(refused))}) cannot train a {kind.name} model "
                          f"(--model {cfg.model.name}); methods that can: {', '.join(fits)}")


def _checked(cfg: RunConfig, kind: type[Problem], tensorboard: bool | str | Path) -> RunConfig:
    cfg = _resolved(cfg, kind)
    if tensorboard:
        tensorboard_writer_class()  # a missing TensorBoard fails before anything is written
    try:
        device = torch.device(cfg.train.device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"train.device: {first_line(exc)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {cfg.train.device!r} but torch sees no CUDA device")
    if device.type == "meta":  # tensors with shapes and no values: nothing can be learnt or measured
        raise ConfigError("train.device is 'meta', which holds no values: train on cpu or cuda")
    if device.type not in ("cpu", "cuda"):  # mps, xpu...: this torch build may lack it
        try:
            torch.empty(0, device=device)
        except Exception as exc:  # noqa: BLE001 - whatever the backend raises (RuntimeError, a missing module...)
            why = first_line(exc).split(". ")[0][:120]
            raise ConfigError(f"train.device is {cfg.train.device!r}, which this torch build cannot use ({why})") from None
    return cfg


def _resume_state(cfg: RunConfig, out_dir: str | Path | None,
                  model: ContinualModel | GenerativeModel, method: Method,
                  n_tasks: int) -> LoopState | None:
    """The loop state of the newest valid checkpoint (``None``: none yet, start afresh);
    read on every rank, before anything is written."""
    if out_dir is None:
        raise OutputError("resume needs the run directory")
    out = Path(out_dir)
    if not (out / rundir.CONFIG).is_file():
        raise OutputError(f"{out} holds no run to resume (no {rundir.CONFIG})")
    if is_main_process():
        rundir.acquire(out)  # before the checkpoint is read: another writer fails here
    snapshot = ckpt.load_latest(out, cfg)
    if snapshot is None:
        return None
    method.to(torch.device(cfg.train.device))
    state = ckpt.restore(snapshot, cfg, model, method, n_tasks)
    log.info("resuming from %s: task %d, epoch %d", snapshot["file"], state.task + 1, state.epoch)
    return state


def _open_out_dir(cfg: RunConfig, out_dir: str | Path | None, overwrite: bool, resume: bool,
                  meta: dict | None = None) -> Path | None:
    """The run directory, on rank 0 only (every rank trains; only rank 0 writes)."""
    if out_dir is None or not is_main_process():
        return None
    if resume:
        return Path(out_dir)
    out = rundir.prepare(out_dir, overwrite)
    rundir.write_config(out, resolved_config(cfg, **(meta or {})))
    return out


def _run_loop(
    cfg: RunConfig, problem: Problem, model: ContinualModel | GenerativeModel, method: Method,
    stream: Stream, out: Path | None, quiet: bool,
    tracker: TaskTracker | None, state: LoopState, evaluators: list[Any],
) -> RunResult:
    """The loop with a run's callbacks: process sync, the problem kind's (a baseline, a judge),
    logs and checkpoints."""
    method.to(torch.device(cfg.train.device))
    callbacks: list[Any] = [DistributedSync(), *evaluators]
    decorrelate_rng_(cfg.seed)  # ranks > 0 only (after a restore, too): their own dropout masks
    logger = RunLogger(out, tracker, len(stream), problem.describe(), quiet, state.task)
    callbacks.append(logger)
    if out is not None:
        callbacks.append(ckpt.Checkpointer(out, cfg))
    loop_cfg = LoopConfig(cfg.train, cfg.seed, cfg.trained_scenario, forward_transfer=problem.forward_transfer)
    warm_up_torch()
    start = time.perf_counter() - state.clock.get("elapsed", 0.0)
    try:
        state = train_stream(model, method, stream, loop_cfg, training=problem.training(), callbacks=callbacks, state=state)
    except BaseException as exc:
        if out is not None:  # run.log (rank 0's) says why it ends here
            note_stop(exc)
        raise
    finally:
        logger.close()
    metrics = {**run_metrics(cfg, stream, model, method, state, time.perf_counter() - start), **problem.metrics(state)}
    R, V = state.progress["R"], state.progress["V"]
    if out is not None:
        rundir.write_results(out, R, V, metrics, problem.matrices(state))
    return RunResult(cfg, R, V, metrics, out, model, method)


def warm_up_torch() -> None:
    """Build a throwaway optimizer before the clock starts: a process's first one imports
    ``torch._dynamo`` (about 2 s), which would be charged to the first task of the process's
    first run, and bias the time ratios of a comparison whose runs share processes."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def run_metrics(cfg: RunConfig, stream: Stream, model: ContinualModel | GenerativeModel,
                method: Method, state: LoopState, total: float) -> dict:
    """Everything ``metrics.json`` holds about a finished stream."""
    p = state.progress
    fwt = p.get("acc_random") is not None and len(p["acc_before"]) == len(stream)
    metrics = summarize(p["R"], p["acc_before"], p["acc_random"]) if fwt else summarize(p["R"])
    val = summarize(p["V"])
    metrics.update({
        "method": cfg.method, "benchmark": stream.name, "scenario": cfg.scenario, "n_tasks": len(stream),
        "task_inference": cfg.task_inference,
        **cfg.run_options(),
        "seed": cfg.seed, "acc_matrix": p["R"].tolist(), "val_acc_matrix": p["V"].tolist(),
        "val_avg_acc": val["avg_acc"], "val_bwt": val["bwt"],
        "passes": list(p["passes"]),
        # importance estimates (Fisher, MAS, Omega) in passes over the task's training data, apart
        "importance_passes": [method.importance_examples(t) / max(len(stream[t].train), 1) for t in range(len(stream))],
        # forward passes spent on choices and stored targets (guard, calibration, stored logits), same unit
        "decision_passes": [method.decision_examples(t) / max(len(stream[t].train), 1) for t in range(len(stream))],
        "input_standardization": stream[0].info.get("standardize") if len(stream) else None,
        **cost_metrics(model, method, total, p["task_time"], p["eval_time"]),
        "world_size": world_size(),
        # how sparse and polarised the shared weights end up (ANPyC's claim; every method alike)
        "weight_distribution": body_weight_distribution(model),
    })
    if fwt:
        metrics.update({"acc_before_training": list(p["acc_before"]), "acc_random_init": list(p["acc_random"])})
    if "task_inference" in p:  # share of test and validation inputs attributed to their own task
        ti = p["task_inference"]
        metrics.update({"task_inference_matrix": ti.tolist(), "task_inference_acc": float(np.nanmean(ti[-1]))})
    metrics.update(method.summary())
    return metrics


def body_weight_distribution(model: ContinualModel | GenerativeModel) -> dict:
    """:func:`anpyc.metrics.weight_distribution` of every shared (body) weight of ``model``."""
    shared = [p.detach().flatten().cpu() for _, p in model.shared_parameters()]
    return weight_distribution(torch.cat(shared).double().numpy() if shared else [])


def cost_metrics(model: ContinualModel | GenerativeModel, method: Method, total: float,
                 task_time: list[float], eval_time: list[float]) -> dict:
    """Time, memory and size figures every run directory's metrics.json carries."""
    return {
        "time_s": total,
        "task_time_s": list(task_time),
        "eval_time_s": float(sum(eval_time)),
        "task_eval_time_s": list(eval_time),
        "train_time_s": float(total - sum(eval_time)),
        "peak_rss_mb": peak_rss_mb(),
        "n_shared_params": sum(p.numel() for _, p in model.shared_parameters()),
        "n_params": sum(p.numel() for p in model.parameters()),
        "method_state_mb": sum(b.numel() * b.element_size() for b in method.buffers()) / 2**20,
    }


def resume_run(run_dir: str | Path, quiet: bool = False, tensorboard: bool = False, method: Method | None = None,
               report: bool = True, stream: Stream | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its ``config.yaml`` and newest valid checkpoint
    (``method``: the method object to restore into, built from the config by default).

    A run that already finished (``metrics.json`` present) is not touched: its saved results
    are returned. A run on a stream passed from Python (``benchmark: custom`` without
    ``stream.source``) needs that ``stream`` again.

    Example:
        >>> result = resume_run("runs/pmnist-anpyc")  # doctest: +SKIP
    """
    run_dir = rundir.existing_dir(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise OutputError(f"{run_dir} holds no run to resume (no {rundir.CONFIG})")
    cfg = RunConfig.from_file(run_dir / rundir.CONFIG)
    if (run_dir / rundir.METRICS).is_file():
        metrics = rundir.read_metrics(run_dir)
        log.info("%s already finished; nothing to resume", run_dir)
        return RunResult(cfg, rundir.matrix(metrics["acc_matrix"]), rundir.matrix(metrics.get("val_acc_matrix", [])),
                         metrics, run_dir)
    return run(cfg, run_dir, quiet=quiet, resume=True, tensorboard=tensorboard, method=method, budget=None,
               report=report, stream=stream)
