"""Replay baselines (``er``, ``derpp``): the reservoir, its state, the budget accounting, and
class-incremental split MNIST, where they keep what fine-tuning forgets."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream, sources
from anpyc.errors import ConfigError
from anpyc.experiments.compare import budgeted
from anpyc.loop.train import fit
from anpyc.methods import create
from anpyc.methods.replay import ReplayBuffer, logit_mse
from anpyc.models import build_model
from anpyc.runner import build_stream, run
from anpyc.scenario import HookContext

# ------------------------------------------------------------------ the reservoir


def _filled(capacity: int, n: int, batch: int, seed: int) -> ReplayBuffer:
    """A reservoir offered examples 0..n-1 (label = index, task = index // (n // 5))."""
    buf = ReplayBuffer(capacity)
    buf.reseed(torch.Generator().manual_seed(seed))
    for start in range(0, n, batch):
        idx = torch.arange(start, min(start + batch, n))
        buf.add(idx.float().unsqueeze(1), idx, idx // (n // 5))
    return buf


def test_reservoir_keeps_capacity_examples_each_with_probability_capacity_over_n():
    capacity, n, trials = 100, 1000, 300
    kept = torch.zeros(n)
    task_share = torch.zeros(5)
    for seed in range(trials):
        buf = _filled(capacity, n, batch=64, seed=seed)
        assert len(buf) == capacity and int(buf.seen) == n
        labels = buf.y
        assert len(labels.unique()) == capacity  # no example stored twice
        torch.testing.assert_close(buf.x[:, 0], labels.float())  # each slot's x and y agree
        kept[labels] += 1
        task_share += torch.bincount(buf.t, minlength=5) / capacity
    freq = kept / trials  # each example: kept with probability capacity / n = 0.1
    assert abs(float(freq.mean()) - 0.1) < 1e-6  # exactly capacity kept per trial
    assert float((freq - 0.1).abs().max()) < 0.1  # ~5 standard deviations of one frequency
    blocks = freq.reshape(10, 100).mean(1)  # early and late examples alike (no recency bias)
    assert float((blocks - 0.1).abs().max()) < 0.015
    torch.testing.assert_close(task_share / trials, torch.full((5,), 0.2), atol=0.015, rtol=0)


def test_reservoir_fills_in_order_then_the_same_seed_gives_the_same_contents():
    buf = _filled(50, 40, batch=16, seed=0)
    assert len(buf) == 40 and buf.y[:40].tolist() == list(range(40))
    a, b, c = (_filled(50, 500, batch=16, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    assert torch.equal(a.sample(20), b.sample(20))


def _balanced(policy: str, capacity: int, per_group: list[int], seed: int, batch: int = 32) -> ReplayBuffer:
    """A ``policy`` buffer offered group after group (``per_group[g]`` examples of group g,
    as both label and task id), each example's x its index in the stream."""
    buf = ReplayBuffer(capacity, policy=policy)
    buf.reseed(torch.Generator().manual_seed(seed))
    group = torch.cat([torch.full((n,), g) for g, n in enumerate(per_group)])
    for start in range(0, len(group), batch):
        idx = torch.arange(start, min(start + batch, len(group)))
        buf.add(idx.float().unsqueeze(1), group[idx], group[idx])
    return buf


@pytest.mark.parametrize("policy", ["class_balanced", "task_balanced"])
def test_balanced_buffers_split_evenly_and_sample_each_group_uniformly(policy):
    per_group, capacity, trials = [300, 100, 600, 200, 400], 100, 200
    starts = torch.tensor([0, *per_group]).cumsum(0)
    kept = torch.zeros(int(starts[-1]))
    for seed in range(trials):
        buf = _balanced(policy, capacity, per_group, seed)
        stored = buf.x[:, 0].long()
        assert len(buf) == capacity and len(stored.unique()) == capacity  # nothing stored twice
        group = torch.bucketize(stored, starts[1:], right=True)
        assert torch.equal(group, buf.y) and torch.equal(group, buf.t)  # x, y, t of a slot agree
        assert torch.bincount(group, minlength=5).tolist() == [20] * 5  # capacity / groups each
        assert buf.group_seen.tolist() == per_group
        kept[stored] += 1
    for g, n in enumerate(per_group):  # each example of a group kept with probability 20 / n
        freq = kept[starts[g] : starts[g + 1]] / trials
        assert abs(float(freq.mean()) - 20 / n) < 1e-6
        halves = freq.reshape(2, -1).mean(1)  # early and late examples of the group alike
        assert float((halves - 20 / n).abs().max()) < 0.25 * 20 / n


def test_balanced_buffer_keeps_a_group_that_stops_arriving_until_others_catch_up():
    buf = _balanced("class_balanced", 60, [200, 10, 200], seed=0)
    counts = torch.bincount(buf.y, minlength=3).tolist()
    assert counts[1] == 10 and counts[0] == counts[2] == 25  # the small class keeps all it saw
    with pytest.raises(ValueError, match="policy"):
        ReplayBuffer(10, policy="fifo")


def test_bad_configs_are_one_line_errors():
    for name, params in [("er", {"buffer": 0}), ("er", {"replay_batch": 0}), ("derpp", {"alpha": -1.0}),
                         ("derpp", {"logits": "some"}), ("er", {"buffer_policy": "fifo"}),
                         ("derpp", {"logits_at": "never"}), ("derpp", {"replay_batches": 3})]:
        with pytest.raises(ConfigError):
            create(name, params)


def test_epochs_for_budget_counts_the_replayed_examples():
    assert create("er").epochs_for_budget(1.0, batch_size=128) == 0.5
    assert create("er", {"replay_batch": 64}).epochs_for_budget(3.0, batch_size=128) == 2.0
    assert create("derpp", {"replay_batches": 2}).epochs_for_budget(3.0, batch_size=32) == 1.0  # two buffer batches (the paper)
    assert create("derpp", {"alpha": 0.0}).epochs_for_budget(2.0, batch_size=32) == 1.0
    assert create("derpp").epochs_for_budget(2.0, batch_size=32) == 1.0  # one for both (the default)
    with pytest.raises(ValueError, match="batch size"):
        create("er", {"replay_batch": 64}).epochs_for_budget(1.0)


# ------------------------------------------------------------------ state, seeds, logits

#: the papers' buffer (the defaults were chosen on validation: docs/benchmarks/baselines-defaults)
PAPER = {"buffer_policy": "reservoir", "buffer_update": "online"}


def _trained(name: str, params: dict | None, seed: int, scenario: str = "task"):
    """Blobs, 2 tasks: task 0 trained with the method's hooks, task 1 begun (10 steps)."""
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,)), stream.input_shape)
    method, cfg = create(name, params), TrainConfig(epochs=1, batch_size=16)
    for t in range(2):
        model.add_head(stream[t].n_outputs)
        method.before_task(model, stream[t], HookContext(t, 2, seed=seed, batch_size=cfg.batch_size))
        fit(model, method, stream[t].train, cfg, 1 if t == 0 else 0.5, torch.Generator().manual_seed(0))
    return model, method, stream


@pytest.mark.parametrize("name", ["er", "derpp"])
def test_state_dict_round_trip_gives_the_same_buffer_and_next_replay(name):
    model, method, stream = _trained(name, {"buffer": 50, "replay_batch": 8}, seed=0)
    fresh = create(name, {"buffer": 50, "replay_batch": 8})
    fresh.load_state_dict(method.state_dict())
    ours, theirs = method.state_dict(), fresh.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours if k != "_extra_state")
    assert fresh.history == method.history
    x, y, t = stream[1].train.get(torch.arange(16))
    torch.testing.assert_close(fresh.penalty(model, x, y, t), method.penalty(model, x, y, t), rtol=0, atol=0)
    assert torch.equal(fresh.memory.sample(8), method.memory.sample(8))


