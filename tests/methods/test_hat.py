"""HAT: old tasks' outputs are bit-identical, the attention regulariser, the annealing of s
(also across a state_dict round trip), forgetting against fine-tune, task inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.errors import ConfigError
from anpyc.loop.train import fit
from anpyc.methods import create
from anpyc.models import build_model
from anpyc.runner import run
from anpyc.scenario import HookContext
from anpyc.utils import eval_mode

BATCH = 32


def _learn(model, method, stream, t: int, cfg: TrainConfig, epochs: float = 2) -> None:
    ctx = HookContext(t, len(stream), batch_size=cfg.batch_size)
    model.add_head(stream[t].n_outputs)
    method.before_task(model, stream[t], ctx)
    fit(model, method, stream[t].train, cfg, epochs, torch.Generator().manual_seed(t))
    method.after_task(model, stream[t], ctx)


def _task0_logits(model, method, x):
    with eval_mode(model), method.eval_context(model, 0), torch.no_grad():
        return model(x, 0)


@pytest.mark.parametrize("model_cfg", [
    ModelConfig(hidden=(16, 16)),
    ModelConfig(name="cnn", width=8),
    ModelConfig(name="cnn", width=8, batch_norm=True),
], ids=["mlp", "cnn", "cnn-bn"])
def test_old_task_outputs_bit_identical_with_momentum_and_weight_decay(model_cfg):
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(model_cfg, stream.input_shape)
    method = create("hat")
    cfg = TrainConfig(epochs=2, batch_size=BATCH, momentum=0.9, weight_decay=0.01)
    _learn(model, method, stream, 0, cfg)
    x = stream[0].test.get(torch.arange(64))[0]
    before = _task0_logits(model, method, x)
    body = {n: p.detach().clone() for n, p in model.shared_parameters()}
    used = [float(method.used(i).mean()) for i in range(len(method._layers))]
    assert all(0 < u < 1 for u in used)  # task 0 holds some units, not all
    _learn(model, method, stream, 1, cfg)
    assert torch.equal(_task0_logits(model, method, x), before)
    assert any(not torch.equal(p.detach(), body[n]) for n, p in model.shared_parameters())  # task 1 learnt


def _hat_at_task1():
    """HAT after task 0 (blobs, MLP), task 1 started, its gates at s = s_max."""
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16, 16)), stream.input_shape)
    method = create("hat", {"c": 0.5})
    _learn(model, method, stream, 0, TrainConfig(batch_size=BATCH), epochs=1)
    model.add_head(stream[1].n_outputs)
    method.before_task(model, stream[1], HookContext(1, 2, batch_size=BATCH))
    method.batch.fill_(int(method.batches) - 1)  # the last batch of the epoch: s = s_max
    return model, method, stream


def _set_attention(method, task: int, on: list[torch.Tensor]) -> None:
    with torch.no_grad():  # sigmoid(400 * +-6) is exactly 1 or 0 in float32
        for i, units in enumerate(on):
            method.embedding(task, i).copy_(torch.where(units.bool(), 6.0, -6.0))


def test_attention_regulariser_charges_only_units_earlier_tasks_left_free():
    model, method, stream = _hat_at_task1()
    x, y, t = stream[1].train.get(torch.arange(BATCH))
    used = [method.used(i).clone() for i in range(2)]
    n_free = sum(float((1 - u).sum()) for u in used)
    assert method.s() == 400.0 and 0 < n_free < 32
    _set_attention(method, 1, [torch.zeros_like(u) for u in used])
    assert float(method.penalty(model, x, y, t).detach()) == 0.0  # attends to nothing
    _set_attention(method, 1, used)
    assert float(method.penalty(model, x, y, t).detach()) == 0.0  # reuses only earlier tasks' units
    values = []
    for k in (1, 3, 6):  # k more units, among those no earlier task uses
        free = (used[0] == 0).nonzero().flatten()[:k]
        more = used[0].clone()
        more[free] = 1.0
        _set_attention(method, 1, [more, used[1]])
        values.append(float(method.penalty(model, x, y, t).detach()))
    assert values == pytest.approx([0.5 * k / n_free for k in (1, 3, 6)])
    # the first task has no earlier units: the regulariser is c * mean attention (sparsity)
    fresh = create("hat", {"c": 0.5})
    model0 = build_model(ModelConfig(hidden=(16, 16)), stream.input_shape)
    model0.add_head(4)
    fresh.before_task(model0, stream[0], HookContext(0, 2, batch_size=BATCH))
    a = torch.cat([torch.sigmoid(fresh.s() * fresh.embedding(0, i)) for i in range(2)]).detach()
    assert float(fresh.penalty(model0, x, y, t).detach()) == pytest.approx(0.5 * float(a.mean()))


def test_s_anneals_over_each_epoch_and_survives_a_state_dict_round_trip():
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,)), stream.input_shape)
    method = create("hat", {"s_max": 50, "anneal_cycles": 1})  # the paper's: one annealing per epoch
    model.add_head(stream[0].n_outputs)
    method.before_task(model, stream[0], HookContext(0, 2, batch_size=BATCH))
    n = math.ceil(len(stream[0].train) / BATCH)
    assert int(method.batches) == n > 2
    seen = []
    penalty = method.penalty
    method.penalty = lambda *a: (seen.append(method.s()), penalty(*a))[1]
    cfg = TrainConfig(batch_size=BATCH)
    fit(model, method, stream[0].train, cfg, 2, torch.Generator())
    expected = [1 / 50 + (50 - 1 / 50) * b / (n - 1) for b in range(n)]
    assert seen == pytest.approx(expected * 2, rel=1e-12)  # every epoch anneals from 1/s_max
    assert seen[n - 1] == 50.0
    fit(model, method, stream[0].train, cfg, 3 / n, torch.Generator())  # 3 batches into an epoch
    fresh = create("hat", {"s_max": 50, "anneal_cycles": 1})
    fresh.load_state_dict(method.state_dict())
    assert fresh.s() == method.s() == pytest.approx(expected[3])
    assert isinstance(fresh.embedding(0, 0), torch.nn.Parameter) and fresh.embedding(0, 0).requires_grad
    method.after_task(model, stream[0], HookContext(0, 2, batch_size=BATCH))
    again = create("hat", {"s_max": 50})
    again.load_state_dict(method.state_dict())
    assert not again.embedding(0, 0).requires_grad  # a finished task's embeddings stay put
    assert torch.equal(again.task_mask(0, 0), method.task_mask(0, 0))


def test_s_anneals_in_each_of_several_cycles_per_epoch():
    from anpyc.methods.hat import anneal_cycle

    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,)), stream.input_shape)
    method = create("hat", {"s_max": 20, "anneal_cycles": 2})
    model.add_head(stream[0].n_outputs)
    method.before_task(model, stream[0], HookContext(0, 1, batch_size=16))
    n = int(method.batches)
    seen = []
    penalty = method.penalty
    method.penalty = lambda *a: (seen.append(method.s()), penalty(*a))[1]
    fit(model, method, stream[0].train, TrainConfig(batch_size=16), 1, torch.Generator())
    first = math.ceil(n / 2)  # the epoch's n batches cut in two runs, each annealed
    ramp = lambda k: [1 / 20 + (20 - 1 / 20) * b / (k - 1) for b in range(k)]  # noqa: E731
    assert len(seen) == n and seen == pytest.approx(ramp(first) + ramp(n - first), rel=1e-12)
    for batches, cycles in ((10, 3), (422, 8), (7, 7), (3, 10)):  # every batch in one cycle, cycles tile the epoch
        spans = {anneal_cycle(b, batches, cycles) for b in range(batches)}
        assert sum(length for _, length in spans) == batches
        assert all(s <= b < s + length for b in range(batches) for s, length in [anneal_cycle(b, batches, cycles)])
    with pytest.raises(ConfigError):
        create("hat", {"anneal_cycles": 0})


def test_hat_does_not_forget_where_finetune_does():
    """Task-aware blobs (pixel-permuted tasks): fine-tune forgets (7 points of the old tasks'
    accuracy); HAT keeps them exactly and ends higher. ``c=0.25``: the paper's 0.75 leaves too
    few units for ten epochs of 1000 examples (the defaults are for long training)."""
    base = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 1000}, "model": {"hidden": [64, 64]},
            "train": {"epochs": 10, "batch_size": BATCH}}
    ft = run(RunConfig.from_dict({**base, "method": "finetune"}), quiet=True)
    hat = run(RunConfig.from_dict({**base, "method": "hat", "method_params": {"c": 0.25}}), quiet=True)
    R = hat.acc_matrix
    for j in range(3):
        np.testing.assert_array_equal(R[j:, j], R[j, j])
    assert hat.metrics["forgetting"] == 0.0 and ft.metrics["forgetting"] > 0.05
    assert R[0, 0] > 0.5 and R[-1].mean() > ft.acc_matrix[-1].mean()  # chance is 0.25
    free = hat.metrics["free_fraction_total_curve"]
    assert free == sorted(free, reverse=True) and 0 < free[-1] < free[0] < 1


def test_domain_scenario_infers_the_task(mnist_dir):
    cfg = RunConfig.from_dict({
        "stream": {"benchmark": "permuted-mnist", "tasks": 2, "subsample": 500, "test_subsample": 200},
        "model": {"hidden": [32]}, "scenario": "domain", "train": {"epochs": 3, "batch_size": BATCH},
        "method": "hat", "method_params": {"c": 0.75, "anneal_cycles": 1,  # the paper's: this test is about task inference
                                           "task_inference": "input_density"},
    })
    res = run(cfg, quiet=True)
    assert res.metrics["task_inference_acc"] > 0.9  # input density tells permutations apart
    assert np.isfinite(res.acc_matrix[-1]).all() and res.acc_matrix[-1].min() > 0.25  # chance: 0.1


def test_resnet_is_refused():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=50), seed=0)
    model = build_model(ModelConfig(name="resnet18", width=4), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    with pytest.raises(ConfigError, match="chains of Linear/Conv2d"):
        create("hat").before_task(model, stream[0], HookContext(0, 1))


@pytest.mark.parametrize("body, words", [
    (lambda: torch.nn.Sequential(torch.nn.Flatten()), "hat: the body has no Linear or Conv2d layer to gate"),
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, groups=2), torch.nn.Flatten()),
     "hat: grouped convolution 0 is not supported"),
])
def test_bodies_hat_cannot_gate_are_refused_before_training(body, words):
    from anpyc.models import ContinualModel

    with pytest.raises(ConfigError, match=words):
        create("hat").attach(ContinualModel(body(), 8))


def test_a_linear_whose_inputs_do_not_split_over_the_units_before_it_is_refused():
    """A Linear after a conv must see each channel's positions in a row (a flattened conv);
    10 inputs after 3 channels cannot be told apart by channel."""
    from anpyc.methods.hat import frozen_masks, gated_layers
    from anpyc.models import ContinualModel

    model = ContinualModel(torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.Flatten(), torch.nn.Linear(10, 4)), 4)
    with pytest.raises(ConfigError, match="hat: body.2 has 10 inputs, not a multiple of the 3 units before it"):
        frozen_masks(gated_layers(model), [torch.ones(3), torch.ones(4)])


def test_embedding_gradients_are_compensated_and_embeddings_clamped():
    """Serra et al.'s compensation, g * s_max / s * (cosh(clamp(s e)) + 1) / (cosh(e) + 1), so a
    gate learns at the same pace whatever the annealed slope; embeddings clamped to +-thres_emb."""
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,)), stream.input_shape)
    method = create("hat", {"s_max": 50, "anneal_cycles": 1, "thres_cosh": 3.0, "thres_emb": 2.0})
    model.add_head(stream[0].n_outputs)
    method.before_task(model, stream[0], HookContext(0, 1, batch_size=BATCH))
    method.batch.fill_(2)  # a slope between 1/s_max and s_max
    s, e = method.s(), method.embedding(0, 0)
    with torch.no_grad():
        e.copy_(torch.linspace(-3, 3, e.numel()).view_as(e))
    e.grad = torch.ones_like(e)
    method.before_step(model)
    expected = 50 / s * (torch.cosh(torch.clamp(s * e, -3.0, 3.0)) + 1) / (torch.cosh(e) + 1)
    assert 1 / 50 < s < 50 and float((s * e.detach()).abs().max()) > 3.0  # the clamp acts on some entries
    torch.testing.assert_close(e.grad, expected.detach())
    method.after_step(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert float(e.detach().abs().max()) == 2.0


def test_a_task_whose_every_gate_closed_is_named_in_a_warning(caplog):
    """With few steps per task (2 epochs of the synthetic blobs, 30 batches) the sparsity pressure
    of the default c closes every gate: HAT answered at chance without a word."""
    base = {"method": "hat", "model": {"hidden": [64, 64]}, "stream": {"benchmark": "blobs", "tasks": 2},
            "train": {"epochs": 2}}
    with caplog.at_level("WARNING", logger="anpyc.methods.hat"):
        closed = run(RunConfig.from_dict(base), quiet=True)
    warned = [m for m in caplog.messages if "opens no unit" in m]
    assert closed.metrics["avg_acc"] == pytest.approx(0.25, abs=0.01)  # chance: 4 classes a task
    assert len(warned) == 2 and warned[0].startswith("hat: task 1 opens no unit of body.1, body.3") and "lower c (now 4)" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="anpyc.methods.hat"):
        opened = run(RunConfig.from_dict({**base, "method_params": {"c": 0.75}}), quiet=True)
    assert not [m for m in caplog.messages if "opens no unit" in m] and opened.metrics["avg_acc"] > 0.4  # above chance
