import pytest
import torch

from anpyc.data.taskdata import TaskData
from anpyc.kernels.importance import batch_objective, entropy_taylor
from anpyc.models.generative import ConditionalGAN, ConditionalVAE, build_generative, is_generative

SHAPE = (1, 8, 8)


def _data(n=40, classes=(0, 1)):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *SHAPE, generator=g)
    y = torch.tensor([classes[i % len(classes)] for i in range(n)])
    return TaskData(x, y, 0)


def test_vae_protects_the_decoder_or_everything():
    dec = ConditionalVAE(SHAPE, 4, hidden=(16,), latent_dim=3)
    names = [n for n, _ in dec.shared_parameters()]
    assert names and all(n.startswith("decoder.") for n in names)
    assert {id(p) for _, p in dec.shared_parameters()} == {id(p) for p in dec.decoder.parameters()}
    both = ConditionalVAE(SHAPE, 4, hidden=(16,), latent_dim=3, protect="all")
    assert len(both.shared_parameters()) == len(list(both.parameters()))


def test_gan_protects_the_generator_and_trains_the_discriminator_aside():
    gan = ConditionalGAN(SHAPE, 4, hidden=(16,), latent_dim=3)
    shared = {id(p) for _, p in gan.shared_parameters()}
    assert shared == {id(p) for p in gan.generator.parameters()} == {id(p) for p in gan.training_parameters()}
    assert not shared & {id(p) for p in gan.auxiliary_parameters()}


@pytest.mark.parametrize("name", ["vae", "gan"])
def test_samples_are_images_in_unit_range_and_reproducible(name):
    model = build_generative(name, SHAPE, 4, hidden=(16,), latent_dim=3)
    y = torch.tensor([0, 3, 3])
    with torch.no_grad():
        a = model.sample(y, torch.Generator().manual_seed(1))
        b = model.sample(y, torch.Generator().manual_seed(1))
    assert a.shape == (3, *SHAPE) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="condition labels"):
        model.sample(torch.tensor([4]))


@pytest.mark.parametrize("name", ["vae", "gan"])
@pytest.mark.parametrize("signal", ["entropy", "loss", "output_norm"])
def test_importance_objective_reaches_only_what_is_protected(name, signal):
    torch.manual_seed(0)
    model = build_generative(name, SHAPE, 4, hidden=(16,), latent_dim=3)
    x, y, t = _data().get(torch.arange(8))
    obj = batch_objective(model, x, y, t, signal)  # the estimators' entry point
    assert obj.dim() == 0 and torch.isfinite(obj)
    omega = entropy_taylor(model, _data(), signal=signal, batch_size=10)
    assert set(omega) == {n for n, _ in model.shared_parameters()}
    assert all(float(v.min()) >= 0 for v in omega.values())
    assert sum(float(v.sum()) for v in omega.values()) > 0
    with pytest.raises(ValueError, match="unknown importance signal"):
        model.importance_objective(x, y, t, "nope")


def test_vae_loss_is_the_negative_elbo_and_falls_with_training():
    torch.manual_seed(0)
    model = ConditionalVAE(SHAPE, 2, hidden=(32,), latent_dim=4)
    y = torch.arange(64) % 2
    x = torch.zeros(64, *SHAPE)
    x[y == 0, :, :4] = 1.0  # class 0: top half on, class 1: bottom half on
    x[y == 1, :, 4:] = 1.0
    # before training, the ELBO of Bernoulli pixels is about 64 * log 2 nats per image
    assert 0.7 * 64 * 0.693 < float(model.loss(x, y).detach()) < 1.5 * 64 * 0.693
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    first = float(model.loss(x, y).detach())
    for _ in range(60):
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model.loss(x, y).detach()) < 0.5 * first


def test_unknown_model_name():
    assert is_generative("vae") and is_generative("gan") and not is_generative("mlp")
    with pytest.raises(ValueError, match="unknown generative model"):
        build_generative("flow", SHAPE, 4)


@pytest.mark.parametrize("name", ["vae", "gan"])
def test_objective_fisher_is_the_mean_squared_per_example_gradient(name):
    from anpyc.models.generative import objective_fisher

    torch.manual_seed(0)
    model = build_generative(name, SHAPE, 4, hidden=(16,), latent_dim=3)
    data = _data(6)
    torch.manual_seed(1)
    fisher = objective_fisher(model, data, max_samples=6)
    assert set(fisher) == {n for n, _ in model.shared_parameters()}
    # by hand, with the same random draws: one example at a time
    torch.manual_seed(1)
    expected = {n: torch.zeros_like(p) for n, p in model.shared_parameters()}
    model.eval()
    for i in range(6):
        x, y, t = data.get(torch.tensor([i]))
        grads = torch.autograd.grad(model.importance_objective(x, y, t, "loss"), [p for _, p in model.shared_parameters()])
        for (n, _), g in zip(model.shared_parameters(), grads):
            expected[n] += g.pow(2) / 6
    for n in fisher:
        torch.testing.assert_close(fisher[n], expected[n])
    # a batch gradient squared would be smaller (the per-example terms partly cancel)
    x, y, t = data.get(torch.arange(6))
    torch.manual_seed(1)
    batch = torch.autograd.grad(model.importance_objective(x, y, t, "loss") / 6, [p for _, p in model.shared_parameters()])
    assert sum(float(g.pow(2).sum()) for g in batch) < sum(float(v.sum()) for v in fisher.values())
