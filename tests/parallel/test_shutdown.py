"""Multi-process runs end cleanly: the group is freed when a rank leaves it, back-to-back
runs all exit 0, and a worker killed mid-run fails the command in one line while the run
directory keeps its last checkpoint (issue #17, part 1)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import dist_methods  # noqa: F401  (registers test-kill-rank1 here and in the ranks)
from anpyc import rundir
from anpyc.callbacks.checkpoint import list_checkpoints
from anpyc.cli import main
from processes import live_processes_of_session

pytestmark = pytest.mark.slow  # spawns process groups and kills them: minutes on a busy 2-core machine

TESTS = Path(__file__).resolve().parents[1]
SRC = str(TESTS.parent / "src")
TINY = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "40", "--hidden", "8", "--epochs", "1",
        "--batch-size", "20", "--threads", "1", "--quiet", "--no-report"]



@pytest.fixture(scope="module", autouse=True)
def _imports_before_fork():
    """The first optimizer imports torch._dynamo (seconds): done once here, the forked ranks
    inherit it instead of importing it in every run."""
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


# What the runner does inside the group (its first optimizer imports torch._dynamo, which
# imports torch.distributed.nn), then leave, in a fresh interpreter: nothing imported before.
_LEAVE_SCRIPT = textwrap.dedent("""
    import gc, os, sys, tempfile, weakref
    from pathlib import Path
    import torch
    import torch.distributed as dist
    from anpyc.callbacks.distributed import process_group

    def gloo_threads():
        tasks = Path("/proc/self/task")
        names = [(t / "comm").read_text().strip() for t in tasks.iterdir()] if tasks.is_dir() else []
        return sorted(n for n in names if "gloo" in n)

    with process_group("gloo", Path(tempfile.mkdtemp(), "rdv").as_uri(), rank=0, world_size=1):
        group = weakref.ref(dist.distributed_c10d._get_default_group())
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        inside = gloo_threads()
    gc.collect()
    print({"freed": group() is None, "inside": inside, "after": gloo_threads()})
""")


def test_leaving_the_group_frees_it_and_its_gloo_threads():
    """The cause of the abort at exit: a group pinned by torch.distributed.nn's default
    arguments survived destroy_process_group, and its gloo threads ran into interpreter
    shutdown. Leaving through process_group must free it (and so join the threads)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _LEAVE_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307  (our own script's dict)
    assert state["freed"], "the process group is still referenced after leaving it"
    assert state["after"] == [] and (state["inside"] or not Path("/proc/self/task").is_dir())
    assert "still referenced" not in proc.stderr


def test_back_to_back_two_process_runs_all_exit_0(tmp_path, capfd, monkeypatch):
    """30 tiny 2-process runs in a row (gloo, forked ranks) all end with exit 0, results
    written, nothing on stderr, no lock left behind."""
    monkeypatch.setenv("ANPYC_START_METHOD", "fork")
    codes = []
    for i in range(30):
        out = tmp_path / f"r{i}"
        codes.append(main(["run", "--method", "finetune", *TINY, "--seed", str(i), "--nproc", "2", "--out", str(out)]))
        assert json.loads((out / "metrics.json").read_text())["world_size"] == 2
        assert not (out / rundir.LOCK_NAME).exists()
    err = capfd.readouterr().err
    assert codes == [0] * 30, err[-3000:]
    assert err.strip() == "", err[-3000:]


def test_killed_worker_fails_in_one_line_and_keeps_the_checkpoint(tmp_path, capfd, monkeypatch):
    """Rank 1 is SIGKILLed at the start of task 1: the command exits 2 with one line that
    names it; the run directory keeps task 0's checkpoint, is not left locked, and the run
    can be resumed to the end."""
    monkeypatch.setenv("ANPYC_START_METHOD", "fork")
    out = tmp_path / "killed"
    code = main(["run", "--method", "test-kill-rank1", *TINY, "--nproc", "2", "--out", str(out)])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("anpyc: error: process 1 (rank 1) died: killed by signal SIGKILL")
    assert f"--resume {out}" in err[0]
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000001.pt"]  # after task 0
    assert rundir.holder(out) is None
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    assert [json.loads(line)["task"] for line in (out / "log.jsonl").read_text().splitlines()] == [0, 1]


def _as_from_a_shell() -> None:
    """The command starts as a shell starts it, Ctrl-C and Ctrl-\\ at their defaults: a child
    inherits ignored signals, and in a long test session something in this process (not
    found yet; seen after the slow submitit tests) leaves SIGINT and SIGQUIT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def test_ctrl_c_stops_every_rank_and_releases_the_run_directory(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during a 2-process
    run: exit 130 with one line, no rank left running, the directory not left locked."""
    out, gate = tmp_path / "x", tmp_path / "gate"  # the gate never opens: the run waits in task 1
    code = "import sys, dist_methods; from anpyc.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "ANPYC_TEST_GATE": str(gate), "ANPYC_START_METHOD": "fork",
           "PYTHONPATH": os.pathsep.join([str(TESTS), SRC, os.environ.get("PYTHONPATH", "")])}
    argv = ["run", "--method", "test-gate", *TINY, "--nproc", "2", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_shell)
    try:
        deadline = time.monotonic() + 300  # a bound on a hang, not a timing assertion
        while len(list_checkpoints(out)) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and rundir.holder(out) == proc.pid, "the run did not get to task 1"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # never leave the waiting run behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines() == [f"anpyc: interrupted; continue with: anpyc run --resume {out}"]
    assert live_processes_of_session(proc.pid) == []
    assert rundir.holder(out) is None and not (out / rundir.LOCK_NAME).exists()
