"""Two-process gloo runs against the one-process run.

Batch semantics: ``train.batch_size`` is the global batch, each of the 2 ranks trains on half
of it, and ranks step with the gradient of the global batch mean. So a 2-process run computes
what the 1-process run computes, up to the order of float additions in the all-reduce:
accuracy matrices must agree within ``TOL`` (one point; in practice they are equal) and every
rank must end with bit-identical model and method state.
"""

import json

import numpy as np
import pytest
import torch

import dist_methods  # noqa: F401  (registers the test methods here and in spawned ranks)
from anpyc.callbacks import distributed as sync
from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.loop.train import task_loss
from anpyc.models.heads import ContinualModel
from anpyc.parallel import collectives as ddist
from anpyc.parallel.launch import spawn_group
from anpyc.runner import run

TOL = 0.01
# 201 training rows per task in batches of 25: the last global batch has one row, so rank 1
# gets an empty batch at the end of every epoch of the first task
BLOBS = {
    "stream": {"benchmark": "blobs", "tasks": 3, "subsample": 201},
    "model": {"hidden": [64]},
    "train": {"epochs": 5, "batch_size": 25, "lr": 0.2, "threads": 1},  # ~50% per task (chance 25%)
}
# (method, params); the probe comes last: it is rerun without the broadcast
METHODS = (
    ("finetune", {}),
    ("anpyc", {"importance_samples": 200, "importance_batch": 50}),
    ("test-dist-probe", {}),
)


def _omega_sum(method) -> str:
    keep = torch.nn.Module()
    for name, buf in method.named_buffers():
        if name.split(".")[-1].startswith(("omega", "mask", "owner")):
            keep.register_buffer(name.replace(".", "_"), buf)
    return ddist.state_checksum(keep)


def _grad_check() -> dict:
    """Sharded gradients + sync_gradients_ against the full-batch gradient, on every rank."""
    torch.manual_seed(0)
    model = ContinualModel(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()), 4)
    for _ in range(3):
        model.add_head(2)  # head 2 is never used: its grad must stay None
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    t = torch.tensor([0, 0, 1, 0, 0])  # head 1 appears only in rank 0's rows (0, 2, 4)
    errs = {}
    for name, rows in (("uneven", slice(0, 5)), ("one_rank_empty", slice(0, 1))):
        model.zero_grad(set_to_none=True)
        task_loss(model, x[rows], y[rows], t[rows]).backward()
        want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        xs, ys, ts = x[rows][ddist.rank() :: 2], y[rows][ddist.rank() :: 2], t[rows][ddist.rank() :: 2]
        loss_sum = 0.0
        if len(ys):
            loss = task_loss(model, xs, ys, ts)
            loss.backward()
            loss_sum = float(loss.detach()) * len(ys)
        _, n = ddist.sync_gradients_(model.parameters(), loss_sum, len(ys))
        got = {n_: p.grad for n_, p in model.named_parameters() if p.grad is not None}
        assert n == len(y[rows]) and set(got) == set(want), (name, set(got) ^ set(want))
        errs[name] = max(float((got[k] - want[k]).abs().max()) for k in want)
    return errs


def _per_sample_estimates() -> dict[str, float]:
    """EWC's Fisher and MAS's importance of one seeded model: each rank reads the whole task
    and the ranks' estimates are averaged, so two ranks must give one process's figures."""
    from anpyc.config import StreamConfig
    from anpyc.data.streams import make_stream
    from anpyc.kernels import importance

    data = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=120), seed=0)[0].train
    torch.manual_seed(0)
    model = ContinualModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU()), 8)
    model.add_head(4)
    fisher = importance.fisher_diag(model, data, kind="empirical", max_samples=90, batch_size=32)
    mas = importance.mas_importance(model, data, max_samples=90, batch_size=32)
    return {"fisher": sum(float(v.sum()) for v in fisher.values()), "mas": sum(float(v.sum()) for v in mas.values())}


def _two_rank_runs(cfgs: list[dict]) -> dict:
    out = {"grad_err": ddist.all_gather_object(_grad_check()),
           "per_sample": ddist.all_gather_object(_per_sample_estimates())}
    for cfg in cfgs:
        sync.DIVERGED.clear()
        res = run(RunConfig.from_dict(cfg), quiet=True)
        # bodies agreed at every task boundary before the broadcast: training kept them in step
        out[cfg["method"]] = {**_rank_states(res), "diverged": list(sync.DIVERGED)}
    # the same probe run without the runner's task-boundary broadcast: ranks must disagree
    # (their masks come from their own RNGs), or the agreement above would prove nothing
    real = sync.sync_task_state_
    sync.sync_task_state_ = lambda *a, **k: None
    try:
        out["no_sync"] = _rank_states(run(RunConfig.from_dict(cfgs[-1]), quiet=True))
    finally:
        sync.sync_task_state_ = real
    return out


def _rank_states(res) -> dict:
    return {
        "R": res.acc_matrix,
        "world_size": res.metrics["world_size"],
        "state": ddist.all_gather_object(ddist.state_checksum(res.model, res.method)),
        "omega": ddist.all_gather_object(_omega_sum(res.method)),
    }


