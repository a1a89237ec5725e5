"""Replay drawn from the density model for every method that trains a network (``--param
density_replay=K``, :mod:`anpyc.methods.density_replay`): one wrapper, not one per method. The
draws come from the earlier tasks' classes only and count as training passes; the answer is the
density model's evidence plus the network's, weighted; a killed run resumes to the same
figures; bad requests are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments.bench import SUITES
from anpyc.experiments.compare import resolve_label
from anpyc.kernels.inference import sample_ppca
from anpyc.methods import create, for_run, method_names, typed
from anpyc.methods.density_replay import DensityReplayed
from anpyc.report.tables import comparison_group
from anpyc.runner import build_stream, resume_run, run
from killing import Killed, kill_after

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 120, "test_subsample": 90},
         "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 40}}
FAST = {"anpyc": {"importance_samples": 50}, "ewc": {"fisher_samples": 50}, "online-ewc": {"fisher_samples": 50},
        "mas": {"samples": 50}, "er": {"buffer": 20}, "derpp": {"buffer": 20}}
NETWORK_METHODS = method_names(without={"no-network", "upper-bound"})


def _cfg(method: str, scenario: str = "class", k: int = 10, weight: float = 3.0, **more) -> RunConfig:
    params = {**FAST.get(method, {}), "density_replay": k, "density_weight": weight}
    return RunConfig.from_dict({**BLOBS, "method": method, "scenario": scenario, "method_params": params, **more})


# ----------------------------------------------------------------------------- configuration
def test_the_parameters_are_the_runs_and_wrap_the_method_once():
    cfg = _cfg("ewc")
    assert (cfg.density_replay, cfg.density_weight) == (10, 3.0) and cfg.method_params == {"fisher_samples": 50}
    method = for_run(cfg)
    assert isinstance(method, DensityReplayed) and method.inner.name == "ewc" and for_run(cfg, method) is method
    assert cfg.model.head == "single" and typed(cfg).density_replay == 10
    assert not isinstance(for_run(RunConfig.from_dict({**BLOBS, "method": "ewc", "scenario": "class"})), DensityReplayed)


@pytest.mark.parametrize("params, words", [
    ({"density_replay": -1}, "must be >= 0"),
    ({"density_replay": 5, "density_weight": -1}, "must be >= 0"),
    ({"density_replay": 5, "task_inference": "input_density"}, "one of the two"),
    ({"density_weight": 30}, "needs density_replay"),
])
def test_bad_requests_are_config_errors(params, words):
    with pytest.raises(ConfigError, match=words):
        RunConfig.from_dict({**BLOBS, "method": "ewc", "scenario": "class", "method_params": params})


@pytest.mark.parametrize("method", ["density", "slda"])
def test_a_model_of_the_inputs_is_not_given_the_replay(method):
    with pytest.raises(ConfigError, match="trains no network"):
        typed(_cfg(method))


def test_the_budget_counts_the_drawn_inputs():
    method = DensityReplayed(create("er", {"replay_batch": 10}), 10, 1.0)
    assert method.epochs_for_budget(1.0, batch_size=10) == pytest.approx(0.25)  # ER's half, then the draws' half
    with pytest.raises(ValueError, match="batch size"):
        method.epochs_for_budget(1.0)
    # a retraining method: its retraining steps draw too, so it gets half the budget for both phases
    packnet = DensityReplayed(create("packnet", {"retrain_epochs": 0.25}), 10, 1.0)
    assert packnet.epochs_for_budget(1.0, batch_size=10) == pytest.approx(0.25)  # 0.5 - 0.25 of retraining


def test_a_retraining_method_keeps_to_the_budget():
    cfg = _cfg("packnet", stream={**BLOBS["stream"], "subsample": 1000})
    passes = run(cfg, quiet=True, budget="passes").metrics["passes"]
    assert passes[1] == pytest.approx(1.0, abs=0.06) and passes[2] == pytest.approx(1.0, abs=0.06)


def test_rows_and_groups_of_a_comparison():
    assert resolve_label("ewc+density-replay", {}, {}) == ("ewc", {"density_replay": 10, "density_weight": 100.0})
    aliases = SUITES["split-fmnist-class"].all_aliases
    assert aliases["ewc+density-replay"][0] == "ewc" and aliases["ewc+density-replay"][1]["density_replay"] > 0
    assert "joint+density-replay" not in aliases and "density+density-replay" not in aliases
    assert comparison_group({"density_replay": 10}, "class") == "one head, replay drawn from the inputs' model"
    assert comparison_group({"density_replay": 0}, "class") == "one head, no task inference"


# ----------------------------------------------------------------------------- the draws
def test_sample_ppca_follows_the_principal_directions():
    basis = torch.zeros(1, 3, 1)
    basis[0, 1, 0] = 1.0  # one direction: the second coordinate
    fits = {"mean": torch.tensor([[1.0, 2.0, 3.0]]), "basis": basis, "eig": torch.tensor([[5.0]]),
            "noise": torch.tensor([1.0])}
    x = sample_ppca(fits, torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert torch.equal(x[:, [0, 2]], torch.tensor([[1.0, 3.0]]).expand(20000, 2))  # no isotropic noise
    assert x[:, 1].mean().item() == pytest.approx(2.0, abs=0.05) and x[:, 1].var().item() == pytest.approx(4.0, rel=0.05)


def test_the_draws_are_of_earlier_classes_and_counted():
    cfg = _cfg("finetune", stream={**BLOBS["stream"], "subsample": 1000})
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream, budget="passes")
    method, m = result.method, result.metrics
    assert method.extra_examples(0) == 0  # nothing earlier to replay in the first task
    steps = [-(-len(task.train) // 40) for task in stream]
    for t in (1, 2):  # every step drew 10 inputs, on half the task's data (10 drawn per 40: 0.8 epochs)
        assert 0 < method.extra_examples(t) <= 10 * steps[t]
    assert m["passes"][1] == pytest.approx(1.0, abs=0.05) and m["passes"][0] == pytest.approx(0.8, abs=0.05)
    method.current_task.fill_(2)
    x, y, t = method.draw(500)
    assert set(t.tolist()) == {0, 1} and set(y.tolist()) <= set(stream[0].classes) | set(stream[1].classes)
    seen = torch.cat([task.train.get(torch.arange(len(task.train)))[0] for task in stream])
    assert seen.min() <= x.min() and x.max() <= seen.max()  # clipped to the inputs' range
    assert m["density_replay"] == 10 and m["density_replay_model"]["components"] >= 6


def test_the_answer_is_the_densitys_plus_the_weighted_network():
    cfg = _cfg("finetune", weight=3.0)
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    x = torch.cat([task.test.get(torch.arange(10))[0] for task in stream])
    method, model = result.method, result.model
    with torch.no_grad():
        expected = method.density.predict(model, x, None) + 3.0 * F.log_softmax(model(x, 0), 1)
        assert torch.allclose(method.predict(model, x, None), expected)


# ----------------------------------------------------------------------------- every method, the CLI, state
@pytest.mark.parametrize("method", NETWORK_METHODS)
def test_every_method_runs_with_the_replay(method):
    m = run(_cfg(method), quiet=True).metrics
    assert np.isfinite(np.asarray(m["acc_matrix"])[-1]).all() and m["density_replay"] == 10


def test_the_cli_runs_with_the_replay(tmp_path):
    out = tmp_path / "ewc"
    assert main(["run", "--method", "ewc", "--scenario", "class", "--param", "density_replay=5",
                 "--benchmark", "blobs", "--tasks", "2", "--subsample", "120", "--hidden", "8",
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["density_replay"] == 5 and metrics["density_weight"] == 100.0


@pytest.mark.parametrize("method", ["finetune", "er"])
def test_a_killed_run_resumes_to_the_same_figures(tmp_path, monkeypatch, method):
    cfg = _cfg(method, train={**BLOBS["train"], "epochs": 2, "checkpoint_every": 1, "threads": 1})
    full = run(cfg, tmp_path / "full", quiet=True).metrics
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after(m, 3)  # task 0: epoch 1, task end; task 1: epoch 1 (mid-task: the draws continue)
        with pytest.raises(Killed):
            run(cfg, out, quiet=True)
    resumed = resume_run(out, quiet=True).metrics
    clock = {"time_s", "task_time_s", "eval_time_s", "task_eval_time_s", "train_time_s", "peak_rss_mb"}
    same = [json.loads(json.dumps({k: v for k, v in m.items() if k not in clock})) for m in (resumed, full)]
    assert same[0] == same[1]


def test_the_state_dict_holds_the_fits_and_the_draws():
    cfg = _cfg("ewc")
    result = run(cfg, quiet=True)
    fresh = DensityReplayed(create("ewc", cfg.method_params), 10, 3.0)
    fresh.load_state_dict(result.method.state_dict())
    assert fresh.density.n_components == result.method.density.n_components
    assert torch.equal(fresh.draw(7)[0], result.method.draw(7)[0])  # the same generator state
