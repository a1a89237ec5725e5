"""Adding a method, a stream and a scenario is one file each: the README's examples
(``examples/add_*.py``) register a toy of each, and the three run together through ``run``
(and a resume), ``compare`` (and a suite's method list) and ``tune`` (and ``tune --protocol``
with the method's own grid)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from anpyc import scenario as scenarios
from anpyc.config import RunConfig
from anpyc.data import streams
from anpyc.methods import registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ("add_method", "add_stream", "add_scenario")
TOY = {"method": "l2", "scenario": "task-shared-head", "stream": {"benchmark": "six-blobs", "subsample": 150},
       "model": {"hidden": [16]}, "train": {"epochs": 1, "batch_size": 50}}


@pytest.fixture
def toys():
    """The three example files executed (their registrations made), undone afterwards."""
    saved = [(reg, dict(reg)) for reg in (registry.METHODS, streams.STREAMS, scenarios.SCENARIOS)]
    modules = {}
    for name in EXAMPLES:
        spec = importlib.util.spec_from_file_location(f"anpyc_example_{name}", ROOT / "examples" / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[name]
        spec.loader.exec_module(modules[name])
    yield modules
    for reg, before in saved:
        reg.clear()
        reg.update(before)
    for name in EXAMPLES:
        sys.modules.pop(f"anpyc_example_{name}", None)


def test_the_readme_shows_each_example_file_whole():
    readme = (ROOT / "README.md").read_text()
    for name in EXAMPLES:
        assert (ROOT / "examples" / f"{name}.py").read_text() in readme, name


def test_a_toy_method_stream_and_scenario_run_and_resume(toys, tmp_path):
    from anpyc.runner import resume_run, run

    cfg = RunConfig.from_dict({**TOY, "method_params": {"lam": 5}, "train": {**TOY["train"], "checkpoint_every": 1}})
    result = run(cfg, tmp_path / "r", quiet=True)
    assert result.acc_matrix.shape == (3, 3) and np.isfinite(np.diag(result.acc_matrix)).all()
    assert result.method.config.lam == 5.0 and result.metrics["scenario"] == "task-shared-head"
    assert len(result.model.heads) == 1  # one head for every task, as the scenario says
    anchors = [k for k in result.method.state_dict() if k.startswith("anchor")]
    assert len(anchors) == len(result.model.shared_parameters())  # its state: one anchor per shared weight
    again = resume_run(tmp_path / "r", quiet=True)  # finished: read back as it is
    np.testing.assert_array_equal(again.acc_matrix, result.acc_matrix)


def test_the_scenario_reveals_task_ids_at_test_time(toys):
    from anpyc.runner import run

    seen = []

    class Spy(toys["add_method"].L2):
        def predict(self, model, x, task_id):
            seen.append(task_id)
            return super().predict(model, x, task_id)

    run(RunConfig.from_dict(TOY), quiet=True, method=Spy())
    assert set(seen) == {0, 1, 2}


def test_toys_go_through_compare_and_the_suites(toys, tmp_path):
    from anpyc.experiments.bench import SUITES
    from anpyc.experiments.compare import compare

    assert "l2" in SUITES["pmnist10"].methods  # a registered method is in the suites that take every method
    summary = compare(RunConfig.from_dict(TOY), ["l2", "finetune"], [0], tmp_path / "c", quiet=True)
    assert set(summary["methods"]) == {"l2", "finetune"} and summary["scenario"] == "task-shared-head"
    assert summary["methods"]["l2"]["resolved_params"] == {"lam": 1.0}


def test_toys_go_through_tune_with_a_grid_and_with_the_methods_own(toys, tmp_path, monkeypatch):
    from anpyc.experiments import presets
    from anpyc.experiments.protocols import PROTOCOLS, Protocol
    from anpyc.experiments.tune import tune, tune_protocol

    result = tune(RunConfig.from_dict(TOY), {"lam": [0.1, 10.0]}, [0], tmp_path / "t", quiet=True)
    assert [p["params"]["lam"] for p in result["points"]] == [0.1, 10.0] and result["best"]["val_avg_acc"] > 0
    base = {k: v for k, v in TOY.items() if k != "method"}
    monkeypatch.setitem(PROTOCOLS, "toy", Protocol("six blobs, a shared head", base))
    assert presets.grid_for("toy", "l2", {}) == {"lam": [0.1, 1.0, 10.0, 100.0]}  # none in the grid file: its own
    assert "l2" in presets.tunable_methods("toy", {})
    result = tune_protocol("toy", "l2", tmp_path / "p", grids={})
    assert len(result["points"]) == 4 and result["protocol"]["name"] == "toy"