@pytest.mark.parametrize("name", ["er", "derpp"])
def test_same_seed_same_buffer_other_seed_other_buffer(name):
    a = _trained(name, {"buffer": 30, **PAPER}, seed=1)[1].memory
    b = _trained(name, {"buffer": 30, **PAPER}, seed=1)[1].memory
    c = _trained(name, {"buffer": 30, **PAPER}, seed=2)[1].memory
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.rng, b.rng)
    assert not torch.equal(a.x, c.x)
    assert set(a.task_counts()) == {"0", "1"}  # both tasks in the reservoir


@pytest.mark.parametrize("outputs", ["all", "seen"])
def test_stored_logits_are_the_model_s_own_under_each_head(outputs):
    model, method, stream = _trained("derpp", {"buffer": 400, "logits": outputs, **PAPER}, seed=0)
    mem, n = method.memory, len(method.memory)
    assert n == int(mem.seen) < 400  # nothing replaced yet
    assert set(mem.t[:n].unique().tolist()) == {0, 1}
    assert mem.logits.shape[1] == max(model.head_sizes) and (mem.width[:n] == 4).all()
    x, y, t = stream[1].train.get(torch.arange(16))
    method.penalty(model, x, y, t)  # stores the batch with the model's logits, no step after it
    new = torch.arange(n, n + 16)
    assert torch.equal(mem.x[new], x) and torch.equal(mem.t[new], t)
    with torch.no_grad():
        assert float(logit_mse(model, x, t, mem.logits[new], mem.width[new], outputs)) == 0.0
        moved = mem.logits[new] + 1.0
        assert float(logit_mse(model, x, t, moved, mem.width[new], outputs)) == pytest.approx(1.0)
    assert method.extra_examples(0) > 0 and method.extra_examples(1) > 0


