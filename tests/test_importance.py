import torch
from torch import nn

from anpyc import importance
from anpyc.config import StreamConfig
from anpyc.data import make_stream
from anpyc.models import ContinualModel


def _model_and_data():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=200), seed=0)
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    model = ContinualModel(body, 8)
    model.add_head(4)
    return model, stream[0].train


def test_dead_unit_has_zero_importance():
    model, data = _model_and_data()
    with torch.no_grad():  # unit 3 of layer 1 never fires, so nothing depends on its inputs
        model.body[1].weight[3] = 0.0
        model.body[1].bias[3] = -100.0
        model.body[3].weight[:, 3] = 1.0  # its outgoing weights still cannot matter
    for fn in (importance.entropy_taylor, importance.taylor_abs, importance.gradient_magnitude):
        omega = fn(model, data, max_samples=200)
        assert omega["body.1.weight"][3].abs().sum() == 0
        assert omega["body.3.weight"][:, 3].abs().sum() == 0
        assert omega["body.1.weight"].sum() > 0


def test_estimates_restore_train_mode_and_cover_shared_params():
    model, data = _model_and_data()
    model.train()
    omega = importance.entropy_taylor(model, data, max_samples=100)
    assert model.training
    assert set(omega) == {n for n, _ in model.shared_parameters()}
    assert all((v >= 0).all() for v in omega.values())


def test_layer_normalisations_have_mean_one():
    omega = {"a": torch.rand(10, 5), "b": torch.rand(7) * 100}
    for mode in ("layer_mean", "layer_softmax"):
        out = importance.normalize_per_layer(omega, mode)
        for v in out.values():
            assert abs(float(v.mean()) - 1.0) < 1e-4


def test_stats_detect_polarised_importance():
    flat = {"w": torch.rand(1000)}
    spiky = {"w": torch.cat([torch.full((990,), 1e-6), torch.full((10,), 1.0)])}
    a, b = importance.importance_stats(flat), importance.importance_stats(spiky)
    assert b["kurtosis"] > 10 * a["kurtosis"] and b["top90_share"] < 0.02 < a["top90_share"]
