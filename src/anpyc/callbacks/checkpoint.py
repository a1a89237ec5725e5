"""Checkpoints: a killed run continues where it stopped and ends with the same numbers, bit
for bit on CPU. :class:`Checkpointer` is a callback of :func:`anpyc.loop.train.train_stream`;
:func:`restore` gives the :class:`~anpyc.loop.train.LoopState` a resumed run starts from.

A run directory gets ``checkpoints/ckpt-NNNNNN.pt`` after every task (and every
``train.checkpoint_every`` epochs of a task's main training phase); the last two are kept.
Each file is one header line ``ANPYC-CKPT 1 <sha256 of the payload>`` followed by the
``torch.save`` payload, written atomically, so a file is either complete and verifiable or
detectably bad; a bad newest checkpoint falls back to the one before with a warning.
A method's ``state_dict`` is its whole state: restoring needs no replay of any hook.

The payload holds everything the rest of the run depends on: model weights (and head sizes,
to rebuild the heads), optimizer state (and which parameters each group holds; also the
auxiliary network's, a GAN's discriminator), the method's
``state_dict`` (its buffers are its whole state), every RNG state (torch, numpy, python, the
shuffling generator), the position in the stream, the accuracy matrices and timings so far,
and a fingerprint of the config that refuses a checkpoint from a different run.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> from anpyc.runner import run
    >>> _ = run(cfg, "runs/doc-run", quiet=True, overwrite=True)  # doctest: +SKIP
    >>> load_latest("runs/doc-run", cfg)["position"]  # doctest: +SKIP
    {'task': 2, 'epoch': 0, ...}
"""

from __future__ import annotations

import copy
import hashlib
import io
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig, to_dict
from anpyc.errors import CheckpointError, first_line
from anpyc.io import atomic_write_bytes
from anpyc.loop.train import Loop, LoopState, make_optimizer
from anpyc.methods import typed
from anpyc.methods.base import Method
from anpyc.models.heads import ContinualModel
from anpyc.rundir import CHECKPOINTS

log = logging.getLogger(__name__)

DIRNAME = CHECKPOINTS
KEEP = 2
MAGIC = b"ANPYC-CKPT"
VERSION = 2
# train settings that may differ between a run and its resumption without changing results
_FREE_TRAIN_KEYS = ("device", "threads", "checkpoint_every")
# progress entries that must be T x T matrices; the others are per-task lists or matrices of their own
MATRIX_KEYS = ("R", "V")


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
        "method_params": typed(cfg).params_dict(),  # every field: a default given or left out is the same run
        "model": to_dict(cfg.model),
        "stream": to_dict(cfg.stream),
        "train": train,
        "seed": cfg.seed,
        # only when asked for: a checkpoint written before task inference was a run option still fits
        **cfg.run_options(),
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


def _named_trainable(model: ContinualModel, method: Method) -> dict[str, torch.nn.Parameter]:
    """The model's parameters by name, then the method's own (``method.<name>``)."""
    return {**dict(model.named_parameters()), **{f"method.{n}": p for n, p in method.named_parameters()}}


def optimizer_state(model: ContinualModel, method: Method, optimizer: torch.optim.Optimizer | None) -> dict | None:
    """The optimizer's state plus the names of the parameters in each group (to rebuild it)."""
    if optimizer is None:
        return None
    names = {id(p): n for n, p in _named_trainable(model, method).items()}
    groups = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    return {"groups": groups, "state": optimizer.state_dict()}


