import importlib.util
import json
import logging
import re

import pytest

from anpyc.cli import main

QUICK = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "200", "--hidden", "16", "--quiet"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "--method", "nope", "--out", "{d}"], "unknown method"),
        (["run", "--method", "finetune", "--benchmark", "imagenet", "--out", "{d}"], "unknown benchmark"),
        (["run", "--method", "finetune", "--epochs", "0", "--out", "{d}"], "epochs"),
        (["run", "--method", "finetune", "--param", "x", "--out", "{d}"], "KEY=VALUE"),
        (["run", "--method", "finetune", "--config", "{d}/missing.yaml", "--out", "{d}"], "not found"),
        (["compare", "--methods", "finetune", "--param", "lam=1", "--out", "{d}"], "METHOD.KEY"),
        (["compare", "--methods", "finetune", "--resume", "--overwrite", "--out", "{d}"], "drop one"),
        (["bench", "quick", "--resume", "--allow-dirty", "--out", "{d}"], "o: no such directory"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, argv, words):
    argv = [a.replace("{d}", str(tmp_path / "o")) for a in argv]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anpyc: error:") and words in err[0]


def test_config_file_then_flags_override(tmp_path):
    (tmp_path / "c.yaml").write_text("stream:\n  benchmark: blobs\n  tasks: 3\ntrain:\n  epochs: 2\n")
    assert main(["run", "--method", "finetune", "--config", str(tmp_path / "c.yaml"), "--tasks", "2",
                 "--out", str(tmp_path / "r"), "--quiet", "--no-report"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["n_tasks"] == 2


def test_run_takes_the_method_from_its_config_file(tmp_path, capsys):
    """A config file that names its method (a saved config.yaml) runs without --method; one
    that does not is refused with one line."""
    (tmp_path / "c.yaml").write_text("method: ewc\nmethod_params: {lam: 2.0}\nstream: {benchmark: blobs, tasks: 2, subsample: 200}\n"
                                     "model: {hidden: [16]}\n")
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r"), "--quiet", "--no-report"]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["method"] == "ewc" and metrics["n_tasks"] == 2
    line = capsys.readouterr().out  # the summary line names the unit of each figure
    assert re.search(r"ACC [\d.]+%  BWT [+-][\d.]+ points  forgetting -?[\d.]+ points", line), line
    (tmp_path / "n.yaml").write_text("stream: {benchmark: blobs}\n")
    capsys.readouterr()
    assert main(["run", "--config", str(tmp_path / "n.yaml"), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run needs --method" in err[0] and not (tmp_path / "s").exists()


def test_another_method_than_the_config_files_runs_with_its_own_params_and_says_so(tmp_path, caplog):
    """A saved ewc config run with ``--method si``: ewc's ``lam`` (which si also has) is not
    carried over silently; the warning says so and how to set si's."""
    (tmp_path / "c.yaml").write_text("method: ewc\nmethod_params: {lam: 7.0}\nstream: {benchmark: blobs, tasks: 2, subsample: 200}\n"
                                     "model: {hidden: [16]}\n")
    assert main(["run", "--config", str(tmp_path / "c.yaml"), "--method", "si", "--out", str(tmp_path / "r"), "--quiet",
                 "--no-report"]) == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "method: si" in saved and "lam: 1.0" in saved  # si's default, not ewc's 7
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"the method_params of {tmp_path / 'c.yaml'} (for ewc) are left out: --method si runs with its own (set them with --param)"]


def test_a_comparison_without_the_config_files_method_says_its_params_are_left_out(tmp_path, caplog):
    (tmp_path / "c.yaml").write_text("method: si\nmethod_params: {lam: 5.0}\nstream: {benchmark: blobs, tasks: 2, subsample: 200}\n"
                                     "model: {hidden: [16]}\n")
    assert main(["compare", "--config", str(tmp_path / "c.yaml"), "--methods", "ewc,finetune", "--out", str(tmp_path / "c"),
                 "--quiet", "--no-report", "--no-presets"]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"the method_params of {tmp_path / 'c.yaml'} (for si) are left out: si is not compared (set parameters with "
        "--param METHOD.KEY=VALUE)"]


def test_tune_takes_the_method_from_its_config_file(tmp_path, capsys):
    """As ``run``: a config that names its method is tuned without --method; one that does not is
    refused with one line, nothing written."""
    (tmp_path / "c.yaml").write_text("method: ewc\nstream: {benchmark: blobs, tasks: 2, subsample: 200}\nmodel: {hidden: [16]}\n")
    assert main(["tune", "--config", str(tmp_path / "c.yaml"), "--param", "lam=1,10", "--out", str(tmp_path / "t"),
                 "--quiet", "--no-report"]) == 0
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["method"] == "ewc"
    (tmp_path / "n.yaml").write_text("stream: {benchmark: blobs}\n")
    capsys.readouterr()
    assert main(["tune", "--config", str(tmp_path / "n.yaml"), "--param", "lam=1,10", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tune needs --method" in err[0] and not (tmp_path / "s").exists()


def test_compare_writes_summary(tmp_path, capsys):
    assert main(["compare", "--methods", "finetune,joint", *QUICK, "--out", str(tmp_path / "c")]) == 0
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert set(summary["methods"]) == {"finetune", "joint"}
    assert (tmp_path / "c" / "summary.md").exists() and (tmp_path / "c" / "avg_acc.png").stat().st_size > 1000
    assert (tmp_path / "c" / "report.html").exists() and (tmp_path / "c" / "plots" / "acc_matrix_joint.png").exists()
    assert "| finetune |" in capsys.readouterr().out


def test_data_list_runs(capsys, tmp_path):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    assert "mnist: not fetched" in capsys.readouterr().out
    assert main(["data", "verify", "mnist", "--data-dir", str(tmp_path)]) == 2  # asked for by name


def test_data_verify_checks_what_was_fetched_and_names_what_was_not(capsys, tmp_path, mnist_dir):
    """After `make demo` (MNIST only): verify passes and lists the data sets never fetched;
    a fetched file that is damaged fails it."""
    import shutil

    shutil.copytree(f"{mnist_dir}/mnist", tmp_path / "mnist", ignore=shutil.ignore_patterns("*.pt"))
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mnist: ok" in out and "not fetched: fashion-mnist, cifar10, cifar100" in out
    victim = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:-10])
    assert main(["data", "verify", "--data-dir", str(tmp_path)]) == 2
    assert "mnist: bad" in capsys.readouterr().out


def test_finetune_forgets_and_joint_beats_it_on_permuted_mnist(tmp_path, mnist_dir):
    # raw [0, 1] inputs: in this tiny setting fine-tune forgets visibly only without standardisation
    # (standardised, 4 tasks x 2000 examples: BWT about -0.7 points)
    common = ["--benchmark", "permuted-mnist", "--tasks", "4", "--subsample", "2000", "--test-subsample", "1000",
              "--epochs", "2", "--hidden", "100", "--standardize", "false", "--quiet", "--no-report"]
    metrics = {}
    for m in ("finetune", "joint"):
        assert main(["run", "--method", m, *common, "--out", str(tmp_path / m)]) == 0
        metrics[m] = json.loads((tmp_path / m / "metrics.json").read_text())
    assert metrics["finetune"]["bwt"] < -0.02
    assert metrics["joint"]["avg_acc"] > metrics["finetune"]["avg_acc"] + 0.01


def test_run_logs_csv_and_tensorboard_then_report_command(tmp_path, capsys, caplog):
    tb = importlib.util.find_spec("tensorboard") is not None
    out = tmp_path / "r"
    argv = ["run", "--method", "finetune", *QUICK, "--out", str(out), "--no-report"]
    assert main(argv + (["--tensorboard"] if tb else [])) == 0
    assert not (out / "report.html").exists()
    assert (out / "acc_curve.csv").read_text().splitlines()[0].endswith("acc_task_0,acc_task_1")
    assert len((out / "acc_curve.csv").read_text().splitlines()) == 3
    assert not tb or any((out / "tb").glob("events.out.tfevents.*"))
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        assert main(["report", str(out)]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if "report.html" in line] == [
        f"report: {out / 'report.html'} (5 plots), {out / 'report.md'}"]
    assert "report.html" not in caplog.text  # said once, not logged beside the line
    assert "plot left out" in caplog.text
    caplog.clear()
    assert main(["report", str(out), "--quiet"]) == 0  # as every command that writes takes it
    assert "plot left out" not in caplog.text and "report.html" in capsys.readouterr().out
    assert (out / "report.md").exists() and "<img src=\"data:image/png;base64," in (out / "report.html").read_text()


def test_report_failure_never_costs_the_run(tmp_path, monkeypatch, caplog):
    import anpyc.report.report as report

    def boom(directory):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(report, "write_report", boom)
    assert main(["run", "--method", "finetune", *QUICK, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "metrics.json").exists() and "no plots today" in caplog.text


def test_report_on_a_folder_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a run directory" in err[0]


def test_compare_gives_a_method_the_task_inference_by_its_label(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["compare", "--methods", "finetune,finetune+inference,density", "--scenario", "class", *QUICK,
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["methods"]
    assert rows["finetune+inference"]["method"] == "finetune" and rows["finetune+inference"]["task_inference"] == "input_density"
    assert rows["finetune"]["task_inference"] == "none" and "task_inference_acc" in rows["finetune+inference"]
    assert "task inferred, a head per task" in capsys.readouterr().out


@pytest.mark.parametrize("presets", [[], ["--no-presets"]])
def test_a_variant_runs_with_its_methods_params_with_or_without_presets(tmp_path, presets):
    """``--param ewc.lam=7`` reaches ``ewc+inference`` too; with ``--no-presets`` it did not (the
    variant ran at the default lambda while the table put it beside ``ewc`` at 7)."""
    out = tmp_path / "c"
    assert main(["compare", "--methods", "ewc,ewc+inference", "--scenario", "domain", "--param", "ewc.lam=7",
                 *presets, *QUICK, "--out", str(out)]) == 0
    for label in ("ewc", "ewc+inference"):
        assert "lam: 7" in (out / label / "seed_0" / "config.yaml").read_text(), label


@pytest.mark.parametrize("what", ["presets", "methods"])
def test_a_reader_that_leaves_early_ends_the_listing_quietly(what):
    """``anpyc list presets | head``: the pipe closes before the listing is written; the command
    ends with 141 (128 + SIGPIPE, as a shell reports it) and no traceback."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "anpyc", "list", what], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""
