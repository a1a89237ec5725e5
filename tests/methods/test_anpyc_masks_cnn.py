"""ANPyC on convolutional bodies (issue #5): forgetting on split Fashion-MNIST, filter pruning."""

import pytest
import torch

from anpyc.config import RunConfig
from anpyc.kernels.masking import FREE
from anpyc.runner import run


def test_anpyc_forgets_less_than_finetune_on_split_fashion_mnist_cnn(fashion_dir):
    base = {
        # raw [0, 1] inputs: lr 0.05 with momentum 0.9 was chosen for them (standardised inputs
        # need a smaller rate, at which one epoch of 600 images is too short)
        "stream": {"benchmark": "split-fashion-mnist", "tasks": 2, "subsample": 600, "test_subsample": 400, "data_dir": fashion_dir,
                   "standardize": False},
        # batch norm on: hard protection plus first-task BN statistics must give zero drift
        "model": {"name": "cnn", "width": 8, "batch_norm": True},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
    }
    ft = run(RunConfig.from_dict({**base, "method": "finetune"}), quiet=True)
    an = run(RunConfig.from_dict({**base, "method": "anpyc-masks", "method_params": {"importance_samples": 300}}), quiet=True)
    assert ft.metrics["forgetting"] > 0.01
    assert an.metrics["forgetting"] < ft.metrics["forgetting"]
    assert an.acc_matrix[1, 0] == an.acc_matrix[0, 0]  # exactly kept: weights, masks and BN stats
    assert an.acc_matrix[1, 1] > 0.8  # the second task still learnt (chance 0.5)


def _conv_owners(res):
    return {
        name: res.method.owner(name)
        for name, p in res.model.shared_parameters()
        if p.dim() == 4
    }


@pytest.mark.parametrize("unit", ["unit", "weight"])
def test_filter_pruning_releases_whole_conv_filters(unit):
    cfg = RunConfig.from_dict({
        "method": "anpyc-masks",
        "method_params": {"prune_unit": unit, "keep_first": 0.5, "retrain_epochs": 1, "importance_samples": 200,
                          "guard": False},  # the pruning mechanics, whatever the accuracy
        "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 300},  # 1 x 8 x 8 images
        "model": {"name": "cnn", "width": 4},
        "train": {"epochs": 1},
    })
    res = run(cfg, quiet=True)
    whole, mixed = True, False
    for name, owner in _conv_owners(res).items():
        rows = owner.reshape(owner.shape[0], -1)
        uniform = (rows == rows[:, :1]).all(1)  # every weight of a filter has the same owner
        whole &= bool(uniform.all())
        mixed |= not bool(uniform.all())
        assert set(rows[:, 0].tolist()) <= {0, 1, FREE} and (rows == 0).any()  # task 0 kept some
        bias = res.method.owner(name[: -len("weight")] + "bias")
        if unit == "unit":  # a released filter took its bias with it
            assert torch.equal(bias, rows[:, 0])
    if unit == "unit":
        assert whole and all(bool((o == 1).any()) for o in _conv_owners(res).values())
    else:  # element-wise pruning splits filters: the check above can fail
        assert mixed


def test_filter_pruning_with_batch_norm_releases_scale_and_shift():
    cfg = RunConfig.from_dict({
        "method": "anpyc-masks",
        "method_params": {"prune_unit": "unit", "keep_first": 0.5, "retrain_epochs": 1, "importance_samples": 200,
                          "guard": False},
        "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200},
        "model": {"name": "cnn", "width": 4, "batch_norm": True},
        "train": {"epochs": 1},
    })
    res = run(cfg, quiet=True)
    names = [n for n, _ in res.model.shared_parameters()]
    checked = 0
    for i, name in enumerate(names):
        owner = res.method.owner(name)
        if owner.dim() != 4:
            continue
        per_filter = owner.reshape(owner.shape[0], -1)[:, 0]
        # the 1-D tensors right after a conv weight (BN scale and shift) follow its filters
        for follower in names[i + 1 : i + 3]:
            f_owner = res.method.owner(follower)
            if f_owner.dim() == 1 and f_owner.numel() == owner.shape[0]:
                assert torch.equal(f_owner, per_filter)
                checked += 1
    assert checked >= 2
