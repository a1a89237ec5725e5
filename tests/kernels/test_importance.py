import pytest
import torch
from torch import nn

from anpyc.config import StreamConfig
from anpyc.data import make_stream
from anpyc.kernels import importance
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


def test_mlp_closed_form_per_sample_matches_vmap(monkeypatch):
    """The one-matmul path for Linear layers gives the same Fisher and MAS importance as
    torch.func per-sample gradients (the general path other bodies take)."""
    model, data = _model_and_data()

    def estimates():
        out = {kind: importance.fisher_diag(model, data, kind=kind, max_samples=150, batch_size=64,
                                            generator=torch.Generator().manual_seed(3))
               for kind in importance.FISHER_KINDS}
        out["mas"] = importance.mas_importance(model, data, max_samples=150, batch_size=64)
        return out

    x, y, _ = next(iter(importance.iterate(data, 4)))
    assert importance._linear_per_sample(model, x, 0, importance._log_lik, y, "sq") is not None  # the fast path applies
    fast = estimates()
    monkeypatch.setattr(importance, "_linear_per_sample", lambda *a, **k: None)
    slow = estimates()
    for key, omega in fast.items():
        for name, value in omega.items():
            assert value.sum() > 0, (key, name)
            torch.testing.assert_close(value, slow[key][name], rtol=1e-4, atol=1e-7)


def test_closed_form_declines_bodies_it_cannot_handle():
    torch.manual_seed(0)
    conv = ContinualModel(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten()), 2 * 6 * 6)
    conv.add_head(3)
    x = torch.randn(5, 1, 8, 8)
    y = torch.zeros(5, dtype=torch.long)
    assert importance._linear_per_sample(conv, x, 0, importance._log_lik, y, "sq") is None
    shared = nn.Linear(4, 4)  # one layer applied twice: the outer-product form would be wrong
    twice = ContinualModel(nn.Sequential(shared, nn.ReLU(), shared), 4)
    twice.add_head(3)
    assert importance._linear_per_sample(twice, torch.randn(5, 4), 0, importance._log_lik, y, "sq") is None
    grads = importance._per_sample_grads(twice, torch.randn(5, 4), 0, importance._log_lik, y)
    assert set(grads) == {n for n, _ in twice.shared_parameters()}


class _RecurrentBody(nn.Module):
    """A user's body torch.func cannot batch (the fused kernel of ``nn.GRU``)."""

    def __init__(self):
        super().__init__()
        self.proj, self.gru = nn.Linear(64, 8), nn.GRU(4, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.gru(torch.tanh(self.proj(x.flatten(1))).view(len(x), 2, 4))
        return out.reshape(len(x), 8)


def test_a_body_vmap_cannot_batch_gets_the_same_per_example_sums_one_row_at_a_time(caplog, monkeypatch):
    """EWC, online EWC, MAS and ANPyC's Fisher failed on a GRU body with torch's broadcast error
    from inside vmap; they now take one backward pass per example, with one warning."""
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=200), seed=0)
    torch.manual_seed(0)
    model = ContinualModel(_RecurrentBody(), 8)
    model.add_head(4)
    x, y, _ = next(iter(importance.iterate(stream[0].train, 6)))
    monkeypatch.setattr(importance, "_WARNED_BODIES", set())
    with caplog.at_level("WARNING", logger=importance.__name__):
        got = importance._per_sample_grads(model, x, 0, importance._log_lik, y)
        importance._per_sample_grads(model, x, 0, importance._log_lik, y)
    warnings = [m for m in caplog.messages if "cannot batch" in m]
    assert len(warnings) == 1 and "_RecurrentBody" in warnings[0]  # once per kind of body
    params = [p for _, p in model.shared_parameters()]
    expected = [torch.zeros_like(p) for p in params]
    for xi, yi in zip(x, y):  # by hand: one example, one gradient, squared
        grads = torch.autograd.grad(importance._log_lik(model(xi[None], 0), yi[None])[0], params)
        expected = [e + g.pow(2) for e, g in zip(expected, grads)]
    assert set(got) == {n for n, _ in model.shared_parameters()}
    for (name, _), e in zip(model.shared_parameters(), expected):
        assert e.sum() > 0, name
        torch.testing.assert_close(got[name], e, rtol=1e-5, atol=1e-8)
    assert all(bool(v.sum() > 0) for v in importance.mas_importance(model, stream[0].train, max_samples=20).values())


def test_one_row_at_a_time_gives_what_vmap_gives(monkeypatch):
    """Where vmap works (a conv body), the fallback's sums equal its own."""
    torch.manual_seed(0)
    conv = ContinualModel(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten()), 2 * 6 * 6)
    conv.add_head(3)
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 1, 0])
    batched = importance._per_sample_grads(conv, x, 0, importance._log_lik, y, "abs")
    def refuse(*args, **kwargs):
        raise NotImplementedError("no batching rule")

    monkeypatch.setattr("torch.func.vmap", refuse)
    one_by_one = importance._per_sample_grads(conv, x, 0, importance._log_lik, y, "abs")
    for name, value in batched.items():
        torch.testing.assert_close(one_by_one[name], value, rtol=1e-5, atol=1e-8)


