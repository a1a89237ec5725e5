"""Your own training loop (``anpyc.loop.own``): a hook called before ``before_task`` says which
hook comes first, in one line, instead of an AttributeError or TypeError from deep inside."""

import pytest
import torch

from anpyc.loop.own import (
    HookContext,
    ModelConfig,
    StreamConfig,
    build_model,
    create,
    make_stream,
    trainable,
)


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
