"""Logs written while a run trains: ``acc_curve.csv`` always, TensorBoard on request.

``acc_curve.csv`` has one row per task learned (rewritten atomically after each task, so it is
readable mid-run and never half written): ``task, avg_acc, val_avg_acc, loss, steps, time_s,
eval_time_s, acc_task_0 .. acc_task_{T-1}`` (a blank cell = task not learned yet).

With TensorBoard (``anpyc run --tensorboard``; needs ``pip install 'anpyc[tensorboard]'``) the
run writes event files holding, against the number of tasks learned, ``acc/task_<j>``,
``acc/average``, ``val_acc/average``, ``loss/task`` and ``time/task_s``, plus the training loss
of every optimisation step as ``loss/step``. View with ``tensorboard --logdir DIR/tb``.

Example:
    >>> tracker = TaskTracker("runs/r")  # doctest: +SKIP
    >>> tracker.log_task({"task": 0, "acc": [0.9], "val_acc": [0.88], "avg_acc": 0.9,
    ...                   "loss": 0.3, "steps": 40, "time_s": 1.2})  # doctest: +SKIP
    >>> tracker.close()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anpyc.errors import ConfigError
from anpyc.io import write_csv
from anpyc.rundir import CURVE_CSV, TB

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)

CSV_NAME = CURVE_CSV
_INSTALL_HINT = "--tensorboard needs the tensorboard package: pip install 'anpyc[tensorboard]' (or: pip install tensorboard)"


def tensorboard_writer_class() -> type[SummaryWriter]:
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line :class:`ConfigError` saying
    how to install TensorBoard when it is not importable."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ConfigError(_INSTALL_HINT) from exc
    return SummaryWriter


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6f}"
    return str(v)


class TaskTracker:
    """Per-task CSV log in ``out_dir`` (if given) and optional TensorBoard events in
    ``tensorboard_dir``; :meth:`on_step` is a ``fit`` step callback."""

    def __init__(self, out_dir: str | Path | None = None, tensorboard_dir: str | Path | None = None) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.rows: list[dict[str, Any]] = []
        self.global_step = 0
        self.writer = None
        if tensorboard_dir is not None:
            writer_cls = tensorboard_writer_class()
            self.writer = writer_cls(log_dir=str(tensorboard_dir))

    def on_step(self, step: int, loss: float) -> None:
        """Training loss of one optimisation step (steps counted across all tasks)."""
        self.global_step += 1
        if self.writer is not None:
            self.writer.add_scalar("loss/step", loss, self.global_step)

    def log_task(self, record: dict[str, Any]) -> None:
        """One task's record as the runner writes it to ``log.jsonl``."""
        t = int(record["task"])
        acc = list(record.get("acc") or [])
        val = [v for v in (record.get("val_acc") or []) if v is not None and math.isfinite(v)]
        row = {
            "task": t,
            "avg_acc": record.get("avg_acc"),
            "val_avg_acc": sum(val) / len(val) if val else None,
            "loss": record.get("loss"),
            "steps": record.get("steps"),
            "time_s": record.get("time_s"),
            "eval_time_s": record.get("eval_time_s"),
            "acc": acc,
        }
        self.rows.append(row)
        if self.out_dir is not None:
            self._write_csv()
        if self.writer is not None:
            step = t + 1  # x axis: number of tasks learned, as in the report's plots
            for j, a in enumerate(acc):
                if a is not None and math.isfinite(a):
                    self.writer.add_scalar(f"acc/task_{j}", a, step)
            for key, tag in (("avg_acc", "acc/average"), ("val_avg_acc", "val_acc/average"),
                             ("loss", "loss/task"), ("time_s", "time/task_s")):
                v = row[key]
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(tag, v, step)
            if isinstance(record.get("free_fraction_total"), (int, float)):
                self.writer.add_scalar("capacity/free_fraction", record["free_fraction_total"], step)
            self.writer.flush()

    def _write_csv(self) -> None:
        width = max((len(r["acc"]) for r in self.rows), default=0)
        fixed = ["task", "avg_acc", "val_avg_acc", "loss", "steps", "time_s", "eval_time_s"]
        header = fixed + [f"acc_task_{j}" for j in range(width)]
        rows = [
            [_cell(r[k]) for k in fixed] + [_cell(r["acc"][j]) if j < len(r["acc"]) else "" for j in range(width)]
            for r in self.rows
        ]
        write_csv(self.out_dir / CSV_NAME, rows, header)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def open_tracker(out_dir: str | Path | None, tensorboard: bool | str | Path = False) -> TaskTracker | None:
    """The tracker ``run`` uses: TensorBoard in ``out_dir/tb`` when ``tensorboard`` is True, in
    the given folder when it is a path; ``None`` when there is nothing to write."""
    tb_dir: Path | None = None
    if tensorboard is True:
        if out_dir is None:
            raise ConfigError("--tensorboard needs an output directory (--out)")
        tb_dir = Path(out_dir) / TB
    elif tensorboard:
        tb_dir = Path(tensorboard)
    if out_dir is None and tb_dir is None:
        return None
    return TaskTracker(out_dir, tb_dir)
