"""Protocols: defined once, fingerprinted, run by the named suites, tuned with the grid file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments.bench import SUITES, bench_plan
from anpyc.experiments.protocols import (
    PROTOCOLS,
    differences,
    fingerprint,
    matching_protocols,
    protocol_config,
    protocol_fingerprint,
)


def test_fingerprint_leaves_out_length_evaluation_machine_and_seed():
    a = RunConfig.from_dict({"stream": {"tasks": 10}})
    b = RunConfig.from_dict({"stream": {"tasks": 50, "test_subsample": 2000, "val_subsample": 1000, "data_dir": "x"},
                             "train": {"threads": 1, "eval_batch_size": 50, "checkpoint_every": 2}, "seed": 4})
    assert fingerprint(a, "passes") == fingerprint(b, "passes")
    for change in ({"train": {"lr": 0.01}}, {"train": {"reset_optimizer": False}}, {"stream": {"standardize": False}},
                   {"stream": {"first_task_unpermuted": False}}, {"stream": {"subsample": 100}}, {"model": {"hidden": [10]}},
                   {"scenario": "domain"}):
        assert fingerprint(RunConfig.from_dict(change), "passes") != fingerprint(a, "passes"), change
    assert fingerprint(a, "passes") != fingerprint(a, "epochs") and "budget" not in fingerprint(a, None)


def test_differences_name_the_setting_and_both_values():
    preset = fingerprint(RunConfig.from_dict({"train": {"optimizer": "adam", "lr": 0.001}}), "passes")
    run = fingerprint(RunConfig(), "passes")
    assert differences(preset, run) == ["train.lr 0.001 (preset) vs 0.1 (run)", "train.optimizer 'adam' (preset) vs 'sgd' (run)"]
    assert differences(preset, fingerprint(RunConfig(), None))[0].startswith("train.lr")  # a single run: no budget
    assert differences(preset, preset) == []


def test_common_protocol_is_the_one_papers_use():
    cfg = protocol_config("pmnist10-common")
    assert cfg.stream.benchmark == "permuted-mnist" and cfg.stream.tasks == 10
    assert cfg.stream.standardize and not cfg.stream.first_task_unpermuted
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.momentum, cfg.train.reset_optimizer) == ("sgd", 0.01, 0.9, False)
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.model.hidden, cfg.scenario) == (128, 1, (256, 256), "task")
    # the command line the issue gives is the same protocol
    from anpyc.cli import _config_from_args, build_parser

    args = build_parser().parse_args([
        "run", "--method", "finetune", "--benchmark", "permuted-mnist", "--tasks", "10", "--epochs", "1",
        "--hidden", "256,256", "--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--batch-size", "128",
        "--reset-optimizer", "false", "--first-task-unpermuted", "false", "--out", "x"])
    assert matching_protocols(_config_from_args(args, "finetune"), "passes") == ["pmnist10-common"]


@pytest.mark.parametrize("name", [n for n, b in SUITES.items() if b.protocol])
def test_each_protocol_benchmark_runs_its_protocol(name):
    plan = bench_plan(name, presets=False)
    assert plan.bench.protocol in matching_protocols(plan.base, plan.budget)
    assert plan.budget == PROTOCOLS[plan.bench.protocol].budget


def test_pmnist10_common_is_a_named_bench_with_every_method():
    bench = SUITES["pmnist10-common"]
    from anpyc.methods import method_names

    assert bench.protocol == "pmnist10-common" and bench.methods == tuple(method_names(without={"no-network"}))
    assert fingerprint(RunConfig.from_dict(bench.base), bench.budget) == protocol_fingerprint("pmnist10-common")


def test_every_tuning_proxy_keeps_its_protocol_and_machine_settings_only():
    from anpyc.experiments.presets import load_grids
    from anpyc.experiments.tune import protocol_tune_config

    for protocol, methods in load_grids().items():
        for method in methods:
            cfg = protocol_tune_config(protocol, method, {"train": {"threads": 1}})
            assert fingerprint(cfg, PROTOCOLS[protocol].budget) == protocol_fingerprint(protocol)
            assert cfg.method == method and cfg.train.threads == 1
    with pytest.raises(ConfigError, match="train.lr is fixed by the protocol"):
        protocol_tune_config("pmnist10", "ewc", {"train": {"lr": 0.05}})
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocol_tune_config("nope", "ewc")


@pytest.mark.parametrize("protocol", ["split-mnist-class", "split-fmnist-class"])
def test_a_class_protocols_inference_is_the_validation_choice_of_its_committed_records(protocol):
    """The score of a class protocol's ``+inference`` rows is the best on validation of every
    score its committed records compared (``docs/benchmarks/<P>/choices/packnet-*/tune.json``,
    ``anpyc tune --protocol P --method packnet --param task_inference=...``)."""
    choices = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / protocol / "choices"
    val: dict[str, float] = {}
    for record in sorted(choices.glob("packnet-*/tune.json")):
        tune = json.loads(record.read_text())
        assert tune["protocol"]["name"] == protocol and tune["method"] == "packnet"
        for point in tune["points"]:
            score = point["params"]["task_inference"]
            val[score] = max(val.get(score, 0.0), point["val_avg_acc"])
    assert len(val) >= 3
    assert PROTOCOLS[protocol].inference == max(val, key=val.get)


@pytest.mark.parametrize("protocol", ["split-mnist-class", "split-fmnist-class"])
def test_a_class_protocols_density_replay_is_the_validation_choice_of_its_committed_record(protocol):
    """The options of the protocol's ``+density-replay`` rows are the best on validation of its
    committed 4-point grid (``choices/finetune-density-replay/tune.json``)."""
    record = (Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / protocol / "choices"
              / "finetune-density-replay" / "tune.json")
    tune = json.loads(record.read_text())
    assert tune["protocol"]["name"] == protocol and len(tune["points"]) == 4
    best = max(tune["points"], key=lambda p: p["val_avg_acc"])["params"]
    chosen = PROTOCOLS[protocol].density_replay
    assert chosen == {k: best[k] for k in ("density_replay", "density_weight")}