def test_estimates_send_the_batches_to_the_models_device_when_none_is_named(monkeypatch):
    """The data sets live on the CPU; a model on a GPU must get its batches there. ANPyC called
    the estimate without a device and failed on CUDA (docs/devices.md). Here torch's
    shape-only ``meta`` device stands in for the GPU: the batches must arrive on it."""
    model, data = _model_and_data()
    seen = set()

    def objective(x, y, t, signal):
        seen.add(x.device.type)
        return sum(p.sum() for p in model.parameters())  # on the CPU, so the gradient runs

    assert importance._model_device(model) == torch.device("cpu")
    monkeypatch.setattr(importance, "_model_device", lambda m: torch.device("meta"))
    monkeypatch.setattr(model, "importance_objective", objective, raising=False)
    for fn in (importance.entropy_taylor, importance.taylor_abs, importance.empirical_batch_fisher):
        seen.clear()
        fn(model, data, max_samples=100)
        assert seen == {"meta"}, fn.__name__


def test_per_sample_estimates_take_the_models_device_when_none_is_named(monkeypatch):
    """The per-sample driver (the Fisher's, MAS's) derives the batches' device from the model as
    the batch-sum one does, so the methods (ANPyC, EWC, MAS) need not pass it."""
    model, data = _model_and_data()
    asked = []
    monkeypatch.setattr(importance, "_model_device", lambda m: asked.append(m) or torch.device("cpu"))
    importance.fisher_diag(model, data, kind="true", max_samples=20)
    importance.mas_importance(model, data, max_samples=20)
    assert asked == [model, model]
    importance.fisher_diag(model, data, kind="true", max_samples=20, device="cpu")  # named: not asked
    assert asked == [model, model]


def test_neuron_shaping_weights_each_row_by_its_units_share_of_the_layer():
    w = torch.tensor([[4.0, 0.0], [1.0, 1.0]])  # mean 1.5; unit means 2 and 1, i.e. 4/3 and 2/3 of the layer's
    out = importance.normalize_per_layer({"w": w}, "neuron")["w"]
    assert torch.allclose(out, torch.tensor([[4 / 1.5 * 4 / 3, 0.0], [1 / 1.5 * 2 / 3, 1 / 1.5 * 2 / 3]]))


@pytest.mark.parametrize("mode", ["spread", "layer_mean", "layer_softmax", "neuron"])
def test_a_tensor_without_importance_stays_zero_in_every_shaping(mode):
    """A layer the task never used (or every entry released) has Omega 0: dividing by its mean
    or its max would turn it into NaN and poison the penalty."""
    omega = {"dead": torch.zeros(3, 4), "bias": torch.zeros(3), "empty": torch.zeros(0), "live": torch.rand(3, 4) + 0.1}
    out = importance.normalize_per_layer(omega, mode)
    assert all(torch.equal(out[k], omega[k]) for k in ("dead", "bias", "empty"))
    assert bool(torch.isfinite(out["live"]).all()) and float(out["live"].min()) > 0


def test_unknown_shaping_is_refused():
    with pytest.raises(ValueError, match="unknown normalisation 'rows'"):
        importance.normalize_per_layer({"w": torch.ones(2)}, "rows")


def test_stats_of_no_importance_and_of_a_constant_one():
    none = importance.importance_stats({"w": torch.zeros(5)})
    assert none["kurtosis"] is None and none["zero_share"] == 1.0 and none["hist_counts"] == []
    flat = importance.importance_stats({"w": torch.full((10,), 2.0)}, bins=4)
    assert sum(flat["hist_counts"]) == 10 and len(flat["hist_edges"]) == 5  # one value: a unit-wide histogram
    assert flat["zero_share"] == 0.0 and flat["top90_share"] == 0.9


@pytest.mark.parametrize("form, sign", [("reference", 1.0), ("removal", -1.0)])
def test_entropy_taylor_is_the_second_order_score_of_the_entropy_gradient(form, sign):
    """max(sign g theta + theta^2 g^2 / 2, 0), g the gradient of the batch's summed output
    entropy: one batch holding the whole set, so the mean over batches is that batch's score."""
    model, data = _model_and_data()
    omega = importance.entropy_taylor(model, data, batch_size=len(data), form=form)
    x, y, t = data.get(torch.arange(len(data)))
    params = model.shared_parameters()
    grads = torch.autograd.grad(importance.batch_objective(model, x, y, t, "entropy"), [p for _, p in params])
    for (name, p), g in zip(params, grads):
        expected = (sign * g * p + 0.5 * p.pow(2) * g.pow(2)).clamp_min(0).detach()
        torch.testing.assert_close(omega[name], expected, rtol=1e-5, atol=1e-9)
        assert float(expected.sum()) > 0


def test_two_sided_taylor_is_the_sum_of_both_forms_over_several_batches():
    """``two-sided``: a change of the entropy either way, the removal form's and the authors'
    scores added batch by batch, so also their means."""
    model, data = _model_and_data()
    kw = {"batch_size": max(1, len(data) // 3)}
    both = importance.entropy_taylor(model, data, form="two-sided", **kw)
    ref, rem = (importance.entropy_taylor(model, data, form=f, **kw) for f in ("reference", "removal"))
    for name in both:
        torch.testing.assert_close(both[name], ref[name] + rem[name])
    with pytest.raises(ValueError, match="known: reference, removal, two-sided"):
        importance.entropy_taylor(model, data, form="sideways")
