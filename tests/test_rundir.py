"""One writer per run directory (issue #17, part 2): a second run, report, resume or
comparison on a directory another process is writing exits 2 with one line naming that
process, and touches nothing; a lock of a dead process does not block."""

import contextlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import pytest
import torch

import dist_methods  # noqa: F401  (registers test-gate for the first run's process)
from anpyc import rundir
from anpyc.callbacks.checkpoint import load_latest
from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import OutputError
from anpyc.experiments.compare import compare

BLOBS = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "40", "--hidden", "8", "--epochs", "2",
         "--checkpoint-every", "1", "--threads", "1", "--quiet", "--no-report"]


@pytest.fixture(scope="module", autouse=True)
def _imports_before_fork():
    """The first optimizer imports torch._dynamo (seconds): once here, not in every fork."""
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def _hold(folder: Path, ready) -> None:
    rundir.acquire(folder)
    ready.set()
    time.sleep(600)  # until killed


@contextlib.contextmanager
def _held_by_other_process(folder: Path):
    """Another process holds ``folder``'s lock inside the block, then is killed (SIGKILL)."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    other = ctx.Process(target=_hold, args=(folder, ready), daemon=True)
    other.start()
    try:
        assert ready.wait(120)
        yield other.pid
    finally:
        other.kill()
        other.join()


def _wait_for(cond, proc, what: str, limit_s: float = 300.0) -> None:
    """Poll ``cond`` while the process ``proc`` runs."""
    deadline = time.monotonic() + limit_s  # a bound on a hang, not a timing assertion
    while not cond():
        if not proc.is_alive():
            pytest.fail(f"the other process ended before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} after {limit_s} s")
        time.sleep(0.05)


def _cli_in_child(argv: list[str], env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.exit(main(argv))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- the lock itself
def test_lock_is_reentrant_released_at_the_end_of_the_outer_session(tmp_path):
    with rundir.session():
        rundir.acquire(tmp_path)
        with rundir.session():
            rundir.acquire(tmp_path)  # the same process again: no error
        assert rundir.holder(tmp_path) == os.getpid()  # the inner session does not release it
    assert rundir.holder(tmp_path) is None
    assert not (tmp_path / rundir.LOCK_NAME).exists()


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    with _held_by_other_process(tmp_path) as pid:
        with pytest.raises(OutputError, match=rf"is being written by another anpyc process \(pid {pid}\)"):
            rundir.acquire(tmp_path)
    with rundir.session():  # the kernel dropped the dead process's lock: the stale file does not block
        assert (tmp_path / rundir.LOCK_NAME).exists()
        rundir.acquire(tmp_path)
        assert rundir.holder(tmp_path) == os.getpid()


def _child_releases(folder: str) -> None:
    rundir.release(folder)  # inherited state was forgotten at fork: nothing to release
    with rundir.session():
        try:
            rundir.acquire(folder)
        except OutputError:
            os._exit(3)  # refused: the parent still holds it
    os._exit(0)


def test_forked_child_neither_holds_nor_releases_its_parents_lock(tmp_path):
    with rundir.session():
        rundir.acquire(tmp_path)
        child = multiprocessing.get_context("fork").Process(target=_child_releases, args=(str(tmp_path),))
        child.start()
        child.join()
        assert child.exitcode == 3
        assert rundir.holder(tmp_path) == os.getpid()


def test_adopted_directory_is_never_released_by_the_worker(tmp_path):
    with rundir.session():
        rundir.adopt([tmp_path])
        rundir.acquire(tmp_path)  # re-entrant on the adopted directory, no lock file taken
    assert str(tmp_path) in rundir.held()
    assert not (tmp_path / rundir.LOCK_NAME).exists()
    rundir._held.pop(rundir._key(tmp_path))  # this test process is no worker: undo


# ---------------------------------------------------------------------------- through the CLI
@pytest.mark.parametrize("nproc", [1, 2])
def test_second_writer_is_refused_and_the_first_run_keeps_its_files(tmp_path, capsys, nproc):
    """The issue's scenario: a run is going in runs/x; a second `anpyc run --overwrite` (and
    one without it, a report, a resume) on runs/x exits 2 with one line naming the first
    run's pid and changes nothing; the first run ends with its own files only."""
    out, gate = tmp_path / "x", tmp_path / "gate"
    argv = ["run", "--method", "test-gate", *BLOBS, "--seed", "1", "--nproc", str(nproc), "--out", str(out)]
    env = {"ANPYC_TEST_GATE": str(gate), "ANPYC_START_METHOD": "fork"}
    first = multiprocessing.get_context("fork").Process(target=_cli_in_child, args=(argv, env))  # its own process
    first.start()
    try:
        # task 0 done and checkpointed, task 1 waits for the gate: the run is certainly going
        _wait_for(lambda: (out / "log.jsonl").is_file() and len(list((out / "checkpoints").glob("*.pt"))) == 2,
                  first, "checkpoint of task 0")
        before = _snapshot(out)
        second = ["run", "--method", "finetune", *BLOBS, "--seed", "3", "--out", str(out)]
        for attempt in ([*second, "--overwrite"], second, ["report", str(out)], ["run", "--resume", str(out)]):
            assert main(attempt) == 2, attempt
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1, (attempt, err)
            assert f"is being written by another anpyc process (pid {first.pid})" in err[0], (attempt, err)
        assert _snapshot(out) == before  # nothing removed, nothing written
    finally:  # the first run goes on to its end (or is killed if it hangs)
        gate.touch()
        first.join(600)
        if first.is_alive():
            first.kill()
            first.join()
    assert first.exitcode == 0
    cfg = RunConfig.from_file(out / "config.yaml")
    metrics = json.loads((out / "metrics.json").read_text())
    assert (cfg.seed, cfg.method, metrics["seed"], metrics["method"]) == (1, "test-gate", 1, "test-gate")
    assert load_latest(out, cfg)["position"]["task"] == 2  # every checkpoint is the first run's
    assert [json.loads(line)["task"] for line in (out / "log.jsonl").read_text().splitlines()] == [0, 1]
    assert not (out / rundir.LOCK_NAME).exists()


