"""Forward transfer's reference b_i (Lopez-Paz & Ranzato 2017) is the accuracy of the randomly
initialised model, body and head as at the start of the run, never of a trained part of it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anpyc.config import RunConfig, TrainConfig
from anpyc.data import stream_from_datasets
from anpyc.loop.train import LoopConfig, RandomInitBaseline, train_stream
from anpyc.methods import create
from anpyc.metrics import fwt, summarize
from anpyc.models.heads import ContinualModel
from anpyc.runner import run


def test_fwt_of_hand_made_figures():
    assert fwt([0.5, 0.7, 0.9], [0.5, 0.5, 0.5]) == pytest.approx(0.3)  # mean(0.7-0.5, 0.9-0.5)
    assert fwt([0.9, 0.4], [0.1, 0.6]) == pytest.approx(-0.2)  # task 0 never counts


def _task(seed: int) -> tuple:
    """Two separable classes on the first input; the test set is exactly balanced (10 + 10)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, 4, generator=g)
    test_x = torch.cat([torch.randn(10, 4, generator=g).abs() + 0.5, -torch.randn(10, 4, generator=g).abs() - 0.5])
    return (x, (x[:, 0] > 0).long()), (test_x, (test_x[:, 0] > 0).long())


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_random_init_baseline_is_the_untrained_model_on_a_hand_made_case(scenario):
    """The body starts with zero weights and bias 1: every input gives the same features, so the
    untrained model predicts one class for everything and scores exactly 0.5 on a balanced test
    set, whatever its head drew. Training (which learns the task well) must not move b_i."""
    tasks = [_task(1), _task(2)]
    stream = stream_from_datasets([t[0] for t in tasks], [t[1] for t in tasks], n_outputs=2, seed=0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU())
    with torch.no_grad():
        body[1].weight.zero_()
        body[1].bias.fill_(1.0)
    model = ContinualModel(body, feature_dim=8, head="multi" if scenario == "task" else "single")
    baseline = RandomInitBaseline(model, seed=0)  # taken before any training, as the runner does
    cfg = LoopConfig(TrainConfig(epochs=5, lr=0.5, batch_size=16), seed=0, scenario=scenario)
    state = train_stream(model, create("finetune"), stream, cfg, callbacks=[baseline])
    p = state.progress
    assert p["acc_random"] == [0.5, 0.5]
    assert torch.equal(baseline.model.body[1].weight, torch.zeros(8, 4))  # its body is still the initial one
    assert torch.equal(baseline.model.body[1].bias, torch.ones(8))
    assert p["R"][1, 1] > 0.9  # the trained model learnt the task: b_i did not come from it
    if scenario == "domain":  # the shared head was trained on task 0; b_1 must not use it
        assert p["acc_before"][1] > 0.6
    assert summarize(p["R"], p["acc_before"], p["acc_random"])["fwt"] == pytest.approx(p["acc_before"][1] - 0.5)


@pytest.mark.parametrize("scenario", ["task", "domain"])
def test_random_init_baseline_does_not_depend_on_training(scenario):
    """Same seed, different training (learning rate, epochs): the same b_i for every task."""
    def acc_random(lr: float, epochs: int) -> list[float]:
        cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 200}, "model": {"hidden": [16]},
                                   "train": {"lr": lr, "epochs": epochs}, "scenario": scenario})
        return run(cfg, quiet=True).metrics["acc_random_init"]

    assert acc_random(0.1, 1) == acc_random(0.5, 3)


def test_with_a_head_per_task_b_i_goes_through_the_models_own_untrained_head():
    """A frozen body: nothing the model learnt can reach a new task, so FWT is exactly 0. The
    "before" accuracy and b_i go through the same freshly drawn head (two heads drawn apart
    would differ by chance)."""
    g = torch.Generator().manual_seed(3)
    tasks = []
    for _ in range(3):
        x, test_x = torch.randn(200, 4, generator=g), torch.randn(400, 4, generator=g)
        tasks.append(((x, (x[:, 0] > 0).long()), (test_x, (test_x[:, 0] + test_x[:, 1] > 0).long())))
    stream = stream_from_datasets([t[0] for t in tasks], [t[1] for t in tasks], n_outputs=2, seed=0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.ReLU())
    body.requires_grad_(False)
    model = ContinualModel(body, feature_dim=16, head="multi")
    baseline = RandomInitBaseline(model, seed=0)
    cfg = LoopConfig(TrainConfig(epochs=2, lr=0.5, batch_size=16), seed=0, scenario="task")
    p = train_stream(model, create("finetune"), stream, cfg, callbacks=[baseline]).progress
    assert p["acc_before"] == p["acc_random"]
    assert summarize(p["R"], p["acc_before"], p["acc_random"])["fwt"] == 0.0
    assert p["R"][2, 2] > max(p["acc_before"][2], 0.6)  # the heads did learn
