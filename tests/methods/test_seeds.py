"""Every random draw of a method comes from the run seed and the task (``ctx.generator``):
the same seed gives the same state bit for bit, another seed another draw."""

import copy

import pytest
import torch

from anpyc.config import ModelConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.loop.train import fit
from anpyc.methods import create
from anpyc.models import build_model
from anpyc.scenario import HookContext


def _trained_task0():
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16, 16)), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    fit(model, create("finetune"), stream[0].train, TrainConfig(), 1, torch.Generator().manual_seed(0))
    return model, stream


def _after_task(model, stream, name: str, params: dict, seed: int):
    """``before_task`` + ``after_task`` of task 0 on a copy of the trained model."""
    model = copy.deepcopy(model)
    method = create(name, params)
    ctx = HookContext(task=0, n_tasks=2, seed=seed)
    method.before_task(model, stream[0], ctx)
    method.after_task(model, stream[0], ctx, retrain=None)
    return model, method


def _state(model, method) -> list[torch.Tensor]:
    return [t.clone() for t in [*model.state_dict().values(), *method.state_dict().values()] if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize(
    "name, params",
    [
        ("anpyc-masks", {"reinit": "random", "retrain_epochs": 0, "importance_samples": 50}),  # released weights' new values
        ("anpyc-masks", {"prune_criterion": "random", "reinit": "zero", "retrain_epochs": 0, "importance_samples": 50}),
        ("packnet", {"reinit": "random", "retrain_epochs": 0}),
        ("ewc", {"fisher": "sampled", "fisher_samples": 100}),  # labels drawn from the model
    ],
    ids=["anpyc-masks-reinit", "anpyc-masks-random-criterion", "packnet-reinit", "ewc-sampled-fisher"],
)
def test_same_seed_same_state_other_seed_other_draw(name, params):
    model, stream = _trained_task0()
    a = _state(*_after_task(model, stream, name, params, seed=1))
    b = _state(*_after_task(model, stream, name, params, seed=1))
    c = _state(*_after_task(model, stream, name, params, seed=2))
    assert len(a) == len(b) == len(c) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, z) for x, z in zip(a, c, strict=True))


def test_the_draw_depends_on_the_task_too():
    one, two = HookContext(task=0, seed=3).generator(1), HookContext(task=1, seed=3).generator(1)
    assert not torch.equal(torch.rand(4, generator=one), torch.rand(4, generator=two))