def test_compare_locks_its_per_run_directories(tmp_path):
    """A comparison whose per-run directory another process writes: that job fails with the
    holder's pid, the other jobs are kept."""
    busy = tmp_path / "cmp" / "joint" / "seed_0"
    busy.mkdir(parents=True)
    base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 40},
                                "model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}})
    with _held_by_other_process(busy) as pid:
        summary = compare(base, ["finetune", "joint"], [0], tmp_path / "cmp", quiet=True)
    assert list(summary["methods"]) == ["finetune"]
    [failed] = summary["failed"]
    assert failed["method"] == "joint" and f"pid {pid}" in failed["error"]
    assert not (busy / "config.yaml").exists()
    assert rundir.holder(tmp_path / "cmp") is None and rundir.holder(tmp_path / "cmp" / "finetune" / "seed_0") is None


def test_overwrite_removes_nothing_while_another_process_writes_one_of_the_runs(tmp_path):
    """``compare --overwrite`` run again while a job it submitted with ``--no-wait`` still
    writes its run: it removed the ledger and that run's files, then refused. Now it refuses
    first, with one line naming the writer, and the folder is as it was."""
    out = tmp_path / "cmp"
    base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 40},
                                "model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}})
    compare(base, ["finetune", "joint"], [0], out, quiet=True)
    with _held_by_other_process(out / "joint" / "seed_0") as pid:
        before = _snapshot(out)  # the other process's lock file included
        with pytest.raises(OutputError, match=rf"joint/seed_0 is being written by another anpyc process \(pid {pid}\): "
                                              "--overwrite would remove it"):
            compare(base, ["finetune", "joint"], [0], out, quiet=True, overwrite=True)
        assert _snapshot(out) == before
    compare(base, ["finetune", "joint"], [0], out, quiet=True, overwrite=True)  # once it has ended
    assert rundir.holder(out / "joint" / "seed_0") is None


def test_an_output_path_that_is_a_file_is_refused_and_kept(tmp_path):
    out = tmp_path / "results"
    out.write_text("my notes")
    with pytest.raises(OutputError, match=r"output path .*results exists and is not a directory"):
        rundir.prepare(out)
    assert out.read_text() == "my notes"


def test_an_unfinished_comparison_says_how_to_continue_it(tmp_path):
    (tmp_path / rundir.COMPARE).write_text("methods: [ewc]\n")
    with pytest.raises(OutputError, match="holds an unfinished comparison: continue it with the same command plus --resume"):
        rundir.prepare(tmp_path)
    (tmp_path / rundir.SUMMARY_JSON).write_text("{}")
    with pytest.raises(OutputError, match=r"already holds a comparison; choose another --out or pass --overwrite \(to add "
                                          r"methods or seeds to it: the same command, with them, plus --resume\)"):
        rundir.prepare(tmp_path)


