"""No default reads the stream's length: every registered method at its defaults (smaller
samples for speed) gives the same results whether ``HookContext.n_tasks`` says how many tasks
the stream has or hides it (``None``, an open-ended stream)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from anpyc.config import RunConfig
from anpyc.loop.train import LoopConfig
from anpyc.methods import method_names
from anpyc.runner import build_stream, run

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 120, "test_subsample": 90},
         "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 40}}
FAST = {"anpyc": {"importance_samples": 50}, "ewc": {"fisher_samples": 50}, "online-ewc": {"fisher_samples": 50},
        "mas": {"samples": 50}, "er": {"buffer": 20}, "derpp": {"buffer": 20}}


def _run(cfg: RunConfig, stream, monkeypatch, known: bool):
    seen = []
    original = LoopConfig.context

    def context(self, task, n_tasks):
        ctx = original(self, task, n_tasks if known else None)
        seen.append(ctx.n_tasks)
        return ctx

    with monkeypatch.context() as m:
        m.setattr(LoopConfig, "context", context)
        result = run(cfg, quiet=True, stream=stream)
    assert set(seen) == ({len(stream)} if known else {None})
    return result


CASES = [(name, scenario, {}) for scenario in ("task", "class") for name in method_names()] + [
    (name, "class", {"task_inference": "input_density"}) for name in ("anpyc", "anpyc-masks", "packnet", "hat")]


@pytest.mark.parametrize("name, scenario, extra", CASES)
def test_results_do_not_depend_on_knowing_the_stream_length(name, scenario, extra, monkeypatch):
    params = {**FAST.get(name, {}), **extra}
    cfg = RunConfig.from_dict({**BLOBS, "method": name, "method_params": params, "scenario": scenario})
    stream = build_stream(cfg)
    known, hidden = (_run(cfg, stream, monkeypatch, k) for k in (True, False))
    assert np.array_equal(known.acc_matrix, hidden.acc_matrix, equal_nan=True)
    assert np.array_equal(known.val_acc_matrix, hidden.val_acc_matrix, equal_nan=True)
    a, b = known.method.state_dict(), hidden.method.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:  # extra state (histories): NaN figures compare equal through JSON
            assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key
    for p, q in zip(known.model.parameters(), hidden.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_last_task_is_known_only_from_a_known_length():
    cfg = LoopConfig(dataclasses.replace(RunConfig().train))
    assert cfg.context(2, 3).last and not cfg.context(2, None).last
