"""compare's jobs: parallel processes give the sequential summary, and a failing job is
reported without costing the others' results."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dist_methods  # noqa: F401  (registers test-fails here and in the worker processes)
from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import AnpycError
from anpyc.experiments.compare import compare
from processes import live_processes_of_session

KEYS = ("avg_acc", "bwt", "forgetting", "fwt", "val_avg_acc")


def _argv(out, jobs: int) -> list[str]:
    return ["compare", "--methods", "finetune,test-fails,joint", "--benchmark", "blobs", "--tasks", "2",
            "--subsample", "100", "--hidden", "16", "--threads", "1", "--seeds", "2", "--quiet", "--no-report",
            "--out", str(out), "--jobs", str(jobs)]


def test_parallel_jobs_match_sequential_and_survive_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANPYC_START_METHOD", "fork")  # spawn works too, but re-imports torch
    assert main(_argv(tmp_path / "j1", 1)) == 1  # 1: some jobs failed, the rest are kept
    capsys.readouterr()
    assert main(_argv(tmp_path / "j2", 2)) == 1
    err = capsys.readouterr().err
    assert "FAILED test-fails seed 0: test-fails: deliberate failure in task 1" in err
    assert "2 job(s) failed" in err
    s1, s2 = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("j1", "j2"))
    for d, s in (("j1", s1), ("j2", s2)):
        assert [(f["method"], f["seed"]) for f in s["failed"]] == [("test-fails", 0), ("test-fails", 1)]
        assert s["failed"][0]["error"] == "test-fails: deliberate failure in task 1"
        assert list(s["methods"]) == ["finetune", "joint"] and s["n_tasks"] == 2
        assert "## Failed jobs" in (tmp_path / d / "summary.md").read_text()
        for m in ("finetune", "joint"):
            assert s["methods"][m]["n_seeds"] == 2
            for run_dir in s["methods"][m]["runs"]:  # every finished run kept its directory
                assert json.loads(Path(run_dir, "metrics.json").read_text())["method"] == m
        assert not (tmp_path / d / "test-fails" / "seed_0" / "metrics.json").exists()
        assert (tmp_path / d / "test-fails" / "seed_0" / "config.yaml").exists()
    for m in ("finetune", "joint"):
        for key in KEYS:
            assert s1["methods"][m][key] == s2["methods"][m][key], (m, key)
        assert s1["methods"][m]["avg_acc_curve"] == s2["methods"][m]["avg_acc_curve"]


def test_every_job_failing_is_an_error_with_the_failures_written(tmp_path):
    base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 50}, "model": {"hidden": [8]}})
    with pytest.raises(AnpycError, match="every job failed \\(1\\); first: test-fails seed 0: test-fails: deliberate"):
        compare(base, ["test-fails"], [0], tmp_path / "c", quiet=True)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["methods"] == {} and summary["failed"][0]["method"] == "test-fails"


def test_bad_jobs_flag(tmp_path):
    assert main(["compare", "--methods", "finetune", "--benchmark", "blobs", "--jobs", "0", "--out", str(tmp_path / "x")]) == 2


def test_sigterm_stops_the_parallel_workers_with_the_command(tmp_path):
    """`kill` (SIGTERM) of a parallel comparison ends it as Ctrl-C does (exit 143, a resume
    hint) and takes its worker processes with it: a worker left running finished its job into
    a directory nobody watched, beside the next command's workers."""
    out = tmp_path / "cmp"
    argv = [sys.executable, "-m", "anpyc", "compare", "--methods", "finetune,joint", "--benchmark", "blobs",
            "--tasks", "2", "--epochs", "100000", "--threads", "1", "--quiet", "--no-report", "--jobs", "2",
            "--out", str(out)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # a bound on a slow start, not a timing assertion
        while len(list(out.glob("*/seed_0"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # until both workers are training
        assert proc.poll() is None and len(live_processes_of_session(proc.pid)) >= 3, "the workers did not start"
        proc.send_signal(signal.SIGTERM)  # the command alone, as `kill PID` sends it
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143
        assert "anpyc: terminated; continue with the same command plus --resume" in err
        time.sleep(1)
        assert live_processes_of_session(proc.pid) == []
    finally:  # never leave a 100000-epoch job behind, whatever failed
        if live_processes_of_session(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_run_is_not_continued_under_another_config(tmp_path):
    """A job that resumes a run directory started with other settings (a preset re-tuned between
    the kill and the resume, say) is refused, naming what differs; the same settings pass."""
    from anpyc.errors import ConfigError
    from anpyc.experiments.jobs import Job, check_resumable
    from anpyc.methods import typed
    from anpyc.runner import run

    def config(lam: float) -> RunConfig:  # typed, as a comparison builds its jobs' configs
        return typed(RunConfig.from_dict({"method": "ewc", "method_params": {"lam": lam, "fisher_samples": 50},
                                          "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 100}}))

    cfg = config(3.0)
    run(cfg, tmp_path / "r", quiet=True)
    check_resumable(Job("ewc", 0, cfg, tmp_path / "r", resume=True))
    other = config(10.0)
    with pytest.raises(ConfigError, match=r"started with another config \(method_params differ\)"):
        check_resumable(Job("ewc", 0, other, tmp_path / "r", resume=True))