def test_logits_recorded_at_the_task_end_are_the_final_model_s():
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,)), stream.input_shape)
    method, cfg = create("derpp", {"buffer": 400, **PAPER, "logits_at": "task_end", "replay_batches": 1}), TrainConfig(batch_size=16)
    mem = method.memory
    for t in range(2):
        model.add_head(stream[t].n_outputs)
        method.before_task(model, stream[t], HookContext(t, 2, batch_size=16))
        fit(model, method, stream[t].train, cfg, 1 if t == 0 else 0.5, torch.Generator().manual_seed(0))
        rows = (mem.t[: len(mem)] == t).nonzero(as_tuple=True)[0]
        assert len(rows) and (mem.width[rows] == 0).all()  # the task unfinished: no targets yet
        with torch.no_grad():  # nothing to match for them
            assert float(logit_mse(model, mem.x[rows], mem.t[rows], mem.logits[rows], mem.width[rows])) == 0
        if t == 0:
            method.after_task(model, stream[0], HookContext(0, 2))
            old = rows
            assert (mem.width[old] == 4).all()
            with torch.no_grad():
                assert float(logit_mse(model, mem.x[old], mem.t[old], mem.logits[old], mem.width[old])) == 0.0
    with torch.no_grad():  # task 0's targets are the model's after task 0, not now
        assert float(logit_mse(model, mem.x[old], mem.t[old], mem.logits[old], mem.width[old])) > 0
    x, y, t = stream[1].train.get(torch.arange(16))
    before = method.extra_examples(1)
    method.penalty(model, x, y, t)
    assert method.extra_examples(1) - before == 16  # one buffer batch for both terms


def test_class_scenario_stores_every_output_or_only_the_seen_ones():
    for outputs, width in (("all", 10), ("seen", 4)):
        model = build_model(ModelConfig(hidden=(8,), head="single"), (1, 4, 4))
        model.add_head(10)
        model.set_active_outputs(4)  # classes 0-3 seen so far
        method = create("derpp", {"buffer": 10, "logits": outputs, **PAPER})
        method.before_task(model, None, HookContext(0, 2, scenario="class"))
        x, y, t = torch.randn(6, 1, 4, 4), torch.arange(6) % 4, torch.zeros(6, dtype=torch.long)
        method.penalty(model, x, y, t)
        assert method.memory.logits.shape[1] == 10 and (method.memory.width[:6] == width).all()
        model.set_active_outputs(6)  # the head grows: the stored rows still match
        with torch.no_grad():
            mse = logit_mse(model, x, t, method.memory.logits[:6], method.memory.width[:6], outputs)
        assert float(mse) < 1e-12


# ------------------------------------------------------------------ in the loop

BLOBS = {  # 240 examples per task: 12 batches of 20, so 1/2 and 1/3 epoch are whole batches
    "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 240},
    "model": {"hidden": [16]},
    "train": {"epochs": 1, "batch_size": 20, "threads": 1},
}


@pytest.mark.parametrize("name, params, factor", [("er", {}, 2.0), ("derpp", {"replay_batches": 2}, 3.0)])
def test_passes_count_the_replayed_examples(name, params, factor):
    cfg = RunConfig.from_dict({**BLOBS, "method": name, "method_params": {**PAPER, **params}})
    epochs = run(cfg, quiet=True).metrics["passes"]  # budget: 1 epoch each
    assert epochs[0] > 1.5 and abs(epochs[1] - factor) < 0.05
    passes = run(budgeted(cfg, "passes"), quiet=True).metrics["passes"]  # budget: 1 pass each
    assert budgeted(cfg, "passes").train.epochs == pytest.approx(1 / factor)
    assert 0.75 < passes[0] < 1.0  # the first steps replay less (the buffer holds fewer)
    assert passes[1] == pytest.approx(1.0)


# Class-incremental split MNIST, 5 x 2 classes, one growing head: fine-tuning keeps only the
# last task's classes (forgetting ~0.95 here); replay keeps much of the earlier ones.
CLASS = {
    "scenario": "class",
    "stream": {"benchmark": "split-mnist", "tasks": 5, "subsample": 500, "test_subsample": 500},
    "model": {"hidden": [100]},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.05, "threads": 1},
}


