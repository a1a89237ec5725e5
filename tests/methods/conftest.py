"""Shared checks for the baseline methods: state round-trip, zero-then-growing regulariser,
and forgetting below fine-tune's on a small stream where fine-tune forgets a lot."""

from __future__ import annotations

import os

import pytest
import torch

from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.loop.train import fit
from anpyc.methods import create
from anpyc.models import build_model
from anpyc.runner import build_stream, run
from anpyc.scenario import HookContext

# Domain-incremental rotated MNIST (one shared head): plain fine-tuning forgets about a
# third of the first tasks' accuracy here, so a protecting method has room to show.
SMALL = {
    "stream": {"benchmark": "rotated-mnist", "tasks": 3, "subsample": 500, "test_subsample": 500},
    "model": {"hidden": [100]},
    "scenario": "domain",
    "train": {"epochs": 3, "batch_size": 32},
}


@pytest.fixture(scope="session")
def small_stream(mnist_dir_session):
    cfg = RunConfig.from_dict(SMALL)
    return build_stream(cfg)


@pytest.fixture(scope="session")
def mnist_dir_session():
    from anpyc.data import sources

    status = sources.verify(sources.MNIST)
    if not all(v == "ok" for v in status.values()):
        msg = "MNIST not fetched: run `anpyc data fetch mnist` (make test does)"
        if os.environ.get("CI"):  # under CI a missing data set is a failure, never a silent skip
            pytest.fail(msg)
        pytest.skip(msg)
    return str(sources.resolve_data_dir())


@pytest.fixture(scope="session")
def finetune_forgetting(small_stream) -> float:
    return run(RunConfig.from_dict(SMALL), quiet=True, stream=small_stream).metrics["forgetting"]


@pytest.fixture
def forgetting_of(small_stream):
    """``forgetting_of(method, params)`` on the small stream (same seed as fine-tune)."""

    def go(method: str, params: dict) -> dict:
        cfg = RunConfig.from_dict({**SMALL, "method": method, "method_params": params})
        return run(cfg, quiet=True, stream=small_stream).metrics

    return go


def _one_task(method_name: str, params: dict | None = None, seed: int = 0):
    """Blobs, 2 tasks, multi-head: returns (model, method, stream) after task 0 is done."""
    torch.manual_seed(seed)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=seed)
    model = build_model(ModelConfig(hidden=(16, 16)), stream.input_shape)
    method = create(method_name, params)
    cfg = TrainConfig(epochs=2, batch_size=32)
    model.add_head(stream[0].n_outputs)
    method.before_task(model, stream[0], HookContext(0, len(stream)))
    fit(model, method, stream[0].train, cfg, epochs=2, generator=torch.Generator().manual_seed(seed))
    method.after_task(model, stream[0], HookContext(0, len(stream)), lambda e: fit(model, method, stream[0].train, cfg, e, torch.Generator()))
    model.add_head(stream[1].n_outputs)
    method.before_task(model, stream[1], HookContext(1, len(stream)))
    return model, method, stream


def _batch_of(stream, task: int = 1):
    return stream[task].train.get(torch.arange(32))


@pytest.fixture
def one_task():
    """``one_task(name, params)`` -> (model, method, stream): blobs, multi-head, task 0 done
    (``after_task`` called) and task 1's head added and ``before_task`` called."""
    return _one_task


@pytest.fixture
def batch_of():
    """``batch_of(stream, task=1)`` -> the first 32 training examples of that task."""
    return _batch_of


@pytest.fixture
def quadratic_contract():
    """The regulariser is 0 right after a task, grows as the body moves, and survives a
    ``state_dict`` round trip into a fresh instance."""

    def check(name: str, params: dict | None = None) -> None:
        model, method, stream = _one_task(name, params)
        x, y, t = _batch_of(stream)
        p0 = method.penalty(model, x, y, t)
        assert p0 is not None and abs(float(p0.detach())) < 1e-7
        values = []
        gen = torch.Generator().manual_seed(1)
        noise = {n: torch.randn(p.shape, generator=gen) for n, p in model.shared_parameters()}
        base = {n: p.detach().clone() for n, p in model.shared_parameters()}
        for step in (0.01, 0.03, 0.1):
            with torch.no_grad():
                for n, p in model.shared_parameters():
                    p.copy_(base[n] + step * noise[n])
            values.append(float(method.penalty(model, x, y, t).detach()))
        assert 0 < values[0] < values[1] < values[2]
        fresh = create(name, params)
        fresh.load_state_dict(method.state_dict())
        assert float(fresh.penalty(model, x, y, t).detach()) == values[-1]

    return check
