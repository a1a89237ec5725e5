import json
import logging
import random

import numpy as np
import pytest
import torch

from anpyc.callbacks import checkpoint as ck
from anpyc.callbacks.checkpoint import decode, encode, list_checkpoints, load_latest
from anpyc.config import RunConfig
from anpyc.errors import CheckpointError
from anpyc.methods import METHODS, method_names
from anpyc.runner import resume_run, run
from killing import Killed, kill_after

BLOBS = {
    "stream": {"benchmark": "blobs", "tasks": 3, "subsample": 200},
    "model": {"hidden": [16]},
    "train": {"epochs": 4, "checkpoint_every": 1, "threads": 1},
}


def test_encode_decode_round_trip_and_detects_every_truncation():
    payload = {"position": {"task": 1, "epoch": 0}, "model": {"w": torch.arange(5.0)}, "method": {}, "rng": {}}
    raw = encode(payload)
    back = decode(raw)
    assert back["position"] == payload["position"] and torch.equal(back["model"]["w"], payload["model"]["w"])
    for cut in (0, 10, len(raw) // 2, len(raw) - 1):
        with pytest.raises(CheckpointError):
            decode(raw[:cut])
    flipped = bytearray(raw)
    flipped[-20] ^= 0xFF
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        decode(bytes(flipped))


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(3)
    state = ck.rng_state(gen)
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    ck.set_rng_state(decode(encode({"position": 0, "model": 0, "method": 0, "rng": state}))["rng"], gen)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=gen))
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2] and torch.equal(first[3], again[3])


def test_keeps_the_last_two_and_checkpoints_every_epoch(tmp_path):
    run(RunConfig.from_dict(BLOBS), tmp_path / "r", quiet=True)
    names = [p.name for p in list_checkpoints(tmp_path / "r")]
    # 3 tasks x (3 mid-task + 1 task-end) = 12 checkpoints written, two kept
    assert names == ["ckpt-000012.pt", "ckpt-000011.pt"]
    newest = load_latest(tmp_path / "r", RunConfig.from_dict(BLOBS))
    assert newest["position"] == {"task": 3, "epoch": 0} and newest["head_sizes"] == [4, 4, 4]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # finetune, plain SGD, fresh optimizer per task
        pytest.param({"method": "joint", "model": {"hidden": [16], "dropout": 0.2},
                      "train": {"optimizer": "adam", "lr": 0.01, "reset_optimizer": False}}, marks=pytest.mark.slow),
        # pruning with retrain(epochs) inside after_task, owner masks, history in extra state
        pytest.param({"method": "anpyc-masks", "method_params": {"retrain_epochs": 1, "reinit": "random",
                                                                 "importance_samples": 100}}, marks=pytest.mark.slow),
        pytest.param({"method": "anpyc", "method_params": {"retrain_epochs": 0.5, "importance_samples": 100},
                      "train": {"momentum": 0.9, "reset_optimizer": False}}, marks=pytest.mark.slow),
    ],
    ids=["finetune-sgd", "joint-adam-dropout-kept-optimizer", "anpyc-masks-prune-retrain-random-reinit", "anpyc-momentum"],
)
def test_resume_after_each_kill_point_is_bit_exact(tmp_path, monkeypatch, overrides):
    cfg_dict = {**BLOBS, **{k: v for k, v in overrides.items() if k != "train"}}
    cfg_dict["train"] = {**BLOBS["train"], **overrides.get("train", {})}
    cfg = RunConfig.from_dict(cfg_dict)
    full = run(cfg, tmp_path / "full", quiet=True)
    # kill after a mid-task checkpoint (2: task 0 epoch 2), a task-end one (4), one in the last
    # task (10), and the final one (12: all tasks done, metrics not yet written)
    for n in (2, 4, 10, 12):
        out = tmp_path / f"killed{n}"
        with monkeypatch.context() as m:
            kill_after(m, n)
            with pytest.raises(Killed):
                run(cfg, out, quiet=True)
        assert not (out / "metrics.json").exists()
        resumed = resume_run(out, quiet=True)
        np.testing.assert_array_equal(resumed.acc_matrix, full.acc_matrix)
        np.testing.assert_array_equal(resumed.val_acc_matrix, full.val_acc_matrix)
        assert resumed.metrics["acc_before_training"] == full.metrics["acc_before_training"]
        for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
            assert torch.equal(a, b)
        mine, theirs = resumed.method.state_dict(), full.method.state_dict()
        assert mine.keys() == theirs.keys()
        for key in mine:  # buffers, and extra state such as a method's history
            assert torch.equal(mine[key], theirs[key]) if isinstance(mine[key], torch.Tensor) else mine[key] == theirs[key], key
        assert [json.loads(line)["task"] for line in (out / "log.jsonl").read_text().splitlines()] == [0, 1, 2]
        curve = [row.split(",")[0:2] for row in (out / "acc_curve.csv").read_text().splitlines()]
        assert curve == [row.split(",")[0:2] for row in (tmp_path / "full" / "acc_curve.csv").read_text().splitlines()]


