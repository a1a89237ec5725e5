"""Executors: the flags and their checks, the one-line error without submitit, and a Slurm
sweep tested against submitit's own job objects without a cluster: fake ``sbatch``, ``srun``
and ``sacct`` on PATH, the array's tasks run here exactly as a node would run them
(``submitit.core.submission.process_job`` under Slurm's variables), then gathered,
resubmitted and gathered again."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import dist_methods  # noqa: F401  (registers test-fails)
from anpyc.cli import build_parser, main
from anpyc.errors import ConfigError
from anpyc.experiments.executors import (
    ExecutorConfig,
    executor_from_args,
    slurm_minutes,
    slurm_parameters,
    trace_line,
)

submitit = pytest.importorskip("submitit") if not os.environ.get("CI") else __import__("submitit")

RUN = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "60", "--hidden", "8", "--threads", "1", "--quiet",
       "--no-report", "--no-presets"]


def _args(*extra: str):
    return build_parser().parse_args(["compare", "--methods", "finetune", "--out", "x", *extra])


# ----------------------------------------------------------------------------- the config
def test_slurm_times_in_minutes():
    assert [slurm_minutes(t) for t in ("90", "1:30:00", "30:00", "1:30", "2-00:00:00", "1-12", "1-0:30")] == \
        [90, 90, 30, 2, 2880, 2160, 1470]
    for bad in ("abc", "0", "1:2:3:4", "-5", "1-x"):
        with pytest.raises(ConfigError, match="--time"):
            slurm_minutes(bad)


def test_flags_and_the_config_file_make_one_executor(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stream: {benchmark: blobs}\nexecutor:\n  kind: slurm\n  partition: cpu\n  time: 60\n"
                   "  slurm: {account: proj, mem: 8G}\n  setup: ['module load python']\n")
    ex = executor_from_args(_args("--config", str(cfg), "--partition", "gpu", "--slurm", "mem=16G", "--slurm", "exclusive",
                                  "--cpus-per-job", "8", "--nproc-per-job", "2", "--gpus-per-job", "2",
                                  "--job-setup", "source .venv/bin/activate", "--no-wait"))
    assert (ex.kind, ex.partition, ex.minutes, ex.wait) == ("slurm", "gpu", 60, False)  # flags win
    assert ex.slurm == {"account": "proj", "mem": "16G", "exclusive": True}
    assert ex.setup == ["module load python", "source .venv/bin/activate"]
    params = slurm_parameters(ex, "anpyc-x")
    assert params["cpus_per_task"] == 4 and params["ntasks_per_node"] == 2 and params["gpus_per_node"] == 2
    assert params["additional_parameters"] == {"account": "proj", "mem": "16G", "exclusive": True}
    assert executor_from_args(_args()).kind == "local"
    assert executor_from_args(_args("--executor", "submitit-local", "--jobs", "3")).parallel == 3


@pytest.mark.parametrize("flags, message", [
    (["--partition", "gpu"], "--partition needs --executor slurm or submitit-local"),
    (["--no-wait"], "--no-wait needs --executor slurm or submitit-local"),
    (["--executor", "slurm"], "--executor slurm needs --time"),
    (["--executor", "slurm", "--time", "1:00:00", "--slurm", "partition=x"], "--slurm partition=...: set it with --partition"),
    (["--executor", "slurm", "--time", "ten"], "--time 'ten' is not a Slurm time"),
    (["--executor", "slurm", "--time", "10", "--jobs", "4"], "--jobs is for this machine"),
    (["--executor", "submitit-local", "--partition", "gpu"], "--partition is a Slurm option"),
    (["--executor", "slurm", "--time", "10", "--cpus-per-job", "3", "--nproc-per-job", "2"], "not a multiple"),
    (["--executor", "slurm", "--time", "10", "--nproc-per-job", "0"], "--nproc-per-job must be >= 1"),
])
def test_bad_executor_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert main(["compare", "--methods", "finetune", *RUN, "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()  # nothing written


def test_without_the_cluster_extra_slurm_is_a_one_line_error_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError, as when not installed
    for kind in ("slurm", "submitit-local"):
        out = tmp_path / kind
        assert main(["compare", "--methods", "finetune", *RUN, "--out", str(out), "--executor", kind, "--time", "10"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"anpyc: error: --executor {kind} needs submitit: pip install 'anpyc[cluster]'"]
        assert not out.exists()
    assert main(["compare", "--methods", "finetune", *RUN, "--out", str(tmp_path / "local")]) == 0  # local needs none


def test_submitit_is_an_optional_extra_and_imported_only_by_a_sweep_that_uses_it():
    from importlib.metadata import requires

    needs = [r for r in requires("anpyc") if r.startswith("submitit")]
    assert needs and all("extra ==" in r for r in needs), needs  # never a plain dependency
    assert any('extra == "cluster"' in r for r in needs) and any('extra == "dev"' in r for r in needs)
    code = ("import sys, anpyc.cli, anpyc.experiments.compare, anpyc.experiments.bench, anpyc.experiments.tune, "
            "anpyc.experiments.gather; anpyc.cli.build_parser(); sys.exit('submitit' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_trace_line_takes_the_error_of_a_failed_job():
    text = ("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in <module>\n    import nope\nModuleNotFoundError: No module named \'nope\'\n\n'
            "----------------------\nYou can check full logs with 'job.stderr(0)'")
    assert trace_line(text) == "ModuleNotFoundError: No module named 'nope'"


def test_gpus_need_cuda_for_each_task():
    with pytest.raises(ConfigError, match="--executor must be one of"):
        ExecutorConfig.from_dict({"kind": "pbs"})
    with pytest.raises(ConfigError, match="unknown key"):
        ExecutorConfig.from_dict({"kind": "slurm", "time": 5, "gpu": 1})


def test_slurm_from_a_machine_without_srun_writes_nothing(tmp_path, capsys, monkeypatch):
    """Was: the output folder created and its compare.yaml written before submitit found no
    srun, so the same command again asked for --resume or --overwrite."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no srun (nor anything else) on PATH
    for command in (["compare", "--methods", "finetune"], ["tune", "--method", "ewc", "--param", "lam=1,3"]):
        out = tmp_path / command[0]
        flags = [f for f in RUN if f != "--no-presets"]  # tune applies no preset anyway
        assert main([*command, *flags, "--out", str(out), "--executor", "slurm", "--time", "10"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["anpyc: error: --executor slurm: no srun on this machine (submit from a machine of the Slurm cluster)"]
        assert not out.exists()


# ----------------------------------------------------------------------------- a Slurm sweep, faked
@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch`` (keeps each script, answers job ids from 4242 on), ``srun`` and ``sacct``
    (reads ``state/sacct``) on PATH: what submitit calls, and nothing else."""
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    scripts = {
        "sbatch": f'#!/bin/sh\nn=$(cat {state}/next 2>/dev/null || echo 4242)\necho $((n + 1)) > {state}/next\n'
                  f'cp "$1" {state}/sbatch_$n.sh\necho "Submitted batch job $n"\n',
        "srun": "#!/bin/sh\nexit 0\n",
        "sacct": f"#!/bin/sh\necho 'JobID|State|NodeList'\ncat {state}/sacct 2>/dev/null\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield state
    submitit.SlurmJob.watcher.clear()


def run_on_node(folder: Path, job_id: str, monkeypatch) -> None:
    """Run submitted job ``job_id`` (``ARRAY_INDEX`` for an array's task) as its node would:
    submitit's own entry point under Slurm's variables (here, in this process)."""
    from submitit.core import submission

    array, _, index = job_id.partition("_")
    env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": f"{array}{index.zfill(3)}" if index else array, "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "node01"}
    if index:
        env.update(SLURM_ARRAY_JOB_ID=array, SLURM_ARRAY_TASK_ID=index)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    with monkeypatch.context() as m:
        for key in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
            m.delenv(key, raising=False)
        for key, value in {**env, "SUBMITIT_FOLDER": str(folder)}.items():
            m.setenv(key, value)
        try:
            submission.process_job(folder)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


SLURM = ["--executor", "slurm", "--partition", "gpu", "--time", "2:00:00", "--cpus-per-job", "4", "--gpus-per-job", "1",
         "--array-parallelism", "2", "--slurm", "account=proj", "--slurm", "qos=high", "--slurm", "mem=16G",
         "--job-setup", "source /opt/venvs/anpyc/bin/activate"]


def test_a_slurm_sweep_submits_one_array_then_gathers_resubmits_only_what_is_missing(tmp_path, fake_slurm, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = ["compare", "--methods", "finetune,test-fails", *RUN, "--seeds", "2", "--out", str(out), *SLURM, "--no-wait"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "submitted 4 job(s) to slurm (4242_0, 4242_1, 4242_2, 4242_3)" in printed and f"anpyc gather {out}" in printed
    script = (out / "submitit" / "4242_submission.sh").read_text()  # the sbatch script, as submitit wrote it
    assert script == (fake_slurm / "sbatch_4242.sh").read_text()
    lines = script.splitlines()
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --account=proj",
                 "#SBATCH --qos=high", "#SBATCH --mem=16G", "#SBATCH --job-name=anpyc-sweep", "#SBATCH --signal=USR2@90",
                 "source /opt/venvs/anpyc/bin/activate"):
        assert line in lines, (line, script)
    command = lines[-1] if lines[-1] else lines[-2]
    assert command.startswith("srun ") and f"-u -m submitit.core._submit {out / 'submitit'}" in command
    ledger = json.loads((out / "jobs.json").read_text())["jobs"]
    assert {k: v["job_id"] for k, v in ledger.items()} == {
        "finetune/seed_0": "4242_0", "test-fails/seed_0": "4242_1", "finetune/seed_1": "4242_2", "test-fails/seed_1": "4242_3"}
    assert not any(out.glob("*/seed_*/config.yaml"))  # nothing ran here

    folder = out / "submitit"
    for job_id in ("4242_0", "4242_1", "4242_2"):  # the nodes run three; the fourth waits in the queue
        run_on_node(folder, job_id, monkeypatch)
    (fake_slurm / "sacct").write_text("4242_3|PENDING|\n")
    assert main(["gather", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert "FAILED test-fails seed 0: test-fails: deliberate failure in task 1 (exit code 2)" in err
    assert "FAILED test-fails seed 1: not finished yet: job 4242_3 is PENDING" in err
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["finetune"] and summary["methods"]["finetune"]["n_seeds"] == 2
    assert [(f["method"], f["seed"], f["exit_code"]) for f in summary["failed"]] == [("test-fails", 0, 2), ("test-fails", 1, None)]

    finished = out / "finetune" / "seed_0" / "metrics.json"
    before = finished.stat().st_mtime_ns
    assert main(argv) == 0  # the same command again: only the failed job goes; the queued one is not sent twice
    assert "submitted 1 job(s) to slurm (4243); 2 run(s) finished already, 1 queued or running already" in capsys.readouterr().out
    assert "--array" not in (fake_slurm / "sbatch_4243.sh").read_text()
    assert json.loads((out / "jobs.json").read_text())["jobs"]["test-fails/seed_0"]["job_id"] == "4243"
    run_on_node(folder, "4243", monkeypatch)
    run_on_node(folder, "4242_3", monkeypatch)
    (fake_slurm / "sacct").write_text("")
    assert main(["gather", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert err.count("deliberate failure in task 1 (exit code 2)") == 2 and "not finished" not in err
    assert finished.stat().st_mtime_ns == before  # a finished run is never run again


def test_gathering_a_local_comparison_lists_what_a_kill_left(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compare", "--methods", "finetune", *RUN, "--seeds", "2", "--out", str(out)]) == 0
    (out / "finetune" / "seed_1" / "metrics.json").unlink()
    capsys.readouterr()
    assert main(["gather", str(out), "--quiet", "--no-report"]) == 1
    err = capsys.readouterr().err
    assert ("FAILED finetune seed 1: killed before it finished; run the command again with --resume "
            "(it continues from its newest checkpoint)") in err
    assert json.loads((out / "summary.json").read_text())["methods"]["finetune"]["n_seeds"] == 1
    assert main(["gather", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip().endswith("nothing: no such directory")
    (tmp_path / "nothing").mkdir()
    assert main(["gather", str(tmp_path / "nothing")]) == 2
    assert "holds no comparison to gather" in capsys.readouterr().err


def test_a_slurm_bench_submitted_without_waiting_is_finished_by_gather(tmp_path, fake_slurm, monkeypatch, capsys):
    out, cfg = tmp_path / "bench", tmp_path / "blobs.yaml"
    cfg.write_text("stream: {benchmark: blobs}\nexecutor: {kind: slurm, time: 10}\n")  # the sweep's, not the runs'
    argv = ["bench", "quick", "--methods", "finetune", "--seeds", "1", "--config", str(cfg), *RUN[2:], "--out", str(out),
            "--no-wait", "--allow-dirty"]
    assert main(argv) == 0
    assert "submitted 1 job(s) to slurm (4242)" in capsys.readouterr().out
    assert not (out / "bench.json").exists()
    run_on_node(out / "submitit", "4242", monkeypatch)
    assert main(["gather", str(out), "--quiet", "--no-report"]) == 0
    bench = json.loads((out / "bench.json").read_text())
    assert list(bench["methods"]) == ["finetune"] and bench["bench"]["name"] == "quick"
    assert "| finetune |" in (out / "bench.md").read_text()


def test_a_second_copy_of_a_job_fails_at_once_and_touches_nothing(tmp_path):
    """A job takes its run directory's lock first: a copy of it started while another
    process holds the run ends with the one-line lock error (exit code 2) and writes nothing."""
    from anpyc.config import RunConfig
    from anpyc.experiments.executors import SweepJob

    run_dir = tmp_path / "finetune" / "seed_0"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from anpyc import rundir; "
                               f"rundir.acquire({str(run_dir)!r}, create=True); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cfg = RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 60}})
        outcome = SweepJob("finetune", 0, cfg, str(run_dir))()
    finally:
        holder.kill()
        holder.wait()
    assert outcome.exit_code == 2 and f"pid {holder.pid}" in outcome.error and "another anpyc process" in outcome.error
    assert sorted(p.name for p in run_dir.iterdir()) == [".anpyc.lock"]


@pytest.mark.parametrize("printed, code", [("0:9", 137), ("2:0", 2), ("0:0", 0), ("", None), ("x:y", None)])
def test_a_slurm_jobs_exit_code_is_read_from_sacct_a_signal_as_a_shell_shows_it(tmp_path, monkeypatch, printed, code):
    """``sacct`` prints ``ExitCode`` as ``code:signal``: killed by signal 9 reads 137, as a shell
    says; nothing printed or unreadable: unknown (None)."""
    from anpyc.experiments.executors import _slurm_exit_code

    sacct = tmp_path / "sacct"
    sacct.write_text(f"#!/bin/sh\necho '{printed}'\n")
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert _slurm_exit_code("42") == code


def test_without_sacct_a_slurm_jobs_exit_code_is_unknown(tmp_path, monkeypatch):
    from anpyc.experiments.executors import _slurm_exit_code

    monkeypatch.setenv("PATH", str(tmp_path))  # no sacct anywhere
    assert _slurm_exit_code("42") is None
