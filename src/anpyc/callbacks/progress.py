"""Callbacks of the training loop that report progress: the per-task log line (``run.log``
and, without a progress bar, stderr), ``log.jsonl``, ``acc_curve.csv``/TensorBoard and the
progress bar. Checkpoints are :class:`anpyc.callbacks.checkpoint.Checkpointer`; distributed
synchronisation is :class:`anpyc.callbacks.distributed.DistributedSync`.

Example:
    >>> logger = RunLogger(out=None, tracker=None, total=3, desc="finetune on blobs", quiet=True)
    >>> logger.bar is None
    True
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anpyc import rundir
from anpyc.callbacks.tracking import TaskTracker
from anpyc.errors import one_line, stop_word

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("anpyc.runner")
runlog = logging.getLogger("anpyc.runlog")  # per-task lines for run.log only
runlog.propagate = False
runlog.setLevel(logging.INFO)


def progress_bar(total: int, quiet: bool, desc: str, done: int = 0, unit: str = "task") -> tqdm | None:
    """A tqdm bar over tasks (or other ``unit``), or ``None`` when quiet or under CI."""
    if quiet or os.environ.get("CI"):
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
    bar.update(done)
    return bar


def task_line(record: dict, n_tasks: int) -> str:
    """The one-line summary of a task (``run.log``, stderr)."""
    if "avg_fid" in record:
        return (f"task {record['task'] + 1}/{n_tasks}: recognition {record['avg_acc']:.4f}, FD {record['avg_fid']:.2f}, "
                f"loss {record['loss']:.4f}, {record['time_s']:.1f}s")
    return f"task {record['task'] + 1}/{n_tasks}: avg acc {record['avg_acc']:.4f}, loss {record['loss']:.4f}, {record['time_s']:.1f}s"


class RunLogger:
    """Writes each task's record: ``run.log`` line, ``log.jsonl``, the tracker, the bar."""

    def __init__(self, out: Path | None, tracker: TaskTracker | None, total: int, desc: str, quiet: bool, done: int = 0) -> None:
        self.out, self.tracker, self.total = out, tracker, total
        self.bar = progress_bar(total, quiet, desc, done)
        self._shown = 0.0  # when the bar last showed a batch (monotonic seconds)

    def on_step(self, loop: Any, step: int, loss: float) -> None:
        if self.tracker is not None:
            self.tracker.on_step(step, loss)
        # progress inside a task: the batch and its loss, at most twice a second
        if self.bar is not None and time.monotonic() - self._shown >= 0.5:
            self.bar.set_postfix_str(f"batch {step}, loss {loss:.3f}")
            self._shown = time.monotonic()

    def on_task_end(self, loop: Any, record: dict) -> None:
        line = task_line(record, self.total)
        runlog.info(line)  # run.log always; stderr only when no progress bar shows it
        if self.bar is None:
            log.info(line)
        else:
            self.bar.set_postfix(avg_acc=f"{record['avg_acc']:.3f}")
            self.bar.update(1)
        if self.out is not None:
            rundir.append_log(self.out, record)
        if self.tracker is not None:
            self.tracker.log_task(record)

    def on_stream_end(self, loop: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def attach_run_log(out: Path) -> logging.Handler:
    """Send the package's log records and the per-task lines to ``out/run.log``."""
    handler = logging.FileHandler(out / rundir.RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("anpyc").addHandler(handler)
    runlog.addHandler(handler)
    return handler


def note_stop(exc: BaseException) -> None:
    """Say in ``run.log`` why the run stopped before its end (the command line prints it once, on
    stderr; without this line ``run.log`` just ends after the last finished task)."""
    if isinstance(exc, KeyboardInterrupt):
        runlog.warning("%s %s", rundir.RUN_STOPPED, stop_word(exc))
    else:
        runlog.error("%s %s", rundir.RUN_FAILED, one_line(exc))


def detach_run_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("anpyc").removeHandler(handler)
        runlog.removeHandler(handler)
        handler.close()
