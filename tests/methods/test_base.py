"""The hook interface's shared pieces: a wrapper that adds nothing changes nothing."""

import numpy as np
import pytest
import torch

from anpyc.config import RunConfig
from anpyc.methods import create
from anpyc.methods.base import MethodWrapper
from anpyc.runner import run


def _same(a, b) -> bool:
    """Equal state entries: tensors bit for bit, containers entry by entry."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.parametrize("name", ["ewc", "hat", "packnet", "er"])
def test_a_wrapper_that_adds_nothing_trains_and_answers_as_the_method_alone(name):
    """Every hook of :class:`MethodWrapper` hands over to the inner method (the task-inference
    and density-replay wrappers build on it): the same accuracies, bit for bit, and the same
    state and summary."""
    cfg = RunConfig.from_dict({"method": name, "seed": 1, "model": {"hidden": [16]},
                               "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200},
                               "train": {"batch_size": 16, "epochs": 2, "momentum": 0.9, "weight_decay": 1e-3}})
    alone = run(cfg, quiet=True)
    wrapped = run(cfg, quiet=True, method=MethodWrapper(create(name)))
    np.testing.assert_array_equal(wrapped.acc_matrix, alone.acc_matrix)  # unseen tasks: NaN in both
    assert wrapped.method.summary() == alone.method.summary()
    inner = {k.removeprefix("inner."): v for k, v in wrapped.method.state_dict().items()}
    assert inner.keys() == alone.method.state_dict().keys()
    assert all(_same(v, alone.method.state_dict()[k]) for k, v in inner.items())
