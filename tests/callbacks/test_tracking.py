import csv
import os
import sys

import pytest

from anpyc.callbacks.tracking import TaskTracker, open_tracker
from anpyc.errors import ConfigError


def _record(t, acc, loss=0.5):
    return {"task": t, "acc": acc, "val_acc": [a - 0.1 for a in acc], "avg_acc": sum(acc) / len(acc),
            "loss": loss, "steps": 10, "time_s": 1.5, "eval_time_s": 0.2}


def test_csv_rewritten_after_each_task(tmp_path):
    tracker = TaskTracker(tmp_path)
    tracker.log_task(_record(0, [0.9]))
    rows = list(csv.DictReader((tmp_path / "acc_curve.csv").open()))
    assert len(rows) == 1 and rows[0]["acc_task_0"] == "0.900000"
    tracker.log_task(_record(1, [0.8, 0.7]))
    rows = list(csv.DictReader((tmp_path / "acc_curve.csv").open()))
    assert [r["task"] for r in rows] == ["0", "1"]
    assert rows[0]["acc_task_1"] == "" and rows[1]["acc_task_1"] == "0.700000"
    assert float(rows[1]["avg_acc"]) == pytest.approx(0.75) and float(rows[1]["val_avg_acc"]) == pytest.approx(0.65)
    tracker.close()


def test_no_output_no_tracker():
    assert open_tracker(None, False) is None
    with pytest.raises(ConfigError, match="needs an output directory"):
        open_tracker(None, True)


def test_missing_tensorboard_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'anpyc\[tensorboard\]'"):
        open_tracker(tmp_path, True)
    assert not (tmp_path / "tb").exists()


def test_tensorboard_events_hold_accuracies_and_losses(tmp_path):
    if not os.environ.get("CI"):  # under CI (make test installs it with the dev extras) a missing one fails
        pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = open_tracker(tmp_path, True)
    for step, loss in enumerate([1.0, 0.8, 0.6], 1):
        tracker.on_step(step, loss)
    tracker.log_task(_record(0, [0.9], loss=0.7))
    tracker.log_task(_record(1, [0.8, 0.6], loss=0.4))
    tracker.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"acc/task_0", "acc/task_1", "acc/average", "val_acc/average", "loss/task", "loss/step"} <= tags
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("acc/task_0")] == [(1, 0.9), (2, 0.8)]
    assert [e.step for e in acc.Scalars("acc/task_1")] == [2]
    assert [round(e.value, 4) for e in acc.Scalars("loss/step")] == [1.0, 0.8, 0.6]
