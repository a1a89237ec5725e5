import pytest
import torch
from torch import nn

from anpyc.config import ModelConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.errors import TrainingError
from anpyc.methods import create
from anpyc.methods.base import Method
from anpyc.models import build_model
from anpyc.train import evaluate, fit, task_loss
from anpyc.utils import eval_mode


def _setup(dropout=0.0):
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,), dropout=dropout), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    return stream, model


def test_fit_learns_and_evaluate_restores_mode():
    stream, model = _setup(dropout=0.2)
    method = create("finetune")
    before = evaluate(model, method, stream[0].train, TrainConfig(), 0)
    fit(model, method, stream[0].train, TrainConfig(lr=0.2), epochs=15, generator=torch.Generator().manual_seed(0))
    model.train()
    after = evaluate(model, method, stream[0].train, TrainConfig(), 0)
    assert after > before + 0.2
    assert model.training and all(m.training for m in model.modules())


def test_eval_mode_restores_mixed_modes():
    model = nn.Sequential(nn.Dropout(), nn.Dropout())
    model[1].eval()
    with eval_mode(model):
        assert not model[0].training
    assert model[0].training and not model[1].training


def test_same_seed_same_weights():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        stream, model = _setup()
        fit(model, create("finetune"), stream[0].train, TrainConfig(), 2, torch.Generator().manual_seed(1))
        results.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])


def test_grouped_loss_equals_separate_losses():
    stream, model = _setup()
    model.add_head(stream[1].n_outputs)
    x0, y0, t0 = stream[0].train.get(torch.arange(5))
    x1, y1, t1 = stream[1].train.get(torch.arange(3))
    mixed = task_loss(model, torch.cat([x0, x1]), torch.cat([y0, y1]), torch.cat([t0, t1]))
    separate = (task_loss(model, x0, y0, t0) * 5 + task_loss(model, x1, y1, t1) * 3) / 8
    assert mixed.item() == pytest.approx(separate.item(), rel=1e-6)


class _Exploding(Method):
    name = "exploding-test"

    def penalty(self, model, x, t):
        return torch.tensor(float("inf"))


def test_non_finite_loss_names_task_and_epoch():
    stream, model = _setup()
    with pytest.raises(TrainingError, match="task 4, epoch 0"):
        fit(model, _Exploding(), stream[0].train, TrainConfig(), 1, torch.Generator(), task_id=4)