# figures that measure this machine's clock and memory; everything else must match exactly
_CLOCK_KEYS = {"time_s", "task_time_s", "eval_time_s", "task_eval_time_s", "train_time_s", "peak_rss_mb"}


def _metrics_without_clock(out) -> dict:
    return {k: v for k, v in json.loads((out / "metrics.json").read_text()).items() if k not in _CLOCK_KEYS}


@pytest.mark.slow
@pytest.mark.parametrize("method", method_names())
def test_every_method_resumes_mid_task_to_identical_metrics(tmp_path, monkeypatch, method):
    """Killed inside the second task's training (after its first epoch's checkpoint), then
    resumed: the same matrices and the same metrics.json extras (importance statistics,
    free capacity, passes, forward transfer...) as an uninterrupted run, for every method.
    The restore replays no hook: the method's state_dict is its whole state. (A method that
    trains no network has no epoch: killed after task 1's end, its second checkpoint.)"""
    cfg = RunConfig.from_dict({**BLOBS, "method": method, "train": {**BLOBS["train"], "epochs": 2}})
    run(cfg, tmp_path / "full", quiet=True)
    out = tmp_path / "killed"
    trains = METHODS[method].trains_network
    with monkeypatch.context() as m:
        kill_after(m, 3 if trains else 2)  # task 0: epoch 1, task end; task 1: epoch 1
        with pytest.raises(Killed):
            run(cfg, out, quiet=True)
    assert load_latest(out, cfg)["position"] == ({"task": 1, "epoch": 1} if trains else {"task": 2, "epoch": 0})
    resume_run(out, quiet=True)
    assert _metrics_without_clock(out) == _metrics_without_clock(tmp_path / "full")


def test_corrupt_newest_falls_back_to_previous_with_warning(tmp_path, monkeypatch, caplog):
    cfg = RunConfig.from_dict(BLOBS)
    full = run(cfg, tmp_path / "full", quiet=True)
    with monkeypatch.context() as m:
        kill_after(m, 6)
        with pytest.raises(Killed):
            run(cfg, tmp_path / "r", quiet=True)
    newest = list_checkpoints(tmp_path / "r")[0]
    newest.write_bytes(newest.read_bytes()[:-100])  # truncated
    with caplog.at_level(logging.WARNING, logger="anpyc"):
        resumed = resume_run(tmp_path / "r", quiet=True)
    assert "checksum mismatch" in caplog.text and "ckpt-000005.pt" in caplog.text
    np.testing.assert_array_equal(resumed.acc_matrix, full.acc_matrix)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    run(RunConfig.from_dict(BLOBS), tmp_path / "a", quiet=True)
    other = RunConfig.from_dict({**BLOBS, "method": "joint"})
    with pytest.raises(CheckpointError, match=r"written by another run: method 'finetune' \(this run: 'joint'\)"):
        load_latest(tmp_path / "a", other)