def rebuild_optimizer(
    model: ContinualModel, method: Method, saved: dict | None, cfg: TrainConfig, name: str = "<checkpoint>"
) -> torch.optim.Optimizer | None:
    if saved is None:
        return None
    params = _named_trainable(model, method)
    try:
        groups = [[params[n] for n in names] for names in saved["groups"]]
        optimizer = make_optimizer(groups[0], cfg)
        for group in groups[1:]:
            optimizer.add_param_group({"params": group})
        optimizer.load_state_dict(saved["state"])
    except (KeyError, ValueError, RuntimeError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{name}: optimizer state does not fit the model: {first_line(exc)}") from exc
    return optimizer


def _load(module: torch.nn.Module, state: dict, what: str, name: str) -> None:
    try:
        # a copy: extra state (e.g. a history dict) must not alias the payload, which is loaded twice
        module.load_state_dict(copy.deepcopy(state))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{name}: {what} does not fit this run: {first_line(exc)}") from exc


class Checkpointer:
    """Callback of :func:`~anpyc.loop.train.train_stream`: a checkpoint after every task and every
    ``train.checkpoint_every`` epochs of a task's main training phase.

    A checkpoint holds the loop state (position, optimizer, shuffling generator, results and
    clock), model and method state, every global RNG and the config's fingerprint.
    """

    def __init__(self, run_dir: Path, cfg: RunConfig) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.fingerprint = fingerprint(cfg)

    def due(self, epochs_done: int) -> bool:
        """Whether the main training phase checkpoints after ``epochs_done`` epochs (the
        last epoch is followed by the task's own checkpoint)."""
        every = self.cfg.train.checkpoint_every
        return bool(every) and epochs_done % every == 0 and epochs_done < self.cfg.train.epochs

    def on_epoch_end(self, loop: Loop, epochs_done: int) -> None:
        if self.due(epochs_done):
            self.save(loop)

    def on_task_end(self, loop: Loop, record: dict) -> None:
        self.save(loop)

    def save(self, loop: Loop) -> Path:
        """Checkpoint the loop where it stands (``state.epoch == 0``: between tasks)."""
        state = loop.state
        payload = {
            "format": VERSION,
            "fingerprint": self.fingerprint,
            "position": {"task": int(state.task), "epoch": int(state.epoch)},
            "clock": {k: float(v) for k, v in loop.clock().items()},
            "model": loop.model.state_dict(),
            "head_sizes": loop.model.head_sizes,
            "method": loop.method.state_dict(),
            "optimizer": optimizer_state(loop.model, loop.method, state.optimizer),
            "aux_optimizer": optimizer_state(loop.model, loop.method, state.aux_optimizer),
            "rng": rng_state(state.generator),
            "progress": {k: _to_saved(v) for k, v in state.progress.items()},
        }
        path = save(self.run_dir, payload)
        log.debug("checkpoint %s (task %d, epoch %d)", path.name, state.task, state.epoch)
        return path


def _progress(payload: dict, n_tasks: int, name: str) -> dict[str, Any]:
    try:
        progress = {k: (v.numpy().copy() if isinstance(v, torch.Tensor) else list(v)) for k, v in payload["progress"].items()}
        if any(k not in progress or progress[k].shape != (n_tasks, n_tasks) for k in MATRIX_KEYS):
            raise ValueError("progress record does not fit the stream")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{name}: malformed checkpoint ({type(exc).__name__}: {exc})") from exc
    return progress


def restore(payload: dict, cfg: RunConfig, model: ContinualModel, method: Method, n_tasks: int) -> LoopState:
    """Put model, method and every RNG back as they were at the checkpoint; return the loop
    state to resume from. No hook runs: the state is the whole state."""
    name = payload.get("file", "<checkpoint>")
    try:
        pos, heads = payload["position"], list(payload["head_sizes"])
        task, epoch = int(pos["task"]), int(pos["epoch"])
        missing = {"optimizer", "progress", "clock"} - set(payload)
        if missing:
            raise KeyError(", ".join(sorted(missing)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{name}: malformed checkpoint ({type(exc).__name__}: {exc})") from exc
    progress = _progress(payload, n_tasks, name)
    # a multi-head model has one head per started task; a single head once any task started;
    # a model without heads (a conditional generator) none
    started = task + (epoch > 0)
    expected = {"multi": started, "single": min(started, 1)}.get(model.head_mode, 0)
    if not (0 <= task <= n_tasks and 0 <= epoch < cfg.train.epochs and len(heads) == expected):
        raise CheckpointError(
            f"{name}: position task {task}, epoch {epoch} with {len(heads)} head(s) does not fit this run "
            f"({n_tasks} tasks of {cfg.train.epochs} epochs)"
        )
    model.ensure_heads(heads)
    _load(model, payload["model"], "model state", name)
    _load(method, payload["method"], "method state", name)
    method.to(torch.device(cfg.train.device))
    state = LoopState(n_tasks, torch.Generator(), task=task, epoch=epoch, progress=progress,
                      clock={k: float(v) for k, v in payload["clock"].items()})
    state.optimizer = rebuild_optimizer(model, method, payload["optimizer"], cfg.train, name)
    state.aux_optimizer = rebuild_optimizer(model, method, payload.get("aux_optimizer"), cfg.train, name)
    set_rng_state(payload["rng"], state.generator)
    return state


def _to_saved(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return [float(v) for v in value]
