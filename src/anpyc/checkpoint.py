"""Checkpoints: a killed run continues where it stopped and ends with the same numbers, bit
for bit on CPU.

A run directory gets ``checkpoints/ckpt-NNNNNN.pt`` after every task (and every
``train.checkpoint_every`` epochs of a task's main training phase); the last two are kept.
Each file is one header line ``ANPYC-CKPT 1 <sha256 of the payload>`` followed by the
``torch.save`` payload, written atomically, so a file is either complete and verifiable or
detectably bad; a bad newest checkpoint falls back to the one before with a warning.

The payload holds everything the rest of the run depends on: model weights (and head sizes,
to rebuild the heads), optimizer state (and which parameters each group holds), the method's
``state_dict`` (its buffers are its whole state), every RNG state (torch, numpy, python, the
shuffling generator), the position in the stream, the accuracy matrices and timings so far,
and a fingerprint of the config that refuses a checkpoint from a different run.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> from anpyc.runner import run
    >>> _ = run(cfg, "/tmp/anpyc-doc-run", quiet=True, overwrite=True)  # doctest: +SKIP
    >>> load_latest("/tmp/anpyc-doc-run", cfg)["position"]  # doctest: +SKIP
    {'task': 2, 'epoch': 0, ...}
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig, to_dict
from anpyc.errors import CheckpointError
from anpyc.io import atomic_write_bytes, atomic_write_text
from anpyc.methods import resolved_params
from anpyc.methods.base import Method
from anpyc.models.heads import ContinualModel
from anpyc.train import make_optimizer

log = logging.getLogger(__name__)

DIRNAME = "checkpoints"
KEEP = 2
MAGIC = b"ANPYC-CKPT"
VERSION = 1
# train settings that may differ between a run and its resumption without changing results
_FREE_TRAIN_KEYS = ("device", "threads", "checkpoint_every")
# what the runner saves as progress: accuracy matrices (T x T) and per-task lists
PROGRESS_KEYS = ("R", "V", "acc_before", "acc_random", "task_time", "eval_time")


# ----------------------------------------------------------------------------- file format
def encode(payload: dict) -> bytes:
    """Header line with the payload's sha256, then the ``torch.save`` bytes."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    body = buf.getvalue()
    return MAGIC + b" %d " % VERSION + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def decode(raw: bytes, name: str = "<checkpoint>") -> dict:
    """Verify the header and checksum and unpickle (tensors and plain types only)."""
    head, sep, body = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC:
        raise CheckpointError(f"{name}: not an anpyc checkpoint (bad header)")
    if parts[1] != str(VERSION).encode():
        raise CheckpointError(f"{name}: checkpoint format {parts[1].decode(errors='replace')}, expected {VERSION}")
    if hashlib.sha256(body).hexdigest().encode() != parts[2]:
        raise CheckpointError(f"{name}: checksum mismatch (truncated or corrupt)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises many types; the checksum passed, so say so
        raise CheckpointError(f"{name}: unreadable payload ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or not {"position", "model", "method", "rng"} <= set(payload):
        raise CheckpointError(f"{name}: payload lacks the checkpoint fields")
    return payload


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run directory, newest first."""
    folder = Path(run_dir) / DIRNAME
    if not folder.is_dir():
        return []
    return sorted(folder.glob("ckpt-*.pt"), key=lambda p: p.name, reverse=True)


def save(run_dir: str | Path, payload: dict, keep: int = KEEP) -> Path:
    """Write the next checkpoint atomically, then drop all but the newest ``keep``.

    A failed write raises :class:`~anpyc.errors.OutputError` and leaves every earlier
    checkpoint as it was.
    """
    existing = list_checkpoints(run_dir)
    seq = int(existing[0].stem.split("-")[1]) + 1 if existing else 1
    folder = Path(run_dir) / DIRNAME
    for stale in folder.glob(".ckpt-*.tmp"):  # left by a kill during a write
        stale.unlink(missing_ok=True)
    path = atomic_write_bytes(folder / f"ckpt-{seq:06d}.pt", encode(payload))
    for old in list_checkpoints(run_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- fingerprint
def fingerprint(cfg: RunConfig) -> dict:
    """What must match for a checkpoint to belong to a run (``device``/``threads`` may change)."""
    train = {k: v for k, v in to_dict(cfg.train).items() if k not in _FREE_TRAIN_KEYS}
    return {
        "method": cfg.method,
        "method_params": to_dict(resolved_params(cfg.method, cfg.method_params)),
        "model": to_dict(cfg.model),
        "stream": to_dict(cfg.stream),
        "train": train,
        "seed": cfg.seed,
    }


def _first_difference(saved: Any, wanted: Any, where: str = "") -> str | None:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for key in sorted(set(saved) | set(wanted), key=str):
            diff = _first_difference(saved.get(key), wanted.get(key), f"{where}.{key}" if where else str(key))
            if diff:
                return diff
        return None
    if saved != wanted:
        return f"{where or 'config'} {saved!r} (this run: {wanted!r})"
    return None


def load_latest(run_dir: str | Path, cfg: RunConfig | None = None) -> dict | None:
    """The newest checkpoint that verifies and belongs to ``cfg``'s run; ``None`` if there
    is none at all. Bad newer ones are skipped with a warning; if every one is bad a
    :class:`CheckpointError` lists why."""
    paths = list_checkpoints(run_dir)
    reasons = []
    for path in paths:
        try:
            payload = decode(path.read_bytes(), path.name)
            if cfg is not None:
                diff = _first_difference(payload.get("fingerprint"), fingerprint(cfg))
                if diff:
                    raise CheckpointError(f"{path.name}: written by another run: {diff}")
        except OSError as exc:
            reasons.append(f"{path.name}: cannot read ({exc.strerror or exc})")
            continue
        except CheckpointError as exc:
            reasons.append(str(exc))
            continue
        if reasons:
            log.warning("skipped bad checkpoint(s) (%s); resuming from %s", "; ".join(reasons), path.name)
        payload["file"] = path.name
        return payload
    if reasons:
        raise CheckpointError(f"no usable checkpoint in {Path(run_dir) / DIRNAME}: " + "; ".join(reasons))
    return None


# ----------------------------------------------------------------------------- state
def rng_state(generator: torch.Generator) -> dict:
    """Every random stream the run draws from, as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
        "generator": generator.get_state(),
    }


def set_rng_state(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(state["generator"])


def optimizer_state(model: ContinualModel, optimizer: torch.optim.Optimizer | None) -> dict | None:
    """The optimizer's state plus the names of the parameters in each group (to rebuild it)."""
    if optimizer is None:
        return None
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    return {"groups": groups, "state": optimizer.state_dict()}


def rebuild_optimizer(
    model: ContinualModel, saved: dict | None, cfg: TrainConfig, name: str = "<checkpoint>"
) -> torch.optim.Optimizer | None:
    if saved is None:
        return None
    params = dict(model.named_parameters())
    try:
        groups = [[params[n] for n in names] for names in saved["groups"]]
        optimizer = make_optimizer(groups[0], cfg)
        for group in groups[1:]:
            optimizer.add_param_group({"params": group})
        optimizer.load_state_dict(saved["state"])
    except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{name}: optimizer state does not fit the model: {_first_line(exc)}") from exc
    return optimizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load(module: torch.nn.Module, state: dict, what: str, name: str) -> None:
    try:
        # a copy: extra state (e.g. a history dict) must not alias the payload, which is loaded twice
        module.load_state_dict(copy.deepcopy(state))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{name}: {what} does not fit this run: {_first_line(exc)}") from exc


class Checkpointer:
    """Writes a run's checkpoints; holds references to the run's live objects.

    ``progress`` maps names to the run's mutable results (the accuracy matrices, per-task
    lists): they are saved as they are at each call of :meth:`save`.
    """

    def __init__(
        self,
        run_dir: Path,
        cfg: RunConfig,
        model: ContinualModel,
        method: Method,
        generator: torch.Generator,
        progress: dict[str, Any],
    ) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.model = model
        self.method = method
        self.generator = generator
        self.progress = progress
        self.fingerprint = fingerprint(cfg)

    def due(self, epochs_done: int) -> bool:
        """Whether the main training phase checkpoints after ``epochs_done`` epochs (the
        last epoch is followed by the task's own checkpoint)."""
        every = self.cfg.train.checkpoint_every
        return bool(every) and epochs_done % every == 0 and epochs_done < self.cfg.train.epochs

    def save(self, task: int, epoch: int, optimizer: torch.optim.Optimizer | None, clock: dict[str, float]) -> Path:
        """Checkpoint at ``task`` with ``epoch`` epochs done (``epoch=0``: the task has not
        started). ``clock`` holds elapsed seconds (``elapsed``; mid-task also ``task_elapsed``
        and ``fwt_eval``) so resumed timings add up."""
        payload = {
            "format": VERSION,
            "fingerprint": self.fingerprint,
            "position": {"task": int(task), "epoch": int(epoch)},
            "clock": {k: float(v) for k, v in clock.items()},
            "model": self.model.state_dict(),
            "head_sizes": self.model.head_sizes,
            "method": self.method.state_dict(),
            "optimizer": optimizer_state(self.model, optimizer),
            "rng": rng_state(self.generator),
            "progress": {k: _to_saved(v) for k, v in self.progress.items()},
        }
        path = save(self.run_dir, payload)
        log.debug("checkpoint %s (task %d, epoch %d)", path.name, task, epoch)
        return path


def restore(
    payload: dict,
    cfg: RunConfig,
    model: ContinualModel,
    method: Method,
    generator: torch.Generator,
    tasks: Sequence,
) -> tuple[torch.optim.Optimizer | None, dict[str, Any]]:
    """Put model, method, RNGs back as they were at the checkpoint; return the optimizer and
    the saved progress (matrices as numpy arrays, lists as lists).

    Mid-task (``epoch > 0``) the task's ``before_task`` runs again first, so hooks or
    attributes it sets up exist, and the saved state then overwrites whatever it changed.
    """
    name = payload.get("file", "<checkpoint>")
    try:
        pos, heads = payload["position"], list(payload["head_sizes"])
        task, epoch = int(pos["task"]), int(pos["epoch"])
        missing = {"optimizer", "progress", "clock"} - set(payload)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
        progress = {k: (v.numpy().copy() if isinstance(v, torch.Tensor) else list(v)) for k, v in payload["progress"].items()}
        if set(progress) != set(PROGRESS_KEYS) or any(progress[k].shape != (len(tasks), len(tasks)) for k in ("R", "V")):
            raise ValueError("progress record does not fit the stream")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{name}: malformed checkpoint ({type(exc).__name__}: {exc})") from exc
    # a multi-head model has one head per started task; a single head once any task started
    started = task + (epoch > 0)
    expected = started if model.head_mode == "multi" else min(started, 1)
    if not (0 <= task <= len(tasks) and 0 <= epoch < cfg.train.epochs and len(heads) == expected):
        raise CheckpointError(
            f"{name}: position task {task}, epoch {epoch} with {len(heads)} head(s) does not fit this run "
            f"({len(tasks)} tasks of {cfg.train.epochs} epochs)"
        )
    model.ensure_heads(heads)
    _load(model, payload["model"], "model state", name)
    _load(method, payload["method"], "method state", name)
    if epoch > 0:
        method.before_task(model, tasks[task])
        _load(model, payload["model"], "model state", name)
        _load(method, payload["method"], "method state", name)
    method.to(torch.device(cfg.train.device))
    optimizer = rebuild_optimizer(model, payload["optimizer"], cfg.train, name)
    set_rng_state(payload["rng"], generator)
    return optimizer, progress


def _to_saved(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return [float(v) for v in value]


def trim_log(run_dir: Path, tasks_done: int) -> list[dict]:
    """Keep only ``log.jsonl`` records of tasks the checkpoint has (a kill may have left a
    record of a task that is trained again, or half a line); return the records kept."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        return []
    kept, records = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("task"), int) and record["task"] < tasks_done:
            kept.append(line + "\n")
            records.append(record)
    text = "".join(kept)
    if text != path.read_text(encoding="utf-8"):
        atomic_write_text(path, text)
    return records


def resume_run(run_dir: str | Path, quiet: bool = False, tensorboard: bool = False):
    """Continue the run in ``run_dir`` from its ``config.yaml`` and newest valid checkpoint.

    A run that already finished (``metrics.json`` present) is not touched: its saved results
    are returned. Returns a :class:`~anpyc.runner.RunResult`.

    Example:
        >>> result = resume_run("runs/pmnist-anpyc")  # doctest: +SKIP
    """
    from anpyc.errors import OutputError
    from anpyc.runner import RunResult, run

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise OutputError(f"{run_dir} holds no run to resume (no config.yaml)")
    cfg = RunConfig.from_file(run_dir / "config.yaml")
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = read_metrics(metrics_path)
        log.info("%s already finished; nothing to resume", run_dir)
        return RunResult(cfg, matrix(metrics["acc_matrix"]), matrix(metrics.get("val_acc_matrix", [])), metrics, run_dir)
    return run(cfg, run_dir, quiet=quiet, resume=True, tensorboard=tensorboard)


def read_metrics(path: str | Path) -> dict:
    """``metrics.json`` of a finished run, with a clear error if it is unreadable."""
    from anpyc.errors import OutputError

    try:
        metrics = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {_first_line(exc)}") from exc
    if not isinstance(metrics, dict) or "acc_matrix" not in metrics:
        raise OutputError(f"{path} is not a run's metrics.json (no acc_matrix)")
    return metrics


def matrix(rows: list) -> np.ndarray:
    """A JSON matrix (``null`` for not-yet-seen tasks) as a float array with NaN."""
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=float).reshape(len(rows), -1)
