"""Task inference: input density on classes with fewer examples than pixels."""

from __future__ import annotations

import contextlib

import torch

from anpyc.config import ModelConfig, RunConfig
from anpyc.kernels.inference import TaskInference
from anpyc.models import build_model
from anpyc.runner import build_stream


def test_input_density_with_few_examples_per_class_is_finite_and_right(mnist_dir):
    """About 30 examples per class in 784 dimensions: a float32 ``eigh`` of such a low-rank
    covariance may fail or return NaN; the fit must still be finite and tell the two
    permutations apart."""
    stream = build_stream(RunConfig.from_dict({
        "stream": {"benchmark": "permuted-mnist", "tasks": 2, "subsample": 300, "test_subsample": 200},
        "scenario": "domain",
    }))
    model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    inf = TaskInference("input_density")
    for k in range(2):
        inf.record(model, stream[k], k, lambda _k: contextlib.nullcontext(), class_scenario=False)
    assert all(torch.isfinite(b).all() for name, b in inf.named_buffers() if name.startswith("in_"))
    for j in range(2):
        x = stream[j].test.get(torch.arange(200))[0]
        inf.predict(model, x, lambda _k: contextlib.nullcontext())
        assert float((inf.last_views == j).float().mean()) > 0.95


def test_task_inference_reports_its_cost_and_only_when_used():
    from anpyc.runner import run

    base = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 200}, "model": {"hidden": [16]}, "method": "packnet"}
    hidden = run(RunConfig.from_dict({**base, "scenario": "domain"}), quiet=True).metrics
    cost = hidden["task_inference_cost"]
    assert cost["forward_passes_per_input"] == 3 and cost["score"] == "input_density" and cost["memory_mb"] > 0
    assert "task_inference_cost" not in run(RunConfig.from_dict(base), quiet=True).metrics  # task ids given
