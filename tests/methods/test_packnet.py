import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.loop.train import evaluate, fit
from anpyc.methods import create
from anpyc.scenario import HookContext

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 300}, "model": {"hidden": [32, 32]},
         "train": {"epochs": 2, "momentum": 0.9, "weight_decay": 0.01}, "method": "packnet"}


def test_frozen_weights_bit_identical_with_momentum_and_weight_decay(one_task):
    model, method, stream = one_task("packnet", {"prune_fraction": 0.5})
    owned = {n: method.ownership.owner(n) == 0 for n, _ in model.shared_parameters()}
    before = {n: p.detach().clone() for n, p in model.shared_parameters()}
    assert all(o.any() for o in owned.values())
    cfg = TrainConfig(epochs=2, batch_size=32, momentum=0.9, weight_decay=0.01)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    fit(model, method, stream[1].train, cfg, 2, torch.Generator(), optimizer=opt)
    moved = False
    for n, p in model.shared_parameters():
        assert torch.equal(p.detach()[owned[n]], before[n][owned[n]])
        moved |= not torch.equal(p.detach()[~owned[n]], before[n][~owned[n]])
    assert moved  # the free weights did learn


def test_old_tasks_are_exact_bwt_zero():
    from anpyc.runner import run

    res = run(RunConfig.from_dict(BLOBS), quiet=True)
    R = res.acc_matrix
    for j in range(3):
        np.testing.assert_array_equal(R[j:, j], R[j, j])
    assert res.metrics["bwt"] == 0.0
    free = res.metrics["free_fraction"]
    for layer, curve in free.items():
        if layer.endswith("weight"):
            assert curve == sorted(curve, reverse=True) and 0 < curve[-1] < curve[0] < 1
        else:
            assert curve[0] == 0.0  # biases belong to the first task


def test_pruning_halves_the_trained_pool_and_eval_masks(one_task):
    model, method, stream = one_task("packnet", {"prune_fraction": 0.5})
    name, p = model.shared_parameters()[0]
    own = method.ownership.owner(name)
    assert abs(float((own == 0).float().mean()) - 0.5) < 0.01
    assert (p.detach()[own == -1] == 0).all()  # released weights are zero
    with torch.no_grad():
        p[own == -1] = 1.0  # pretend task 1 trained them
    with method.eval_context(model, 0):
        assert (p.detach()[own == -1] == 0).all()
    assert (p.detach()[own == -1] == 1.0).all()  # restored afterwards


def test_keep_gives_released_weights_their_trained_values_and_old_tasks_stay_exact(one_task):
    from anpyc.runner import run

    res = run(RunConfig.from_dict({**BLOBS, "method_params": {"reinit": "keep", "prune_fraction": 0.5}}), quiet=True)
    R = res.acc_matrix
    for j in range(3):
        np.testing.assert_array_equal(R[j:, j], R[j, j])
    model, method, stream = one_task("packnet", {"reinit": "keep", "prune_fraction": 0.5})
    name, p = model.shared_parameters()[0]
    free = method.ownership.owner(name) == -1
    assert free.any() and (p.detach()[free] != 0).all()  # not zeroed: what task 0 trained


def test_state_dict_round_trip_gives_same_eval(one_task):
    model, method, stream = one_task("packnet")
    cfg = TrainConfig()
    fit(model, method, stream[1].train, cfg, 1, torch.Generator())
    method.after_task(model, stream[1], HookContext(1, len(stream)))
    fresh = create("packnet")
    fresh.load_state_dict(method.state_dict())
    for j in range(2):
        assert evaluate(model, fresh, stream[j].test, cfg, j) == evaluate(model, method, stream[j].test, cfg, j)
    assert fresh.summary()["free_fraction"] == method.summary()["free_fraction"]
