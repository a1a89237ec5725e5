"""submitit's local executor runs a sweep the way a cluster does (every job a process of its
own, through submitit's pickles): the same accuracy matrices as this machine's pool; a sweep
killed half way and submitted again finishes only the missing runs, to the summary of an
uninterrupted one; a pre-empted job is requeued and continues from its checkpoint; a job may
be a torch.distributed run; ``tune`` takes the same path. Slow: each job starts a Python
process that imports torch."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dist_methods  # noqa: F401  (registers test-gate here; the jobs import it through $PYTHONPATH)
from anpyc import rundir
from anpyc.cli import main

pytestmark = pytest.mark.slow
submitit = pytest.importorskip("submitit") if not os.environ.get("CI") else __import__("submitit")

TESTS = Path(__file__).resolve().parents[1]
RUN = ["--benchmark", "blobs", "--tasks", "3", "--subsample", "60", "--hidden", "8", "--threads", "1", "--quiet",
       "--no-report", "--no-presets"]
#: summary figures that are measurements of the machine, not of the learning
MACHINE_KEYS = ("time", "rss", "_mb", "runs")


@pytest.fixture(autouse=True)
def jobs_find_the_test_methods(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def learning(summary: dict) -> dict:
    """A summary without what the machine measured (times, memory, run paths)."""
    return {m: {k: v for k, v in entry.items() if not any(word in k for word in MACHINE_KEYS)}
            for m, entry in summary["methods"].items()}


def test_submitit_local_gives_the_accuracy_matrices_of_the_local_pool(tmp_path):
    common = ["compare", "--methods", "finetune,ewc", *RUN, "--seeds", "2"]
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    assert main([*common, "--out", str(tmp_path / "sub"), "--executor", "submitit-local", "--jobs", "2"]) == 0
    for method in ("finetune", "ewc"):
        for seed in (0, 1):
            runs = [tmp_path / d / method / f"seed_{seed}" for d in ("local", "sub")]
            for name in ("acc_matrix.csv", "val_acc_matrix.csv"):
                assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), (method, seed, name)
            a, b = (json.loads((r / "metrics.json").read_text()) for r in runs)
            assert a["acc_matrix"] == b["acc_matrix"] and a["passes"] == b["passes"]
            # both record the pass budget their epochs came from: `anpyc run --config` reruns either
            assert saved_budget(runs[0]) == saved_budget(runs[1]) == {"mode": "passes", "per_task": 1.0}
    local, sub = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "sub"))
    assert learning(local) == learning(sub)
    ledger = json.loads((tmp_path / "sub" / "jobs.json").read_text())["jobs"]
    assert sorted(ledger) == ["ewc/seed_0", "ewc/seed_1", "finetune/seed_0", "finetune/seed_1"]
    assert all(e["executor"] == "submitit-local" for e in ledger.values())


def saved_budget(run_dir: Path) -> dict | None:
    """The pass budget a run directory's config.yaml records under ``meta``."""
    import yaml

    return (yaml.safe_load((run_dir / rundir.CONFIG).read_text()).get("meta") or {}).get("budget")


