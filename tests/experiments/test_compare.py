"""Budgets: by default every method gets the same training passes per task, its retraining
(and replay) included; ``budget='epochs'`` keeps the same epochs instead."""

import dataclasses
import re

import pytest
import yaml

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments.compare import budgeted, compare

BASE = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 200}, "model": {"hidden": [16]},
        "train": {"epochs": 2, "threads": 1, "batch_size": 20}}  # 10 batches per epoch


def test_equal_passes_per_task_by_default(tmp_path):
    methods = ["finetune", "anpyc", "anpyc-masks", "packnet"]
    summary = compare(RunConfig.from_dict(BASE), methods, [0], tmp_path / "c", quiet=True,
                      params={"anpyc": {"retrain_epochs": 0.5, "importance_samples": 50},
                              "anpyc-masks": {"guard": False}})  # the budget's arithmetic: every task pruned
    passes = {m: e["passes_per_task"]["mean"] for m, e in summary["methods"].items()}
    assert summary["budget"]["mode"] == "passes" and summary["budget"]["per_task"] == 2
    assert passes["finetune"] == 2.0 and passes["packnet"] == 2.0  # 1.5 epochs + 0.5 retraining
    # anpyc-masks: 1.5 + 0.5 per task; anpyc: the same, the last task's 0.5 training on where
    # the reference schedule prunes nothing
    assert passes["anpyc-masks"] == 2.0 and passes["anpyc"] == 2.0


def test_epochs_budget_lets_retraining_come_on_top(tmp_path):
    summary = compare(RunConfig.from_dict(BASE), ["finetune", "packnet"], [0], tmp_path / "c", quiet=True, budget="epochs")
    assert summary["methods"]["packnet"]["passes_per_task"]["mean"] == 2.5
    assert summary["methods"]["finetune"]["passes_per_task"]["mean"] == 2.0


def test_a_budget_that_leaves_nothing_to_train_is_refused():
    cfg = RunConfig.from_dict({**BASE, "method": "packnet", "method_params": {"retrain_epochs": 2}})
    with pytest.raises(ConfigError, match="leaves no epoch"):
        budgeted(cfg)
    assert budgeted(cfg, "epochs").train.epochs == 2


def test_fractional_epochs_take_their_share_of_the_batches():
    from anpyc.runner import run

    half = run(RunConfig.from_dict({**BASE, "train": {"epochs": 0.5, "batch_size": 20}}), quiet=True).metrics
    assert half["passes"] == [0.5, 0.5, 0.5]


def _killed_midway(out):
    """What a comparison killed during its last runs leaves: si seed 0 stopped after task 1
    (its later checkpoints and results never written), finetune seed 1 never started."""
    import shutil

    killed = out / "si" / "seed_0"
    for name in ("metrics.json", "summary.md", "acc_matrix.csv"):
        (killed / name).unlink(missing_ok=True)
    checkpoints = sorted((killed / "checkpoints").glob("ckpt-*.pt"))
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        later.unlink()
    shutil.rmtree(out / "finetune" / "seed_1")
    (out / "summary.json").unlink()


def test_resume_continues_a_killed_comparison_to_the_same_results(tmp_path):
    base = RunConfig.from_dict(BASE)
    whole = compare(base, ["finetune", "si"], [0, 1], tmp_path / "whole", quiet=True)
    out = tmp_path / "killed"
    compare(base, ["finetune", "si"], [0, 1], out, quiet=True)
    finished = out / "finetune" / "seed_0" / "metrics.json"
    before = finished.stat().st_mtime_ns
    _killed_midway(out)
    resumed = compare(base, ["finetune", "si"], [0, 1], out, quiet=True, resume=True)
    for m in ("finetune", "si"):
        assert resumed["methods"][m]["avg_acc"] == whole["methods"][m]["avg_acc"]
    assert finished.stat().st_mtime_ns == before  # a finished run is read back, not run again
    assert (out / "si" / "seed_0" / "metrics.json").is_file() and (out / "summary.json").is_file()


def test_resume_refuses_other_settings_or_a_directory_without_a_comparison(tmp_path):
    from anpyc.errors import OutputError

    base = RunConfig.from_dict(BASE)
    compare(base, ["finetune", "si"], [0], tmp_path / "c", quiet=True)
    with pytest.raises(ConfigError, match=re.escape("other settings (methods: ['finetune', 'si'] then, ['finetune'] now); "
                                                    "resume with the same settings (methods and seeds may be added)")):
        compare(base, ["finetune"], [0], tmp_path / "c", quiet=True, resume=True)
    with pytest.raises(ConfigError, match=re.escape("other settings (params.si: None then, {'lam': 0.5} now)")):
        compare(base, ["finetune", "si", "ewc"], [0], tmp_path / "c", params={"si": {"lam": 0.5}, "ewc": {"lam": 1}},
                quiet=True, resume=True)
    longer = base.replace(train=dataclasses.replace(base.train, epochs=3.0))
    with pytest.raises(ConfigError, match=re.escape("other settings (base.train.epochs: 2.0 then, 3.0 now)")):
        compare(longer, ["finetune", "si"], [0], tmp_path / "c", quiet=True, resume=True)
    with pytest.raises(OutputError, match="empty: no such directory"):
        compare(base, ["finetune"], [0], tmp_path / "empty", quiet=True, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="no comparison to resume"):
        compare(base, ["finetune"], [0], tmp_path / "empty", quiet=True, resume=True)


def test_resume_adds_methods_and_seeds_to_a_finished_comparison(tmp_path, caplog):
    """A table grows: the same command with a method and a seed more, plus --resume, runs only
    the new runs and summarises all of them as one comparison of them all would."""
    base = RunConfig.from_dict(BASE)
    out = tmp_path / "grown"
    compare(base, ["finetune"], [0], out, quiet=True)
    finished = out / "finetune" / "seed_0" / "metrics.json"
    before = finished.stat().st_mtime_ns
    grown = compare(base, ["finetune", "si"], [0, 1], out, quiet=True, resume=True)
    # SI's time / fine-tune on seed 0 sets this session's run against one of an earlier session: said
    assert "time / fine-tune sets their runs against fine-tune's of an earlier session" in caplog.text
    whole = compare(base, ["finetune", "si"], [0, 1], tmp_path / "whole", quiet=True)
    assert finished.stat().st_mtime_ns == before  # read back, not run again
    assert {m: grown["methods"][m]["avg_acc"] for m in ("finetune", "si")} == {
        m: whole["methods"][m]["avg_acc"] for m in ("finetune", "si")}
    saved = yaml.safe_load((out / "compare.yaml").read_text())
    assert saved["methods"] == ["finetune", "si"] and saved["seeds"] == [0, 1]


def test_a_param_for_a_label_not_compared_is_refused_before_any_training(tmp_path):
    """In the API a label takes only the parameters given under its own name: one for another
    name (here a variant's method, without the variant's own entry) would be dropped."""
    base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 100}})
    with pytest.raises(ConfigError, match=r"--param ewk\.lam: no method ewk is run here \(did you mean 'ewc'\?\)"):
        compare(base, ["ewc"], [0], tmp_path / "c", params={"ewk": {"lam": 1}}, quiet=True)
    assert not (tmp_path / "c").exists()