@pytest.fixture(scope="module")
def class_stream():
    status = sources.verify(sources.MNIST)
    if not all(v == "ok" for v in status.values()):
        msg = "MNIST not fetched: run `anpyc data fetch mnist` (make test does)"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    return build_stream(RunConfig.from_dict(CLASS))


def _class_run(class_stream, method: str, seed: int = 0, params: dict | None = None) -> dict:
    params = {"buffer": 200, **(params or {})} if method != "finetune" else {}
    cfg = RunConfig.from_dict({**CLASS, "method": method, "method_params": params, "seed": seed})
    return run(cfg, quiet=True, stream=class_stream).metrics


def test_class_incremental_replay_forgets_much_less_than_finetune(class_stream):
    ft = _class_run(class_stream, "finetune")
    assert ft["forgetting"] > 0.85 and max(ft["acc_matrix"][-1][:-1]) < 0.05  # collapsed to the last task
    for method in ("er", "derpp"):
        m = _class_run(class_stream, method)
        assert m["forgetting"] < ft["forgetting"] - 0.3, method
        assert m["avg_acc"] > ft["avg_acc"] + 0.25, method
        assert m["replay"]["stored"] == 200 and len(m["replay"]["per_task"]) == 5


@pytest.mark.parametrize("name, params", [("er", {"buffer_policy": "class_balanced"}),
                                          ("derpp", {"buffer_policy": "task_balanced", "logits_at": "task_end", "replay_batches": 1})])
def test_balanced_buffers_in_the_loop_keep_every_task_evenly(class_stream, name, params):
    cfg = RunConfig.from_dict({**CLASS, "method": name, "method_params": {"buffer": 200, **params}})
    m = run(cfg, quiet=True, stream=class_stream).metrics
    group = "per_class" if params["buffer_policy"] == "class_balanced" else "per_task"
    assert sorted(m["replay"][group].values()) == ([20] * 10 if group == "per_class" else [40] * 5)
    assert m["forgetting"] < 0.6


def test_class_incremental_same_seed_same_run_other_seed_other_buffer(class_stream):
    a, b, c = (_class_run(class_stream, "er", seed, PAPER) for seed in (0, 0, 1))  # a reservoir: seeds show
    np.testing.assert_array_equal(a["acc_matrix"], b["acc_matrix"])
    assert a["replay"] == b["replay"]
    assert a["replay"]["per_class"] != c["replay"]["per_class"]


def test_stored_logits_grow_with_a_wider_later_head_and_old_rows_keep_their_own():
    """Tasks with more outputs than the first (a head per task, sizes 2 then 4): the stored
    logits are padded with zeros to the widest head and each row's ``width`` still says how
    many of its columns are targets, so an old row is matched on its own outputs only."""
    buf = ReplayBuffer(4, logits=True)
    buf.reseed(torch.Generator().manual_seed(0))
    first = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    buf.add(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long), first, torch.full((2,), 2))
    wider = torch.arange(8.0).view(2, 4)
    buf.add(torch.ones(2, 3), torch.tensor([2, 3]), torch.ones(2, dtype=torch.long), wider, torch.full((2,), 4))
    assert buf.logits.shape == (4, 4) and len(buf) == 4
    assert torch.equal(buf.logits[:2], torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]]))
    assert torch.equal(buf.logits[2:], wider) and buf.width.tolist() == [2, 2, 4, 4]


def test_derpp_loss_is_alpha_times_logit_matching_plus_beta_times_replayed_labels():
    """Buzzega et al.: alpha * MSE(logits, stored logits) + beta * CE(replayed labels); with one
    replay batch both terms read the same draw, so each term alone comes from the same state."""
    params = {"buffer": 50, "replay_batch": 8, "replay_batches": 1, **PAPER}  # filled online
    model, method, stream = _trained("derpp", {**params, "alpha": 2.0, "beta": 0.5}, seed=0)
    x, y, t = stream[1].train.get(torch.arange(16))
    state = method.state_dict()

    def alone(alpha: float, beta: float) -> torch.Tensor:
        term = create("derpp", {**params, "alpha": alpha, "beta": beta})
        term.load_state_dict(state)
        return term.penalty(model, x, y, t)

    mse, ce = alone(1.0, 0.0), alone(0.0, 1.0)
    assert float(mse.detach()) > 0 and float(ce.detach()) > 0
    torch.testing.assert_close(method.penalty(model, x, y, t), 2.0 * mse + 0.5 * ce)
