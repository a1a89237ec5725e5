"""Runs on the device named by ``ANPYC_TEST_DEVICE`` (default ``cpu``, which is what CI runs).

On a GPU machine ``ANPYC_TEST_DEVICE=cuda python -m pytest tests/test_device.py`` checks the
CUDA path the rest of the suite cannot: every method trains with its model and state on the
GPU and gives about what the CPU gives (ANPyC with the paper's mechanisms and its other options
too), a run killed mid-task resumes to identical figures, a one-process ``nccl`` group runs, a
comparison's parallel jobs train there, the CNN and generative models and the authors' preset
train there (docs/devices.md records what runs on an H200 found).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.experiments.bench import PAPER_MECHANISMS
from anpyc.methods import METHODS, method_names
from anpyc.parallel.launch import _spawned_run, default_backend, spawn_group
from anpyc.runner import resume_run, run
from killing import Killed, kill_after

DEVICE = os.environ.get("ANPYC_TEST_DEVICE", "cpu")
BLOBS = {
    "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200},
    "model": {"hidden": [32]},
    "train": {"epochs": 2, "threads": 1, "checkpoint_every": 1},
}
# settings that reach the code paths a default run of the method leaves out
SCENARIOS = {
    "packnet+inference": ("packnet", "domain", {"task_inference": "input_density"}),
    "finetune+density-replay": ("finetune", "class", {"density_replay": 8}),
    "anpyc-class": ("anpyc", "class", {}),
    # ANPyC's options that its defaults leave off: the paper's mechanisms (pruning by Omega and
    # retraining, element-wise updating, the structure-aware shaping), the other importances,
    # and the authors' code's settings (their sign, whole-set Omega, zero-importance pruning)
    "anpyc-paper-mechanisms": ("anpyc", "task", PAPER_MECHANISMS),
    "anpyc-fisher-per-example": ("anpyc", "task", {"importance": "fisher", "importance_batch": 1}),
    "anpyc-magnitude-pruned": ("anpyc", "domain", {"importance": "magnitude", "prune": True, "retrain_epochs": 0.5}),
    "anpyc-reference-options": ("anpyc", "task", {"taylor_form": "reference", "importance_samples": None,
                                                  "prune": True, "prune_zero_importance": True,
                                                  "retrain_epochs": 1, "retrain_lr_decay": 0.9}),
    # the task inferences that read the network rather than the inputs
    "packnet+entropy-inference": ("packnet", "domain", {"task_inference": "entropy"}),
    "ewc+feature-inference": ("ewc", "class", {"task_inference": "feature_density"}),
}


def _cfg(method: str, device: str, scenario: str = "task", params: dict | None = None) -> RunConfig:
    return RunConfig.from_dict({**BLOBS, "method": method, "scenario": scenario, "method_params": params or {},
                                "train": {**BLOBS["train"], "device": device}})


def _devices(tensors) -> set[str]:
    return {t.device.type for t in tensors if isinstance(t, torch.Tensor)}


def _assert_close_to_cpu(got: np.ndarray, cpu: np.ndarray) -> None:
    """Bit-identical on the CPU; elsewhere float rounding moves a few test predictions."""
    if DEVICE == "cpu":
        np.testing.assert_array_equal(got, cpu)
    else:
        assert np.nanmean(np.abs(got - cpu)) <= 0.05, (got, cpu)


@pytest.mark.parametrize("name", [*method_names(), *SCENARIOS])
def test_every_method_trains_on_the_device(tmp_path, name):
    method, scenario, params = SCENARIOS.get(name, (name, "task", {}))
    res = run(_cfg(method, DEVICE, scenario, params), tmp_path / "dev", quiet=True)
    cpu = run(_cfg(method, "cpu", scenario, params), tmp_path / "cpu", quiet=True)
    if METHODS[method].trains_network:
        assert _devices(res.model.state_dict().values()) == {torch.device(DEVICE).type}
    assert _devices(res.method.state_dict().values()) <= {torch.device(DEVICE).type}
    _assert_close_to_cpu(res.acc_matrix, cpu.acc_matrix)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["finetune", "anpyc", "anpyc-masks", "si", "derpp", "hat"])
def test_a_run_killed_on_the_device_resumes_to_identical_figures(tmp_path, monkeypatch, method):
    cfg = _cfg(method, DEVICE)
    full = run(cfg, tmp_path / "full", quiet=True)
    with monkeypatch.context() as m:
        kill_after(m, 3)  # task 0: epoch 1, task end; task 1: epoch 1
        with pytest.raises(Killed):
            run(cfg, tmp_path / "killed", quiet=True)
    resumed = resume_run(tmp_path / "killed", quiet=True)
    np.testing.assert_array_equal(resumed.acc_matrix, full.acc_matrix)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_one_process_group_on_the_device_gives_the_plain_run(tmp_path):
    """The spawned path (set_device, ``nccl`` on CUDA and ``gloo`` on CPU, teardown) in a group
    of one: what one GPU can check of the multi-GPU path."""
    cfg = _cfg("anpyc", DEVICE)
    plain = run(cfg, tmp_path / "plain", quiet=True)
    spawned = spawn_group(_spawned_run, 1, (cfg, tmp_path / "group", True, False, {}),
                          device=DEVICE, backend=default_backend(DEVICE))
    np.testing.assert_array_equal(spawned.acc_matrix, plain.acc_matrix)


@pytest.mark.slow
def test_a_comparison_runs_its_jobs_on_the_device_in_parallel(tmp_path):
    """Two spawned job processes at once, each training on the device (on one GPU, both)."""
    out = tmp_path / "cmp"
    code = main(["compare", "--methods", "finetune,anpyc", "--benchmark", "blobs", "--tasks", "2",
                 "--subsample", "200", "--hidden", "32", "--epochs", "1", "--seeds", "2", "--jobs", "2",
                 "--device", DEVICE, "--threads", "1", "--no-presets", "--quiet", "--out", str(out)])
    assert code == 0
    runs = sorted(out.glob("*/seed_*/metrics.json"))
    assert len(runs) == 4, runs
    for metrics in runs:
        assert f"device: {DEVICE}" in (metrics.parent / "config.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "vae", "gan"])
def test_image_and_generative_models_train_on_the_device(private_mnist_dir, tmp_path, model):
    generative = model in ("vae", "gan")
    cfg = RunConfig.from_dict({
        "method": "anpyc" if model == "cnn" else "finetune",
        "stream": {"benchmark": "split-mnist", "tasks": 2, "subsample": 200, "test_subsample": 100,
                   "data_dir": private_mnist_dir},
        "model": {"name": model, **({"hidden": [64]} if generative else {})},
        "train": {"epochs": 1, "batch_size": 50, "device": DEVICE},
        **({"generative": {"samples_per_class": 20, "classifier": "mlp", "classifier_epochs": 1,
                           "classifier_subsample": 500, "grid_columns": 4, "latent_dim": 8}} if generative else {}),
    })
    res = run(cfg, tmp_path / model, quiet=True)
    assert _devices(res.model.state_dict().values()) == {torch.device(DEVICE).type}
    assert np.isfinite(res.acc_matrix[np.tril_indices(2)]).all()


@pytest.mark.slow
def test_the_authors_setting_runs_on_the_device(private_mnist_dir, tmp_path):
    """``--preset anpyc-reference``: its dropout, truncated-normal initialisation, learning-rate
    decay and pruning with retraining, on the device (few epochs; the preset's 30 would take long)."""
    out = tmp_path / "ref"
    code = main(["run", "--preset", "anpyc-reference", "--tasks", "2", "--subsample", "500",
                 "--test-subsample", "200", "--epochs", "1", "--param", "retrain_epochs=1",
                 "--data-dir", private_mnist_dir, "--device", DEVICE, "--threads", "1", "--quiet",
                 "--out", str(out)])
    assert code == 0
    config = (out / "config.yaml").read_text()
    assert f"device: {DEVICE}" in config and "dropout: 0.5" in config and "init: truncated_normal" in config
    assert (out / "metrics.json").exists()