def test_resume_without_checkpoint_starts_over(tmp_path, monkeypatch):
    cfg = RunConfig.from_dict({**BLOBS, "train": {**BLOBS["train"], "checkpoint_every": None}})
    full = run(cfg, tmp_path / "full", quiet=True)
    with monkeypatch.context() as m:
        kill_after(m, 1)
        with pytest.raises(Killed):
            run(cfg, tmp_path / "r", quiet=True)
    for p in list_checkpoints(tmp_path / "r"):
        p.unlink()
    resumed = resume_run(tmp_path / "r", quiet=True)
    np.testing.assert_array_equal(resumed.acc_matrix, full.acc_matrix)
    assert len((tmp_path / "r" / "log.jsonl").read_text().splitlines()) == 3


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    first = run(RunConfig.from_dict(BLOBS), tmp_path / "r", quiet=True)
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    again = resume_run(tmp_path / "r", quiet=True)
    np.testing.assert_array_equal(again.acc_matrix, first.acc_matrix)
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("method", ["finetune", "si"])
def test_sigkill_mid_task_then_resume_equals_uninterrupted_run(tmp_path, method):
    """A real ``anpyc run`` process killed with SIGKILL at a random point (right after its
    k-th checkpoint, k random, plus a random delay), resumed with ``anpyc run --resume``:
    the final accuracy matrix is bit-identical to that of an uninterrupted run (SI: its path
    integral, accumulated step by step inside the task, survives the kill too)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import anpyc
    from anpyc.cli import main
    from anpyc.rundir import matrix, read_metrics

    out = tmp_path / "killed"
    # 3 tasks x (3 mid-task + 1 task-end) checkpoints; killed during the first task or right after
    flags = ["--benchmark", "blobs", "--tasks", "3", "--subsample", "600", "--hidden", "32", "--epochs", "8",
             "--checkpoint-every", "2", "--threads", "1", "--seed", "5"]
    rng = random.Random()
    k, delay = rng.randint(1, 4), rng.uniform(0.0, 0.02)
    env = {**os.environ, "PYTHONPATH": str(Path(anpyc.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "anpyc", "run", "--method", method, *flags,
                             "--quiet", "--out", str(out)], env=env, stderr=subprocess.PIPE)

    def written() -> int:
        names = [p.name for p in list_checkpoints(out)]
        return int(names[0][5:11]) if names else 0

    try:
        deadline = time.monotonic() + 120
        while written() < k and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, f"run ended before the kill (k={k}): {proc.stderr.read()!r}"
    assert not (out / "metrics.json").exists()
    position = load_latest(out)["position"]

    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    assert main(["run", "--method", method, *flags, "--quiet", "--no-report", "--out", str(tmp_path / "full")]) == 0
    resumed = matrix(read_metrics(out)["acc_matrix"])
    full = matrix(read_metrics(tmp_path / "full")["acc_matrix"])
    np.testing.assert_array_equal(resumed, full, err_msg=f"killed after checkpoint {k} at {position}")
    assert (out / "acc_matrix.csv").read_bytes() == (tmp_path / "full" / "acc_matrix.csv").read_bytes()
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    assert _metrics_without_clock(out) == _metrics_without_clock(tmp_path / "full")


class _NotATensor:
    pass


@pytest.mark.parametrize("payload, words", [
    ({"position": 1, "model": {}, "method": {}, "rng": _NotATensor()}, r"ckpt: unreadable payload \(UnpicklingError\)"),
    ({"model": {}, "method": {}}, "ckpt: payload lacks the checkpoint fields"),
    ([1, 2], "ckpt: payload lacks the checkpoint fields"),
])
def test_a_payload_with_a_valid_checksum_that_is_not_a_checkpoint_is_refused(payload, words):
    """The checksum says the bytes are as written, not that a checkpoint was written: a payload
    that only a full unpickle could read (code, not tensors) or that lacks the fields is refused."""
    with pytest.raises(CheckpointError, match=words):
        decode(encode(payload), "ckpt")


def test_a_temp_file_left_by_a_kill_during_a_write_is_removed_by_the_next_save(tmp_path):
    folder = tmp_path / ck.DIRNAME
    folder.mkdir()
    (folder / ".ckpt-000001.pt.abc.tmp").write_bytes(b"half a checkpoint")
    path = ck.save(tmp_path, {"position": 1, "model": {}, "method": {}, "rng": {}})
    assert sorted(p.name for p in folder.iterdir()) == [path.name] == ["ckpt-000001.pt"]
