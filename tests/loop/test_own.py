"""Your own training loop (``anpyc.loop.own``): a hook called before ``before_task`` says which
hook comes first, in one line, instead of an AttributeError or TypeError from deep inside; and
your own network as the shared body trains under every method."""

import functools

import pytest
import torch
from torch import nn

from anpyc.errors import ConfigError
from anpyc.loop.own import (
    ContinualModel,
    HookContext,
    ModelConfig,
    StreamConfig,
    build_model,
    create,
    evaluate,
    get_scenario,
    iterate_epochs,
    make_stream,
    task_loss,
    trainable,
)
from anpyc.names import source_names


@pytest.fixture
def one_task():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=100), seed=0)
    model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    return model, stream[0]


def _step_without_before_task(method, model, task):
    x, y, t = task.train.get(torch.arange(8))
    method.penalty(model, x, y, t)
    method.before_step(model)
    method.after_step(model, torch.optim.SGD(trainable(model, method), lr=0.1))


@pytest.mark.parametrize("name, hook, words", [
    ("si", "after_task", "si: after_task() before before_task(): no path integral was started for body.1.weight"),
    ("hat", "after_task", "hat: after_task() before before_task(): task 0 has no embeddings"),
    ("packnet", "step", "no owner map for body.1.weight: call the method's before_task() before training the task"),
    ("anpyc-masks", "step", "no owner map for body.1.weight: call the method's before_task()"),
    ("er", "step", "er: penalty() before before_task(): the replay batch size is unset"),
])
def test_a_hook_before_before_task_names_the_hook_to_call_first(one_task, name, hook, words):
    model, task = one_task
    method = create(name)
    with pytest.raises(RuntimeError) as err:
        if hook == "after_task":
            method.after_task(model, task, HookContext(task=0, n_tasks=2, seed=0))
        else:
            _step_without_before_task(method, model, task)
    assert words in str(err.value) and "\n" not in str(err.value)


class _UsersBody(nn.Module):
    """A body of one's own, beyond the library's Linear/Conv chains: a layer norm, a bare
    parameter and a GRU (whose fused kernel torch.func cannot batch per example)."""

    def __init__(self, n_inputs: int):
        super().__init__()
        self.proj, self.norm, self.gru = nn.Linear(n_inputs, 16), nn.LayerNorm(16), nn.GRU(8, 8, batch_first=True)
        self.scale = nn.Parameter(torch.ones(16))

    def forward(self, x):
        h = torch.relu(self.norm(self.proj(x.flatten(1)))) * self.scale
        out, _ = self.gru(h.view(len(h), 2, 8))
        return out.reshape(len(h), 16)


def _train(model, method, task, n_epochs, batch_size):
    """The README's training step of your own loop (``retrain(n)`` calls it too)."""
    opt = torch.optim.SGD(trainable(model, method), lr=0.1)
    for x, y, t in iterate_epochs(task.train, n_epochs, batch_size=batch_size):
        loss = task_loss(model, x, y, t)
        if (extra := method.penalty(model, x, y, t)) is not None:
            loss = loss + extra
        opt.zero_grad()
        loss.backward()
        method.before_step(model)
        opt.step()
        method.after_step(model, opt)


@pytest.mark.parametrize("body", ["own", "none"])
@pytest.mark.parametrize("name", sorted(source_names("method") - {"hat"}))  # the shipped ones, not tests'
def test_every_method_trains_your_own_body(name, body):
    """EWC, online EWC, MAS and ANPyC's Fisher failed here inside torch.func's vmap (the GRU);
    with a body without parameters (``none``: features computed beforehand, heads alone) the
    first head failed (StopIteration), then every importance (an empty ``grad``). HAT, which
    gates the units of Linear/Conv chains, refuses in one line (below)."""
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = ContinualModel(_UsersBody(64), feature_dim=16) if body == "own" else ContinualModel(nn.Flatten(), feature_dim=64)
    method = create(name, {"importance": "fisher"} if name == "anpyc" else None)
    for t, task in enumerate(stream):
        ctx = HookContext(task=t, n_tasks=len(stream), seed=0)
        model.add_head(task.n_outputs)
        method.before_task(model, task, ctx)
        _train(model, method, task, 1, batch_size=32)
        method.after_task(model, task, ctx, retrain=functools.partial(_train, model, method, task, batch_size=32))
    assert all(0.0 <= evaluate(model, method, task) <= 1.0 for task in stream)
    if body == "own" and name in ("anpyc", "ewc", "online-ewc", "mas", "si"):  # the importance reached the user's own layers
        assert float(method.omega("body.gru.weight_hh_l0").sum()) > 0


def test_hat_refuses_a_body_it_cannot_gate_in_one_line():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=100), seed=0)
    model = ContinualModel(_UsersBody(64), feature_dim=16)
    model.add_head(stream[0].n_outputs)
    with pytest.raises(ConfigError, match="hat gates chains of Linear/Conv2d layers") as err:
        create("hat").before_task(model, stream[0], HookContext(task=0, n_tasks=2, seed=0))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scenario_name", ["domain", "class"])
def test_your_own_loop_without_task_labels_as_the_readme_writes_it(scenario_name):
    """The README's recipe: the scenario gives the stream's labels, the model's head and each
    task's head; evaluation passes no task id. In the class scenario the one head answers over
    the classes seen so far, so a network without replay forgets the old ones entirely, and
    replay keeps them."""
    scenario = get_scenario(scenario_name)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=3), seed=0, labels=scenario.labels)
    accuracy, outputs = {}, []
    for name in ("finetune", "er"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(hidden=(64, 64), head=scenario.head), stream.input_shape)
        method = create(name)
        for t, task in enumerate(stream):
            scenario.begin_task(model, task, stream[: t + 1])  # in place of model.add_head
            ctx = HookContext(task=t, n_tasks=len(stream), seed=0, scenario=scenario)
            method.before_task(model, task, ctx)
            _train(model, method, task, 3, batch_size=128)
            method.after_task(model, task, ctx)
            outputs.append(model(task.test.get(torch.arange(4))[0], 0).shape[1])
        accuracy[name] = [evaluate(model, method, task, task_id_known=scenario.task_id_at_test) for task in stream]
    assert len(model.heads) == 1
    if scenario_name == "class":
        assert outputs[:3] == [4, 8, 12]  # the shared head grows with the classes seen
        assert accuracy["finetune"][0] < 0.05 < 0.5 < accuracy["er"][0]
    else:
        assert outputs[:3] == [4, 4, 4]
    assert min(accuracy["finetune"][-1], accuracy["er"][-1]) > 0.8
