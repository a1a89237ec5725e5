"""Classification, the default kind: the scenario's labels, a model of the config on the
stream's input shape with its head mode from the scenario, the untrained model kept as the
forward-transfer baseline, and the line ``anpyc run`` prints."""

from types import SimpleNamespace

import pytest
import torch

from anpyc.config import RunConfig
from anpyc.loop.train import RandomInitBaseline
from anpyc.problems import Classification, problem_for


def _cfg(scenario="task", **more):
    return RunConfig.from_dict({"method": "ewc", "scenario": scenario, "model": {"hidden": [8]}, "seed": 3, **more})


@pytest.mark.parametrize("scenario, labels", [("task", "local"), ("domain", "local"), ("class", "global")])
def test_the_labels_are_the_scenarios(scenario, labels):
    assert Classification.labels(_cfg(scenario)) == labels


def test_classification_is_the_kind_of_every_body_and_its_config_is_left_alone():
    for name in ("mlp", "cnn", "resnet18"):
        assert problem_for(_cfg(model={"name": name})) is Classification
    cfg = _cfg()
    assert Classification.resolve(cfg) is cfg
    assert Classification.forward_transfer and Classification.refused_tags == frozenset()


@pytest.mark.parametrize("scenario, mode", [("task", "multi"), ("class", "single")])
def test_the_model_is_built_for_the_streams_inputs_with_the_scenarios_heads(scenario, mode):
    model = Classification(_cfg(scenario), SimpleNamespace(input_shape=(2, 3, 3), name="s")).build_model()
    assert model.head_mode == mode and len(model.heads) == 0  # a head comes with each task
    assert model.body[1].in_features == 18 and model.feature_dim == 8


def test_the_forward_transfer_baseline_keeps_a_copy_of_the_untrained_model():
    problem = Classification(_cfg(), SimpleNamespace(input_shape=(4,), name="s"))
    model = problem.build_model()
    [baseline] = problem.callbacks(model)
    assert isinstance(baseline, RandomInitBaseline) and baseline.seed == 3
    with torch.no_grad():
        model.body[1].weight.add_(1.0)  # training moves the run's model...
    assert not torch.equal(baseline.model.body[1].weight, model.body[1].weight)  # ...not the baseline's


def test_the_summary_line_gives_percentages_and_signed_points():
    metrics = {"benchmark": "blobs", "n_tasks": 3, "avg_acc": 0.8125, "bwt": -0.035, "forgetting": 0.0425, "time_s": 1.26}
    line = Classification.summary_line(SimpleNamespace(config=_cfg(), metrics=metrics), "runs/x")
    assert line == ("ewc on blobs (3 tasks): ACC 81.25%  BWT -3.50 points  forgetting 4.25 points  time 1.3s  -> runs/x")
    metrics["bwt"] = 0.01
    assert "BWT +1.00 points" in Classification.summary_line(SimpleNamespace(config=_cfg(), metrics=metrics), "o")
