"""Old-task accuracy must not drift through batch-norm running statistics."""

import pytest
import torch

from anpyc.config import ModelConfig, TrainConfig
from anpyc.data.taskdata import TaskData
from anpyc.loop.train import evaluate, fit
from anpyc.methods import create
from anpyc.methods.base import Method
from anpyc.models import build_model
from anpyc.models.norm import TaskBatchNorm2d, freeze_bn_stats


class FreezeShared(Method):
    """Test-only method: every shared (body) gradient is zeroed, so only the head learns."""

    name = "test-freeze-shared"

    def before_step(self, model):
        for _, p in model.shared_parameters():
            if p.grad is not None:
                p.grad.zero_()


def _task(task_id: int, shift: float, seed: int) -> tuple[TaskData, TaskData]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (256,), generator=g)
    x = torch.randn(256, 3, 8, 8, generator=g) * (1 + task_id) + shift  # other stats per task
    x[:, 0, 2:6, 2:6] += 2.0 * (2 * y - 1)[:, None, None].float()  # the class shows in one channel
    return TaskData(x[:192], y[:192], task_id), TaskData(x[192:], y[192:], task_id)


def _bn_stats(model):
    return [torch.cat([m.running_mean, m.running_var]).clone() for m in model.body.modules() if isinstance(m, TaskBatchNorm2d)]


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
@pytest.mark.parametrize("freeze", [True, False])
def test_old_task_unchanged_when_shared_weights_frozen(name, freeze):
    torch.manual_seed(0)
    cfg = TrainConfig(lr=0.05, batch_size=32)
    model = build_model(ModelConfig(name=name, width=4, batch_norm=True), (3, 8, 8))
    (train0, test0), (train1, _) = _task(0, 0.0, 1), _task(1, 3.0, 2)
    model.add_head(2)
    fit(model, create("finetune"), train0, cfg, epochs=3, generator=torch.Generator().manual_seed(0))
    acc0 = evaluate(model, create("finetune"), test0, cfg, 0)
    assert acc0 > 0.6  # task 0 was learnt
    stats0 = _bn_stats(model)
    with torch.no_grad():
        logits0 = model.eval()(test0.x, 0)
    model.add_head(2)  # second task: BN statistics freeze here
    if not freeze:
        freeze_bn_stats(model.body, False)  # control: what would happen without the freeze
    shared_before = [p.detach().clone() for _, p in model.shared_parameters()]
    fit(model, FreezeShared(), train1, cfg, epochs=2, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, p) for a, (_, p) in zip(shared_before, model.shared_parameters()))
    with torch.no_grad():
        logits_after = model.eval()(test0.x, 0)
    same_stats = all(torch.equal(a, b) for a, b in zip(stats0, _bn_stats(model)))
    if freeze:
        assert same_stats and torch.equal(logits0, logits_after)
        assert evaluate(model, create("finetune"), test0, cfg, 0) == acc0
    else:  # the test above can fail: running statistics alone move task 0's outputs
        assert not same_stats and not torch.equal(logits0, logits_after)


def test_frozen_flag_travels_with_state_dict():
    a = build_model(ModelConfig(name="cnn", width=2, batch_norm=True), (1, 8, 8))
    a.add_head(2), a.add_head(2)
    b = build_model(ModelConfig(name="cnn", width=2, batch_norm=True), (1, 8, 8))
    b.ensure_heads(a.head_sizes)
    b.load_state_dict(a.state_dict())
    assert all(bool(m.stats_frozen) for m in b.body.modules() if isinstance(m, TaskBatchNorm2d))
    before = _bn_stats(b)
    b.train()(torch.randn(16, 1, 8, 8) + 2.0, 1)  # a loaded model behaves frozen, not just flagged
    assert all(torch.equal(x, y) for x, y in zip(before, _bn_stats(b)))


def test_first_task_still_learns_statistics():
    model = build_model(ModelConfig(name="cnn", width=2, batch_norm=True), (1, 8, 8))
    model.add_head(2)  # first task: nothing frozen
    before = _bn_stats(model)
    model.train()(torch.randn(16, 1, 8, 8) + 2.0, 0)
    assert not any(torch.equal(a, b) for a, b in zip(before, _bn_stats(model)))
