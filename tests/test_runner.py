import dataclasses
import json

import numpy as np
import pytest
import yaml

from anpyc.config import RunConfig
from anpyc.errors import ConfigError, OutputError
from anpyc.runner import resume_run, run

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 300}, "model": {"hidden": [32]}, "train": {"epochs": 3}}


def test_run_writes_the_output_contract(tmp_path):
    res = run(RunConfig.from_dict(BLOBS), tmp_path / "r", quiet=True)
    out = tmp_path / "r"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("acc_matrix", "avg_acc", "bwt", "fwt", "forgetting", "time_s", "task_time_s", "peak_rss_mb"):
        assert key in metrics
    assert np.isnan(res.acc_matrix[0, 1]) and metrics["acc_matrix"][0][1] is None
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["seed"] == 0 and "torch" in saved["meta"] and "git_commit" in saved["meta"]
    assert RunConfig.from_dict(saved) == RunConfig.from_dict(BLOBS)
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    assert (out / "acc_matrix.csv").read_text().startswith("task_0,task_1,task_2")


def test_reproducible_from_saved_config(tmp_path):
    a = run(RunConfig.from_dict(BLOBS), tmp_path / "a", quiet=True)
    b = run(RunConfig.from_file(tmp_path / "a" / "config.yaml"), quiet=True)
    np.testing.assert_array_equal(a.acc_matrix, b.acc_matrix)


def test_refuses_existing_run_and_leaves_it(tmp_path):
    run(RunConfig.from_dict(BLOBS), tmp_path / "r", quiet=True)
    before = (tmp_path / "r" / "metrics.json").read_bytes()
    with pytest.raises(OutputError, match="already holds a run"):
        run(RunConfig.from_dict(BLOBS), tmp_path / "r", quiet=True)
    assert (tmp_path / "r" / "metrics.json").read_bytes() == before


def test_unknown_method_param_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        run(RunConfig.from_dict({**BLOBS, "method_params": {"lam": 1}}), tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_joint_trains_every_head():
    res = run(RunConfig.from_dict({**BLOBS, "method": "joint"}), quiet=True)
    assert res.metrics["forgetting"] < 0.05


def _state_mb(method: str, tasks: int) -> dict:
    cfg = RunConfig.from_dict({**BLOBS, "method": method, "stream": {**BLOBS["stream"], "tasks": tasks},
                               "train": {"epochs": 1}})
    return run(cfg, quiet=True).metrics


@pytest.mark.parametrize("method", ["anpyc", "online-ewc", "si", "mas", "packnet"])
def test_method_state_does_not_grow_with_the_number_of_tasks(method):
    """Long sequences: a method keeps a fixed amount of state per shared weight (no per-task
    copies of the body); only the heads grow. EWC as published is the exception (below)."""
    assert _state_mb(method, 2)["method_state_mb"] == _state_mb(method, 5)["method_state_mb"] > 0


def test_ewc_state_grows_linearly_with_the_number_of_tasks_and_says_so():
    """EWC keeps one Fisher and one anchor per task (Kirkpatrick et al.): its state is a fixed
    amount per task, and metrics.json says that it grows."""
    two, five = _state_mb("ewc", 2), _state_mb("ewc", 5)
    assert five["method_state_mb"] == pytest.approx(2.5 * two["method_state_mb"], rel=1e-9) and two["method_state_mb"] > 0
    assert five["ewc_state_grows_with_tasks"] is True and five["ewc_tasks_kept"] == 5


def test_metrics_record_the_input_standardisation(mnist_dir, tmp_path):
    cfg = RunConfig.from_dict({"stream": {"benchmark": "split-mnist", "tasks": 1, "subsample": 100, "test_subsample": 100},
                               "model": {"hidden": [8]}})
    m = run(cfg, tmp_path / "r", quiet=True).metrics
    assert m["input_standardization"]["mean"][0] == pytest.approx(0.1307, abs=2e-3)
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["stream"]["standardize"] is True
    raw = run(cfg.replace(stream=dataclasses.replace(cfg.stream, standardize=False)), quiet=True).metrics
    assert raw["input_standardization"] is None


def test_generative_models_never_see_standardised_inputs():
    from anpyc.problems import problem_for

    vae = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist"}})
    assert vae.stream.standardize and not problem_for(vae).resolve(vae).stream.standardize
    mlp = RunConfig.from_dict({"stream": {"benchmark": "split-mnist"}})
    assert problem_for(mlp).resolve(mlp) == mlp


def test_importance_estimates_are_counted_apart_from_the_training_passes():
    stream = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 300}, "model": {"hidden": [16]}}
    runs = {name: run(RunConfig.from_dict({**stream, "method": method, "method_params": params}), quiet=True).metrics
            for name, (method, params) in {"finetune": ("finetune", {}), "ewc": ("ewc", {"fisher_samples": 100}),
                                           "anpyc-masks": ("anpyc-masks", {}), "anpyc-masks-soft": ("anpyc-masks", {"protection": "soft"}),
                                           "anpyc": ("anpyc", {"importance_samples": 100}),
                                           "anpyc-pruning": ("anpyc", {"importance_samples": 100, "prune": True})}.items()}
    n_train = 300  # --subsample: training examples per task
    assert runs["finetune"]["importance_passes"] == [0.0, 0.0, 0.0]
    assert runs["ewc"]["importance_passes"] == pytest.approx([100 / n_train] * 3)
    assert runs["ewc"]["passes"] == runs["finetune"]["passes"]  # the estimate is not a training pass
    assert runs["anpyc-masks"]["importance_passes"] == [0.0, 0.0, 0.0]  # hard protection and magnitude use no Omega
    assert all(p > 0 for p in runs["anpyc-masks-soft"]["importance_passes"])
    # anpyc: Omega for consolidation (100 examples); with pruning for pruning too (100 more)
    assert runs["anpyc"]["importance_passes"] == pytest.approx([100 / n_train] * 3)
    assert runs["anpyc-pruning"]["importance_passes"] == pytest.approx([2 * 100 / n_train] * 3)