def test_two_processes_match_one_and_agree():
    cfgs = [{**BLOBS, "method": m, "method_params": p} for m, p in METHODS]
    # one process first: the forked ranks then inherit everything it imported
    singles = {cfg["method"]: run(RunConfig.from_dict(cfg), quiet=True) for cfg in cfgs}
    # fork: no re-import of torch in the children (the spawn default is tested through the CLI)
    got = spawn_group(_two_rank_runs, 2, (cfgs,), modules=["dist_methods"], start_method="fork")
    for errs in got["grad_err"]:  # per rank
        assert max(errs.values()) < 1e-6
    one = _per_sample_estimates()
    for estimates in got["per_sample"]:  # per rank: one process's Fisher and MAS, not twice them
        assert estimates == pytest.approx(one, rel=1e-5)
    for cfg in cfgs:
        single = singles[cfg["method"]]
        two = got[cfg["method"]]
        assert two["world_size"] == 2
        assert two["diverged"] == [], f"{cfg['method']}: ranks out of step before the broadcast"
        assert len(set(two["state"])) == 1, f"{cfg['method']}: ranks hold different states"
        assert len(set(two["omega"])) == 1
        np.testing.assert_allclose(two["R"], single.acc_matrix, atol=TOL)
        assert np.isfinite(np.tril(two["R"])).all()
    assert got["no_sync"]["omega"][0] != got["no_sync"]["omega"][1]
    assert got["no_sync"]["state"][0] != got["no_sync"]["state"][1]


@pytest.mark.parametrize("start", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_cli_nproc_2_only_rank0_writes(tmp_path, capsys, monkeypatch, start):
    # spawn (the default) re-imports torch in each process: half a minute on a busy machine
    monkeypatch.setenv("ANPYC_START_METHOD", start)
    out = tmp_path / "run"
    argv = ["run", "--method", "test-dist-probe", "--benchmark", "blobs", "--tasks", "3", "--subsample", "201",
            "--hidden", "64", "--epochs", "5", "--lr", "0.2", "--batch-size", "25", "--threads", "1", "--quiet", "--no-report", "--out", str(out)]
    assert main([*argv, "--nproc", "2"]) == 0
    assert "test-dist-probe on blobs" in capsys.readouterr().out
    argv[-1] = str(tmp_path / "single")
    assert main(argv) == 0  # the same run in one process
    # the same files as a one-process run, written once: rank 1 wrote nothing
    assert sorted(p.name for p in out.rglob("*")) == sorted(p.name for p in (tmp_path / "single").rglob("*"))
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    assert (out / "run.log").read_text().count("task 3/3") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["distributed"]["backend"] == "gloo"
    sums = metrics["distributed"]["rank_state_sha256"]
    assert len(sums) == 2 and sums[0] == sums[1] and metrics["distributed"]["diverged_before_sync"] == []
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())["acc_matrix"]
    as_array = lambda m: np.array([[np.nan if v is None else v for v in row] for row in m])  # noqa: E731
    np.testing.assert_allclose(as_array(metrics["acc_matrix"]), as_array(one), atol=TOL)


def test_cli_nproc_error_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANPYC_START_METHOD", "fork")
    argv = ["run", "--method", "test-fails", "--benchmark", "blobs", "--tasks", "2", "--subsample", "50",
            "--hidden", "8", "--threads", "1", "--quiet", "--no-report", "--out", str(tmp_path / "r"), "--nproc", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "anpyc: error: test-fails: deliberate failure in task 1"


def test_bad_requests_fail_before_spawning(tmp_path):
    from anpyc.errors import ConfigError
    from anpyc.parallel.launch import check_setup

    with pytest.raises(ConfigError, match="nccl needs --device cuda"):
        check_setup("cpu", 2, "nccl")
    with pytest.raises(ConfigError, match="--nproc must be"):
        check_setup("cpu", 0, None)
    assert main(["run", "--method", "finetune", "--benchmark", "blobs", "--out", str(tmp_path / "x"),
                 "--nproc", "2", "--param", "nope=1"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_torchrun_gives_the_same_run(tmp_path):
    """``torchrun --nproc-per-node 2 -m anpyc run`` (the multi-machine way) on one machine."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import anpyc

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this python")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(anpyc.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    args = ["run", "--method", "finetune", "--benchmark", "blobs", "--tasks", "2", "--subsample", "201", "--hidden", "64",
            "--epochs", "3", "--lr", "0.2", "--batch-size", "25", "--threads", "1", "--quiet", "--no-report"]
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "anpyc", *args, "--out", str(tmp_path / "tr")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("finetune on blobs") == 1  # rank 0 prints
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two, one = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("tr", "one"))
    assert two["distributed"]["world_size"] == 2
    np.testing.assert_allclose(np.array(two["acc_matrix"], dtype=float), np.array(one["acc_matrix"], dtype=float), atol=TOL)


def test_resume_with_two_processes(tmp_path, monkeypatch):
    """A run killed mid-task resumes under ``--nproc 2``: every rank loads the checkpoint (a
    rank starting afresh would end with another state: the run would fail its checksum check)
    and the result is the uninterrupted run's; only rank 0 appends to the run directory."""
    from killing import Killed, kill_after

    cfg = RunConfig.from_dict({**BLOBS, "method": "anpyc", "method_params": dict(METHODS[1][1]),
                               "train": {**BLOBS["train"], "checkpoint_every": 2}})
    full = run(cfg, tmp_path / "full", quiet=True)
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after(m, 4)  # saves: t0 e2, t0 e4, t0 end, t1 e2 -> killed in the middle of task 1
        with pytest.raises(Killed):
            run(cfg, out, quiet=True)
    monkeypatch.setenv("ANPYC_START_METHOD", "fork")
    assert main(["run", "--resume", str(out), "--nproc", "2", "--quiet", "--no-report"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"]["world_size"] == 2
    resumed = np.array([[np.nan if v is None else v for v in row] for row in metrics["acc_matrix"]])
    np.testing.assert_allclose(resumed, full.acc_matrix, atol=TOL)
    assert [json.loads(line)["task"] for line in (out / "log.jsonl").read_text().splitlines()] == [0, 1, 2]
