"""Your own data in the fair harness: ``compare``/``bench``/``tune`` take a stream of your own
(from Python, or ``--stream-from MODULE:FUNCTION``) with equal passes, seeds, a summary and a
report; runs record ``benchmark: custom`` and the stream's description, ``reproduce`` rebuilds
what it can and refuses what it cannot; ``scenario: class`` needs global labels."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import yaml

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments.compare import compare
from anpyc.runner import run

MODULE = '''
import torch
from torch.utils.data import TensorDataset

from anpyc.data import stream_from_datasets
from anpyc.data.streams import synthetic_blobs


def make(seed=0, shared_labels=False):
    """Two tasks of blobs: classes 0-1, then 2-3 (or 0-1 again with shared_labels)."""
    d = synthetic_blobs(0, n_per_class=60)
    parts = []
    for t in range(2):
        def part(x, y):
            keep = (y // 2) == t
            y = torch.as_tensor(y[keep]) - (2 * t if shared_labels else 0)
            return TensorDataset(torch.as_tensor(x[keep]).flatten(1), y)
        parts.append((part(d["train_x"], d["train_y"]), part(d["test_x"], d["test_y"])))
    return stream_from_datasets([p[0] for p in parts], [p[1] for p in parts], seed=seed, name="my-blobs")


def shared(seed=0):
    return make(seed, shared_labels=True)
'''
TINY = ["--hidden", "16", "--batch-size", "16", "--threads", "1", "--quiet"]


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    """A module of your own in the working directory, as a user runs the CLI from theirs."""
    name = f"mymod_{request.node.name.split('[')[0][-20:]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # for __import__ here; the CLI searches the working directory itself
    yield name
    sys.modules.pop(name, None)


def test_compare_stream_from_gives_equal_passes_a_summary_and_a_report(user_module, tmp_path, capsys):
    out = tmp_path / "D"
    assert main(["compare", "--methods", "finetune,ewc,anpyc", "--stream-from", f"{user_module}:make", "--seeds", "2",
                 "--out", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark"] == "custom" and set(summary["methods"]) == {"finetune", "ewc", "anpyc"}
    assert all(m["n_seeds"] == 2 for m in summary["methods"].values())
    batch = 16 / 108  # one batch of a task's 108 training rows (120, less 10% for validation)
    for run_dir in out.glob("*/seed_*"):
        passes = json.loads((run_dir / "metrics.json").read_text())["passes"]
        assert all(abs(p - 1.0) <= batch + 1e-9 for p in passes), (run_dir, passes)  # equal passes
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["stream"]["benchmark"] == "custom" and saved["stream"]["source"] == f"{user_module}:make"
        assert saved["stream"]["description"].startswith("my-blobs: 2 tasks of your own data (TensorDataset)")
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    assert "my-blobs" in (out / "report.md").read_text()
    # the stream is rebuilt from its recorded source: reproduce (and resume) need nothing more
    assert main(["reproduce", str(out / "ewc" / "seed_1"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("reproduced:")


def test_a_stream_passed_from_python_is_recorded_and_reproduce_refuses_or_rebuilds(user_module, tmp_path, capsys):
    module = __import__(user_module)
    cfg = RunConfig.from_dict({"method": "finetune", "model": {"hidden": [16]}, "train": {"batch_size": 16}})
    result = run(cfg, tmp_path / "r", quiet=True, stream=module.make(0))
    assert (tmp_path / "r" / "report.html").is_file() and result.report is not None  # run() reports, as the CLI
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["stream"]["benchmark"] == "custom" and saved["stream"]["source"] is None and saved["stream"]["tasks"] == 2
    assert main(["reproduce", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ran on a stream of your own passed from Python" in err[0] and "--stream-from" in err[0]
    assert main(["run", "--resume", str(tmp_path / "r")]) == 0  # finished: read back, nothing rebuilt
    assert main(["reproduce", str(tmp_path / "r"), "--stream-from", f"{user_module}:make", "--quiet"]) == 0
    run(cfg, tmp_path / "n", quiet=True, stream=module.make(0), report=False)
    assert not (tmp_path / "n" / "report.html").exists()  # opt-out


def test_compare_from_python_takes_a_stream_or_a_factory_per_seed(user_module, tmp_path):
    module = __import__(user_module)
    base = RunConfig.from_dict({"model": {"hidden": [16]}, "train": {"batch_size": 16}})
    summary = compare(base, ["finetune", "ewc"], [0, 1], tmp_path / "c", quiet=True, stream=module.make)
    assert summary["benchmark"] == "custom" and summary["methods"]["ewc"]["n_seeds"] == 2
    assert (tmp_path / "c" / "report.html").is_file()
    seeds = [json.loads((tmp_path / "c" / "ewc" / f"seed_{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert seeds[0]["val_acc_matrix"] != seeds[1]["val_acc_matrix"]  # each seed its own validation rows
    with pytest.raises(ConfigError, match="runs with jobs=1"):
        compare(base, ["finetune"], [0], None, quiet=True, stream=module.make(0), jobs=2)


def test_class_scenario_on_per_task_labels_is_a_one_line_error(user_module, tmp_path, capsys):
    argv = ["compare", "--methods", "finetune", "--stream-from", f"{user_module}:shared", "--scenario", "class",
            "--out", str(tmp_path / "c"), *TINY]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scenario 'class' needs each task's own class ids" in err[0]
    assert "task 0: [0, 1], task 1: [0, 1]" in err[0] and "y + t * classes_per_task" in err[0]
    assert not (tmp_path / "c").exists()
    module = __import__(user_module)
    with pytest.raises(ConfigError, match="needs each task's own class ids"):
        run(RunConfig.from_dict({"scenario": "class"}), stream=module.shared(0), quiet=True)
    # the task and domain scenarios take per-task labels
    assert main([*argv[:-len(TINY) - 4], "--scenario", "domain", "--out", str(tmp_path / "d"), *TINY]) == 0


def test_tune_and_bench_take_a_stream_of_your_own(user_module, tmp_path, capsys):
    assert main(["tune", "--method", "ewc", "--stream-from", f"{user_module}:make", "--param", "lam=1,100",
                 "--out", str(tmp_path / "t"), *TINY]) == 0
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["benchmark"] == "custom"
    assert main(["bench", "quick", "--methods", "finetune", "--stream-from", f"{user_module}:make",
                 "--out", str(tmp_path / "b"), "--allow-dirty", *TINY]) == 0
    bench = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert bench["benchmark"] == "custom" and bench["bench"]["protocol"] is None


def test_run_budget_counts_retraining_in_the_passes(tmp_path):
    """`anpyc run --method anpyc --param prune=true --epochs 1` (pruning retrains) trains at most one pass per task (to within one
    batch), retraining included; `--budget epochs` lets the retraining come on top."""
    common = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "320", "--threads", "1", "--quiet", "--no-report"]
    assert main(["run", "--method", "anpyc", "--param", "prune=true", "--epochs", "1", *common, "--out", str(tmp_path / "p")]) == 0
    assert main(["run", "--method", "anpyc", "--param", "prune=true", "--epochs", "1", "--budget", "epochs", *common, "--out", str(tmp_path / "e")]) == 0
    passes = {k: json.loads((tmp_path / k / "metrics.json").read_text())["passes"] for k in ("p", "e")}
    assert all(p <= 1.0 + 128 / 288 + 1e-9 for p in passes["p"]) and all(p > 1.1 for p in passes["e"])
    saved = yaml.safe_load((tmp_path / "p" / "config.yaml").read_text())
    assert saved["meta"]["budget"] == {"mode": "passes", "per_task": 1.0} and saved["train"]["epochs"] < 1.0
    # a saved config as input to a new run starts from the passes it was given, not the epochs it ran
    assert main(["run", "--method", "anpyc", "--config", str(tmp_path / "p" / "config.yaml"), "--quiet", "--no-report",
                 "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["acc_matrix"] == json.loads((tmp_path / "p" / "metrics.json").read_text())["acc_matrix"]


BODY = '''
from torch import nn

from anpyc.models import register_body


@register_body("{name}")
def body(cfg, input_shape):
    """A network of your own as the shared body: the module, its feature width."""
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], 12), nn.LayerNorm(12), nn.Tanh()), 12
'''


def test_your_own_network_registered_beside_your_stream_runs_from_the_command_line(user_module, tmp_path, capsys):
    """``@register_body`` in the module ``--stream-from`` names makes ``--model NAME`` your
    network; the runs record it and ``reproduce`` rebuilds it (the module is imported again)."""
    from anpyc.models.registry import BODIES

    name = f"{user_module}-body"
    with open(tmp_path / f"{user_module}.py", "a") as f:
        f.write(textwrap.dedent(BODY).replace("{name}", name))
    try:
        assert main(["compare", "--methods", "finetune,ewc", "--stream-from", f"{user_module}:make", "--model", name,
                     "--seeds", "1", "--out", str(tmp_path / "D"), *TINY[2:]]) == 0
        saved = yaml.safe_load((tmp_path / "D" / "ewc" / "seed_0" / "config.yaml").read_text())
        assert saved["model"]["name"] == name
        assert main(["reproduce", str(tmp_path / "D" / "ewc" / "seed_0"), "--quiet"]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("reproduced:")
    finally:
        BODIES.pop(name, None)