@pytest.mark.parametrize("text, words", [
    ("[1, 2]", r"metrics.json does not hold a JSON object"),
    ('{"avg_acc": 0.5}', r"metrics.json is not a run's metrics.json \(no acc_matrix\)"),
    ('{"acc_matrix": [[0.5]', r"cannot read .*metrics.json: Expecting"),
])
def test_a_metrics_file_that_is_not_a_runs_is_one_line(tmp_path, text, words):
    (tmp_path / rundir.METRICS).write_text(text)
    with pytest.raises(OutputError, match=words):
        rundir.read_metrics(tmp_path)


def test_overwrite_removes_any_kind_of_output_and_keeps_other_files(tmp_path):
    """--overwrite on a folder that held a comparison (runs, summary, report, plots) or a run
    leaves nothing of it to mix with the new output; a file of the user's stays."""
    runs = [tmp_path / "ewc" / "seed_0", tmp_path / "ewc" / "seed_1", tmp_path / "joint" / "seed_0"]
    for run in runs:
        (run / rundir.CHECKPOINTS).mkdir(parents=True)
        for name in (rundir.CONFIG, rundir.METRICS, rundir.REPORT_MD):
            (run / name).write_text("old")
        (run / rundir.CHECKPOINTS / "ckpt-0001.pt").write_bytes(b"old")
    (tmp_path / rundir.PLOTS).mkdir()
    (tmp_path / rundir.PLOTS / "avg_acc.png").write_bytes(b"old")
    (tmp_path / rundir.TB / "ewc" / "seed_0").mkdir(parents=True)
    (tmp_path / rundir.TB / "ewc" / "seed_0" / "events.out.tfevents.1.host").write_bytes(b"old")
    for name in (rundir.COMPARE, rundir.SUMMARY_JSON, rundir.REPORT_MD, rundir.REPORT_HTML, rundir.CONFIG):
        (tmp_path / name).write_text("old")
    (tmp_path / "my-notes.txt").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "seed_0").mkdir()
    (tmp_path / "mine" / "seed_0" / "data.csv").write_text("mine")  # not a run: kept

    rundir.prepare(tmp_path, overwrite=True)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.name != rundir.LOCK_NAME)
    assert left == ["mine", "mine/seed_0", "mine/seed_0/data.csv", "my-notes.txt"]


def test_run_overwrite_over_a_comparison_leaves_only_the_run(tmp_path, capsys):
    out, reported = tmp_path / "cmp", [a for a in BLOBS if a != "--no-report"]
    assert main(["compare", "--methods", "finetune,joint", *reported, "--seeds", "2", "--out", str(out)]) == 0
    assert main(["run", "--method", "finetune", *reported, "--out", str(out), "--overwrite"]) == 0
    assert not any((out / name).exists() for name in ("finetune", "joint", rundir.COMPARE, rundir.SUMMARY_JSON))
    assert "# anpyc report: finetune on blobs" in (out / rundir.REPORT_MD).read_text()
    assert main(["compare", "--methods", "finetune", *BLOBS, "--quiet", "--out", str(out), "--overwrite"]) == 0
    assert not (out / rundir.CONFIG).exists() and not (out / rundir.CHECKPOINTS).exists()
    assert (out / "finetune" / "seed_0" / rundir.METRICS).is_file()


def test_reading_a_failed_runs_metrics_names_its_recorded_failure(tmp_path):
    """A diverged run in a comparison was skipped by the report as "the run did not finish?";
    the failure its run.log records is named instead."""
    (tmp_path / rundir.CONFIG).write_text("method: ewc\n")
    (tmp_path / rundir.RUN_LOG).write_text(f"2026-12-07 INFO anpyc.runlog: task 1/3\n2026-12-07 ERROR anpyc.runlog: {rundir.RUN_FAILED} "
                                           "non-finite loss (nan) in task 3, epoch 1\n")
    with pytest.raises(OutputError, match=r"holds a run that failed \(non-finite loss \(nan\) in task 3, epoch 1\)"):
        rundir.read_metrics(tmp_path)
    (tmp_path / rundir.RUN_LOG).unlink()
    with pytest.raises(OutputError, match="holds an unfinished run"):
        rundir.read_metrics(tmp_path)
