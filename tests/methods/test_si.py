import torch

from anpyc.config import TrainConfig
from anpyc.loop.train import fit, task_loss


def test_regulariser_contract(quadratic_contract):
    quadratic_contract("si", {"lam": 1.0})


def test_path_integral_uses_task_gradient_only(one_task):
    """Zenke et al. integrate the unregularised gradient: ``before_step`` sees task loss +
    penalty and must keep only the task loss's part."""
    model, method, stream = one_task("si", {"lam": 50.0})
    with torch.no_grad():  # away from the anchor, so the penalty has a gradient
        for _, p in model.shared_parameters():
            p.add_(0.05)
    x, y, t = stream[1].train.get(torch.arange(32))
    params = [p for _, p in model.shared_parameters()]
    g_task = torch.autograd.grad(task_loss(model, x, y, t), params)
    model.zero_grad()
    (task_loss(model, x, y, t) + method.penalty(model, x, y, t)).backward()
    assert any((p.grad - g).abs().max() > 1e-3 for p, g in zip(params, g_task))  # penalty matters
    method.before_step(model)
    for (name, _), g in zip(model.shared_parameters(), g_task):
        torch.testing.assert_close(method._grad[name], g, rtol=1e-4, atol=1e-6)


def test_old_weights_are_a_real_copy(one_task):
    model, method, stream = one_task("si")
    name, p = model.shared_parameters()[0]
    prev = method._buf("si_prev", name)
    assert prev.data_ptr() != p.data_ptr()
    fit(model, method, stream[1].train, TrainConfig(epochs=1, batch_size=32), 1, torch.Generator())
    torch.testing.assert_close(prev, p.detach())  # updated after each step, not aliased
    assert float(method._buf("si_w", name).abs().sum()) > 0


def test_importance_non_negative_with_stats(one_task):
    model, method, stream = one_task("si")
    assert all((method.omega(n) >= 0).all() for n, _ in model.shared_parameters())
    assert method.summary()["importance_stats"][0]["task"] == 0


def test_forgets_less_than_finetune(forgetting_of, finetune_forgetting):
    # c = 10 won the validation sweep over 1, 3, 10 on this stream
    m = forgetting_of("si", {"lam": 10})
    assert m["forgetting"] < finetune_forgetting - 0.02


def test_importance_is_the_path_integral_over_the_squared_displacement(one_task):
    """Zenke et al.: omega = w / (delta^2 + xi), negative path integrals clipped to 0."""
    model, method, stream = one_task("si", {"xi": 0.1})
    gen = torch.Generator().manual_seed(0)
    for name, p in model.shared_parameters():
        method._put("si_start", name, p.detach() - 0.5)
        method._put("si_w", name, torch.where(torch.rand(p.shape, generator=gen) < 0.5, -1.0, 2.0))
    omega = method.estimate_importance(model, stream[1], None)
    for name, _ in model.shared_parameters():
        w = method._buf("si_w", name)
        torch.testing.assert_close(omega[name], torch.where(w > 0, 2.0 / (0.25 + 0.1), 0.0))