def test_forward_passes_spent_on_decisions_are_counted_apart_from_the_training_passes():
    """decision_passes: the guard's validation evaluations, the logits DER++ stores, a task
    inference's calibration; in the same unit as ``passes`` (training-set equivalents)."""
    stream = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 300, "val_subsample": 60},
              "model": {"hidden": [16]}}
    cases = {"finetune": ("finetune", {}), "guarded": ("packnet", {"guard": True}),
             "derpp": ("derpp", {"buffer": 50, "buffer_update": "task_end"}),
             "entropy": ("finetune", {"task_inference": "entropy"})}
    runs = {name: run(RunConfig.from_dict({**stream, "method": m, "method_params": p,
                                           **({"scenario": "domain"} if name == "entropy" else {})}), quiet=True).metrics
            for name, (m, p) in cases.items()}
    n_train, n_val = 300, 60
    assert runs["finetune"]["decision_passes"] == [0.0, 0.0, 0.0]
    guard = runs["guarded"]  # each evaluation is one pass over the task's validation data
    evaluations = [round(p * n_train / n_val) for p in guard["decision_passes"]]
    assert all(e >= 1 for e in evaluations[:-1]) and guard["decision_passes"] == pytest.approx([e * n_val / n_train for e in evaluations])
    assert runs["derpp"]["decision_passes"] == pytest.approx([1.0] * 3)  # every example offered at the task's end
    assert runs["entropy"]["decision_passes"] == pytest.approx([n_val / n_train] * 3)  # the entropy's calibration


def test_resume_needs_a_run_directory_that_holds_a_run(tmp_path):
    cfg = RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 60}})
    with pytest.raises(OutputError, match="resume needs the run directory"):
        run(cfg, resume=True, quiet=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=r"empty holds no run to resume \(no config.yaml\)"):
        run(cfg, tmp_path / "empty", resume=True, quiet=True)
    assert list((tmp_path / "empty").iterdir()) == []  # nothing written, no lock left
    with pytest.raises(OutputError, match=r"typo: no such directory"):
        resume_run(tmp_path / "typo", quiet=True)
    assert not (tmp_path / "typo").exists()
    with pytest.raises(ConfigError, match="unknown budget 'steps'; known: passes, epochs"):
        run(cfg, tmp_path / "b", budget="steps", quiet=True)
    assert not (tmp_path / "b").exists()


def test_the_first_run_of_a_process_is_not_charged_for_torchs_lazy_imports():
    """A process's first optimizer imports torch._dynamo (seconds): that happens before the
    clock starts, so the first run's times compare with the next ones'. In a fresh process."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import sys
        import anpyc.runner as runner
        from anpyc.config import RunConfig
        seen = []
        inner = runner.train_stream
        def train_stream(*args, **kwargs):
            seen.append("torch._dynamo" in sys.modules)
            return inner(*args, **kwargs)
        runner.train_stream = train_stream
        before = "torch._dynamo" in sys.modules
        runner.run(RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 40},
                                        "model": {"hidden": [8]}, "train": {"threads": 1}}), quiet=True)
        print(before, seen)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[-2] == "False [True]", out