def _wait_for(condition, what: str, timeout: float = 300.0, proc=None):
    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc {proc.returncode}) before {what}:\n{proc.stderr.read()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _sweep(argv: list[str], env: dict) -> subprocess.Popen:
    """The CLI in a process group of its own (its jobs join it): what a terminal runs."""
    code = "import sys, dist_methods; from anpyc.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *argv], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_sweep_submitted_again_finishes_only_the_missing_runs(tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    out = tmp_path / "sweep"
    argv = ["compare", "--methods", "finetune,test-gate", *RUN, "--seeds", "2", "--out", str(out),
            "--executor", "submitit-local", "--jobs", "1"]
    env = {**os.environ, "ANPYC_TEST_GATE": str(gate)}
    proc = _sweep(argv, env)
    killed = out / "test-gate" / "seed_0"
    try:  # finetune seed 0 finishes; test-gate seed 0 checkpoints its first task and waits at the gate
        _wait_for(lambda: any(killed.glob("checkpoints/ckpt-*.pt")) and rundir.holder(killed), "a checkpoint", proc=proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its job controllers and their tasks: the machine went down
        proc.communicate()
    finished = out / "finetune" / "seed_0" / "metrics.json"
    assert finished.is_file() and not (killed / "metrics.json").exists() and not (out / "finetune" / "seed_1").exists()
    before = finished.stat().st_mtime_ns
    gate.touch()
    monkeypatch.setenv("ANPYC_TEST_GATE", str(gate))
    assert main([*argv[:-1], "3"]) == 0  # the same sweep again (three jobs at a time now)
    assert finished.stat().st_mtime_ns == before  # not run again
    logs = "".join(p.read_text() for p in (out / "submitit").glob("*_log.err"))
    assert "resuming from" in logs and "task 2, epoch 0" in logs  # continued from its first task's checkpoint
    assert len(list((out / "submitit").glob("*_submitted.pkl"))) == 2 + 3  # the first submission's 2, then the 3 missing
    whole = tmp_path / "whole"
    assert main(["compare", "--methods", "finetune,test-gate", *RUN, "--seeds", "2", "--out", str(whole)]) == 0
    assert learning(json.loads((out / "summary.json").read_text())) == learning(json.loads((whole / "summary.json").read_text()))


def test_a_preempted_job_is_requeued_and_continues_from_its_checkpoint(tmp_path):
    gate = tmp_path / "gate"
    out = tmp_path / "sweep"
    run_dir = out / "test-gate" / "seed_0"
    proc = _sweep(["compare", "--methods", "test-gate", *RUN, "--out", str(out), "--executor", "submitit-local"],
                  {**os.environ, "ANPYC_TEST_GATE": str(gate)})
    try:
        _wait_for(lambda: any(run_dir.glob("checkpoints/ckpt-*.pt")) and rundir.holder(run_dir), "a checkpoint", proc=proc)
        first = rundir.holder(run_dir)
        os.kill(first, signal.SIGUSR2)  # what Slurm sends before pre-empting (submitit's signal)
        _wait_for(lambda: rundir.holder(run_dir) not in (None, first), "the requeued job", proc=proc)
        gate.touch()
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    logs = "".join(p.read_text() for p in (out / "submitit").glob("*_log.err"))
    assert "pre-empted or out of time; requeued, it continues from its newest checkpoint" in logs
    assert "resuming from" in logs and "task 2, epoch 0" in logs
    whole = tmp_path / "whole"
    gate.touch()
    os.environ["ANPYC_TEST_GATE"] = str(gate)
    try:
        assert main(["compare", "--methods", "test-gate", *RUN, "--out", str(whole)]) == 0
    finally:
        del os.environ["ANPYC_TEST_GATE"]
    a, b = (json.loads((d / "test-gate" / "seed_0" / "metrics.json").read_text()) for d in (out, whole))
    assert a["acc_matrix"] == b["acc_matrix"] and a["val_acc_matrix"] == b["val_acc_matrix"]


def test_a_job_of_two_tasks_is_one_distributed_run(tmp_path):
    out = tmp_path / "sweep"
    assert main(["compare", "--methods", "finetune", *RUN, "--out", str(out), "--executor", "submitit-local",
                 "--nproc-per-job", "2"]) == 0
    metrics = json.loads((out / "finetune" / "seed_0" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["distributed"]["world_size"] == 2
    assert len(set(metrics["distributed"]["rank_state_sha256"])) == 1  # the ranks agree
    assert saved_budget(out / "finetune" / "seed_0") == {"mode": "passes", "per_task": 1.0}


def test_tune_takes_the_same_path_and_the_same_command_again_gathers_it(tmp_path, capsys):
    grid = ["tune", "--method", "ewc", "--param", "lam=1,100", *RUN[:-1]]  # (tune applies no preset)
    assert main([*grid, "--out", str(tmp_path / "local")]) == 0
    sub = [*grid, "--out", str(tmp_path / "sub"), "--executor", "submitit-local"]
    assert main([*sub, "--no-wait", "--overwrite"]) == 0
    said = capsys.readouterr().out
    assert "submitted 2 job(s) to submitit-local" in said
    # not `anpyc gather`, which refuses a tuning; and not with --overwrite, which submits anew
    assert "when they end: run this command again without --overwrite; it gathers them" in said
    assert main(sub) == 0  # waits for the jobs it submitted, sends none again
    local, got = (json.loads((tmp_path / d / "tune.json").read_text()) for d in ("local", "sub"))
    assert [p["val_avg_acc"] for p in got["points"]] == [p["val_avg_acc"] for p in local["points"]]
    assert got["best"]["params"] == local["best"]["params"]
    assert saved_budget(tmp_path / "sub" / "point_1" / "seed_0") == saved_budget(tmp_path / "local" / "point_1" / "seed_0")
    assert len(list((tmp_path / "sub" / "submitit").glob("*_submitted.pkl"))) == 2


def test_no_wait_returns_while_its_job_runs_even_when_its_output_is_read_through_a_pipe(tmp_path):
    """submitit-local starts each job's controller with the submitting process's standard output
    and error: a pipe reading the command (``| tee``, a CI step capturing it) stayed open until
    the jobs ended, so ``--no-wait`` waited after all. Its controllers now write to the job folder."""
    gate = tmp_path / "gate"
    out = tmp_path / "sweep"
    run_dir = out / "test-gate" / "seed_0"
    proc = _sweep(["compare", "--methods", "test-gate", *RUN, "--out", str(out), "--executor", "submitit-local",
                   "--no-wait"], {**os.environ, "ANPYC_TEST_GATE": str(gate)})
    try:
        said, err = proc.communicate(timeout=120)  # EOF on both pipes: the job holds neither
        assert proc.returncode == 0, err
        assert "submitted 1 job(s) to submitit-local" in said
        _wait_for(lambda: rundir.holder(run_dir), "the job to take its run")
        assert not (run_dir / "metrics.json").exists()  # still going, behind its gate
    finally:
        gate.touch()
    assert main(["gather", str(out), "--wait", "--quiet", "--no-report"]) == 0
    assert (out / "submitit" / "controllers.log").is_file()
