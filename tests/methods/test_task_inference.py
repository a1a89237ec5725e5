"""Task inference for every method that trains a network (``--param task_inference=SCORE``,
:mod:`anpyc.methods.task_inference`): one wrapper, not one per method. The method trains
task-aware (one head per task, each task's own labels), the test input's task is inferred, the
accuracy of that inference and its memory are recorded; a killed run resumes to the same
figures; bad requests are clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments.compare import budgeted
from anpyc.methods import create, for_run, method_names, typed
from anpyc.methods.task_inference import TaskInferred
from anpyc.runner import build_stream, resume_run, run
from killing import Killed, kill_after

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 120, "test_subsample": 90},
         "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 40}}
FAST = {"anpyc": {"importance_samples": 50}, "ewc": {"fisher_samples": 50}, "online-ewc": {"fisher_samples": 50},
        "mas": {"samples": 50}, "er": {"buffer": 20}, "derpp": {"buffer": 20}}
NETWORK_METHODS = method_names(without={"no-network"})


def _cfg(method: str, scenario: str = "class", score: str = "input_density", **more) -> RunConfig:
    params = {**FAST.get(method, {}), "task_inference": score}
    return RunConfig.from_dict({**BLOBS, "method": method, "scenario": scenario, "method_params": params, **more})


# ----------------------------------------------------------------------------- configuration
def test_the_parameter_is_the_runs_and_wraps_the_method_once():
    cfg = _cfg("ewc")
    assert cfg.task_inference == "input_density" and "task_inference" not in cfg.method_params
    assert cfg.model.head == "multi" and cfg.trained_scenario.head == "multi" and not cfg.trained_scenario.task_id_at_test
    method = for_run(cfg)
    assert isinstance(method, TaskInferred) and method.inner.name == "ewc" and for_run(cfg, method) is method
    assert not isinstance(for_run(RunConfig.from_dict({**BLOBS, "method": "ewc", "scenario": "class"})), TaskInferred)
    assert typed(cfg).task_inference == "input_density"  # typing the method's parameters keeps it


@pytest.mark.parametrize("data, words", [
    ({"scenario": "task", "method_params": {"task_inference": "entropy"}}, "gives the task id"),
    ({"scenario": "class", "method_params": {"task_inference": "oracle"}}, "task_inference"),
])
def test_bad_requests_are_config_errors(data, words):
    with pytest.raises(ConfigError, match=words):
        RunConfig.from_dict({**BLOBS, "method": "ewc", **data})


@pytest.mark.parametrize("method", ["density", "slda"])
def test_a_model_of_the_inputs_is_not_given_task_inference(method):
    with pytest.raises(ConfigError, match="trains no network"):
        typed(_cfg(method))


def test_a_saved_task_scenario_config_with_the_old_method_option_still_loads():
    saved = {**BLOBS, "method": "packnet", "scenario": "task", "method_params": {"task_inference": "entropy"},
             "meta": {"git_commit": "abc"}}
    cfg = RunConfig.from_dict(saved)
    assert cfg.task_inference == "none" and "task_inference" not in typed(cfg).params_dict()


# ----------------------------------------------------------------------------- every method
@pytest.mark.parametrize("method", NETWORK_METHODS)
def test_every_method_trains_a_head_per_task_and_records_the_inference(method):
    cfg = _cfg(method)
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    m = result.metrics
    assert result.model.head_sizes == [len(task.classes) for task in stream]  # each task's own classes
    assert {c for task in stream for c in task.classes} == set(range(3 * len(stream[0].classes)))
    assert m["task_inference"] == "input_density" and 0 <= m["task_inference_acc"] <= 1
    assert m["task_inference_cost"]["memory_mb"] > 0 and m["method_state_mb"] >= m["task_inference_cost"]["memory_mb"]
    assert len(m["task_inference_matrix"]) == 3 and np.isfinite(result.acc_matrix[-1]).all()


@pytest.mark.parametrize("score", ["entropy", "feature_density", "combined", "pooled_density", "mixture_density",
                                   "mixture_combined", "mixture_evidence"])
def test_every_score_runs_in_both_scenarios(score):
    for scenario in ("domain", "class"):
        m = run(_cfg("packnet", scenario, score), quiet=True).metrics
        assert m["task_inference_cost"]["score"] == score and 0 <= m["task_inference_acc"] <= 1


def test_in_the_domain_scenario_it_trains_as_the_task_scenario_does():
    """With the task inferred, a domain stream trains exactly as the task scenario: a head per
    task, each drawn afresh (a head started as a copy of the previous one made fine-tune with
    inference forget far more on pmnist10-domain: docs/baselines.md)."""
    inferred = run(_cfg("finetune", "domain"), quiet=True).model
    task_aware = run(RunConfig.from_dict({**BLOBS, "method": "finetune", "scenario": "task"}), quiet=True).model
    assert inferred.head_sizes == task_aware.head_sizes == [4, 4, 4]  # blobs in the domain scenario: 4 shared outputs
    heads = [h.weight for h in inferred.heads]
    assert not torch.equal(heads[0], heads[1])
    for (name, a), b in zip(inferred.state_dict().items(), task_aware.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("method", ["ewc", "packnet"])
def test_your_own_datasets_infer_and_relabel_as_tensors_do(method):
    """A stream of map-style Datasets (read lazily; each task's labels relabelled through a
    lookup, not copied) gives the figures the same data as tensors gives, class scenario."""
    from torch.utils.data import Dataset

    from anpyc.data import stream_from_datasets

    class Rows(Dataset):  # a Dataset of its own, so it is read item by item
        def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
            self.x, self.y = x, y

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.x[i], int(self.y[i])

    blobs = build_stream(_cfg(method))
    # each task's inputs moved apart, so that the inference has something to find
    splits = {s: [(getattr(task, s).x + 3.0 * t, getattr(task, s).y) for t, task in enumerate(blobs)]
              for s in ("train", "val", "test")}
    as_tensors = stream_from_datasets(splits["train"], splits["test"], splits["val"])
    as_datasets = stream_from_datasets(*([Rows(x, y) for x, y in splits[s]] for s in ("train", "test", "val")))
    assert type(as_datasets[0].train).__name__ == "DatasetData"
    got = [run(_cfg(method), stream=stream, quiet=True).metrics for stream in (as_tensors, as_datasets)]
    np.testing.assert_array_equal(got[0]["acc_matrix"], got[1]["acc_matrix"])  # NaN above the diagonal
    assert got[0]["task_inference_acc"] == got[1]["task_inference_acc"]
    assert got[1]["task_inference_acc"] > 0.5


@pytest.mark.parametrize("method", ["ewc", "finetune", "er"])
def test_the_cli_runs_with_inferred_tasks(tmp_path, method):
    out = tmp_path / method
    assert main(["run", "--method", method, "--scenario", "class", "--param", "task_inference=input_density",
                 "--benchmark", "blobs", "--tasks", "2", "--subsample", "120", "--hidden", "8",
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task_inference"] == "input_density" and "task_inference_acc" in metrics


def test_the_network_and_the_inference_both_count_on_split_mnist(mnist_dir):
    """With one head and no inference fine-tune forgets every earlier class; with the tasks
    inferred from the inputs each task's own head answers: the inference is right for most
    inputs and the accuracy follows it."""
    base = {"stream": {"benchmark": "split-mnist", "subsample": 500, "test_subsample": 300},
            "model": {"hidden": [64]}, "train": {"epochs": 1}, "scenario": "class", "method": "ewc"}
    plain = run(RunConfig.from_dict(base), quiet=True).metrics
    inferred = run(RunConfig.from_dict({**base, "method_params": {"task_inference": "input_density"}}), quiet=True).metrics
    assert inferred["task_inference_acc"] > 0.9 and "task_inference_acc" not in plain
    assert inferred["avg_acc"] > 0.8 > 0.3 > plain["avg_acc"]


# ----------------------------------------------------------------------------- state
@pytest.mark.parametrize("method", ["packnet", "hat", "er"])
def test_a_killed_run_resumes_to_the_same_figures(tmp_path, monkeypatch, method):
    cfg = _cfg(method, train={**BLOBS["train"], "epochs": 2, "checkpoint_every": 1, "threads": 1})
    full = run(cfg, tmp_path / "full", quiet=True).metrics
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after(m, 3)  # task 0: epoch 1, task end; task 1: epoch 1
        with pytest.raises(Killed):
            run(cfg, out, quiet=True)
    resumed = resume_run(out, quiet=True).metrics
    clock = {"time_s", "task_time_s", "eval_time_s", "task_eval_time_s", "train_time_s", "peak_rss_mb"}
    same = [json.loads(json.dumps({k: v for k, v in m.items() if k not in clock})) for m in (resumed, full)]  # NaN as NaN
    assert same[0] == same[1]


@pytest.mark.parametrize("score", ["input_density", "mixture_density"])
def test_the_state_dict_holds_the_whole_inference(score):
    cfg = _cfg("hat", score=score)
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    fresh = TaskInferred(create("hat", cfg.method_params), score)
    fresh.load_state_dict(result.method.state_dict())
    assert fresh.inference.history == result.method.inference.history and fresh.inference.n_views == 3
    x = torch.cat([task.test.get(torch.arange(10))[0] for task in stream])
    with torch.no_grad():
        fresh.attach(result.model)
        theirs = fresh.predict(result.model, x, None)
        result.method.attach(result.model)
        ours = result.method.predict(result.model, x, None)
    assert torch.equal(theirs, ours) and torch.equal(fresh.inferred_tasks(), result.method.inferred_tasks())


@pytest.mark.parametrize("name, params, epochs", [("packnet", {"retrain_epochs": 0.5}, 1.5),
                                                  ("er", {"replay_batch": 64}, 2.0 / 1.5)])
def test_the_wrapper_spends_the_passes_its_method_would(name, params, epochs):
    """Equal passes hold with the task inferred: the wrapped method's retraining or replay
    still counts (at batch 128, 64 replayed examples per step are half a pass more)."""
    wrapped = TaskInferred(create(name, params), "input_density")
    assert wrapped.epochs_for_budget(2.0, batch_size=128) == pytest.approx(epochs)
    cfg = RunConfig.from_dict({"method": name, "scenario": "domain", "train": {"epochs": 2.0, "batch_size": 128},
                               "method_params": {**params, "task_inference": "input_density"}})
    assert budgeted(cfg).train.epochs == pytest.approx(epochs)


def test_a_known_tasks_logits_stand_at_its_own_labels_among_the_streams():
    """Class scenario: asked for task 1, the wrapper puts that head's outputs at task 1's
    classes of the stream, and no other class can win."""
    cfg = _cfg("finetune")
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    x, _, _ = stream[1].test.get(torch.arange(10))
    logits = result.method.predict(result.model, x, 1)
    own = list(stream[1].classes)
    assert own != list(range(len(own)))
    assert torch.isfinite(logits[:, own]).all()
    others = [c for c in range(logits.shape[1]) if c not in own]
    assert torch.isinf(logits[:, others]).all()


def test_the_inferences_calibration_counts_among_the_decision_passes():
    """The entropy score reads each task's validation inputs to calibrate: forward passes
    spent on a decision, recorded beside the method's own (none for fine-tune)."""
    plain = run(_cfg("finetune", score="input_density"), quiet=True).metrics
    calibrated = run(_cfg("finetune", score="entropy"), quiet=True).metrics
    assert plain["decision_passes"] == [0.0, 0.0, 0.0]
    assert all(p > 0 for p in calibrated["decision_passes"])
