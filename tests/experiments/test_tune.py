import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments import tune as tune_mod
from anpyc.runner import RunResult


def test_expand_grid_order():
    assert tune_mod.expand_grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_selects_on_validation_never_test(monkeypatch, tmp_path):
    # val prefers lam=1, test prefers lam=10: the choice must follow val
    fake = {1.0: (0.9, 0.5), 10.0: (0.7, 0.99)}

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        val, test = fake[cfg.method_params.lam]
        return RunResult(cfg, None, None, {"val_avg_acc": val, "avg_acc": test})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    result = tune_mod.tune(base, {"lam": [1.0, 10.0]}, seeds=[0, 1], out_dir=tmp_path / "t")
    assert result["best"]["params"]["lam"] == 1.0
    md = (tmp_path / "t" / "tune.md").read_text()
    assert "| 1.0 | 90.00 | 50.00 | **yes** |" in md and (tmp_path / "t" / "tune.json").exists()


def test_bad_parameter_fails_before_training(tmp_path):
    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    with pytest.raises(ConfigError):
        tune_mod.tune(base, {"lambda": [1.0]}, seeds=[0], out_dir=tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_a_grid_over_the_task_inference_score_is_recorded_per_point(monkeypatch, tmp_path):
    """``task_inference`` is a run option given among the method's parameters: each point's row
    (and tune.md) names its score, as it ran."""

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        return RunResult(cfg, None, None, {"val_avg_acc": 0.8, "avg_acc": 0.8, "score": cfg.task_inference})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    base = RunConfig.from_dict({"method": "packnet", "stream": {"benchmark": "blobs", "tasks": 2}, "scenario": "domain"})
    result = tune_mod.tune(base, {"task_inference": ["input_density", "pooled_density"]}, seeds=[0], out_dir=tmp_path / "t")
    assert [r["params"]["task_inference"] for r in result["points"]] == ["input_density", "pooled_density"]
    md = (tmp_path / "t" / "tune.md").read_text()
    assert "| input_density | 80.00 | 80.00 | **yes** |" in md and "| pooled_density | 80.00 | 80.00 |  |" in md


def test_a_grid_point_run_records_its_pass_budget(tmp_path):
    """Each (point, seed) run writes the epochs it ran and the pass budget they came from, as a
    comparison's runs do: ``anpyc run --config`` of it trains the same passes again."""
    import yaml

    base = RunConfig.from_dict({"method": "packnet", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 150},
                                "model": {"hidden": [16]}, "train": {"epochs": 2, "threads": 1}})
    tune_mod.tune(base, {"prune_fraction": [0.5]}, seeds=[0], out_dir=tmp_path / "t", quiet=True)
    saved = yaml.safe_load((tmp_path / "t" / "point_0" / "seed_0" / "config.yaml").read_text())
    assert saved["meta"]["budget"] == {"mode": "passes", "per_task": 2.0} and saved["train"]["epochs"] < 2.0


def _diverging_run(diverges, calls=None):
    from anpyc.errors import TrainingError

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        if calls is not None:
            calls.append(cfg.method_params.lam)
        if cfg.method_params.lam in diverges:
            raise TrainingError(f"task 1: the loss is not finite (lam {cfg.method_params.lam:g})")
        return RunResult(cfg, None, None, {"val_avg_acc": 0.5, "avg_acc": 0.5})

    return fake_run


def test_a_diverged_point_is_recorded_as_failed_and_never_chosen(monkeypatch, tmp_path):
    """The largest strength diverges on its first seed: it is recorded with its error, its
    other seeds are not run, and the search goes on."""
    calls = []
    monkeypatch.setattr(tune_mod, "run", _diverging_run({100.0}, calls))
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    result = tune_mod.tune(base, {"lam": [1.0, 100.0]}, seeds=[0, 1], out_dir=tmp_path / "t")
    failed = result["points"][1]
    assert failed["failed"] == "task 1: the loss is not finite (lam 100)" and failed["val_avg_acc"] is None
    assert result["best"]["params"]["lam"] == 1.0 and calls == [1.0, 1.0, 100.0]
    assert "| 100.0 | diverged | - | |" in (tmp_path / "t" / "tune.md").read_text()


def test_a_grid_where_every_point_diverges_says_so(monkeypatch, tmp_path):
    from anpyc.errors import TrainingError

    monkeypatch.setattr(tune_mod, "run", _diverging_run({1.0, 100.0}))
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    with pytest.raises(TrainingError, match="every grid point diverged"):
        tune_mod.tune(base, {"lam": [1.0, 100.0]}, seeds=[0], out_dir=tmp_path / "t")
    assert not (tmp_path / "t" / "tune.json").exists()  # no choice recorded


def test_points_run_in_parallel_processes_choose_as_one_after_another(tmp_path, capsys):
    """``--jobs 2`` (as README and --executor's help promise) runs the (point, seed) runs in
    two processes; each run is the one the sequential search makes."""
    import json

    from anpyc.cli import main

    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 150},
                                "model": {"hidden": [16]}, "train": {"epochs": 2, "threads": 1}})
    one = tune_mod.tune(base, {"lam": [1.0, 1000.0]}, seeds=[0], out_dir=tmp_path / "one", quiet=True)
    argv = ["tune", "--method", "ewc", "--benchmark", "blobs", "--tasks", "2", "--subsample", "150", "--hidden", "16",
            "--epochs", "2", "--threads", "1", "--param", "lam=1.0,1000.0", "--jobs", "2", "--quiet", "--out", str(tmp_path / "two")]
    assert main(argv) == 0
    two = json.loads((tmp_path / "two" / "tune.json").read_text())
    assert [r["val_avg_acc"] for r in two["points"]] == [r["val_avg_acc"] for r in one["points"]]
    assert two["best"]["point"] == one["best"]["point"]


def test_a_points_spread_over_seeds_is_the_sample_standard_deviation(monkeypatch, tmp_path):
    """``val_std`` of a point run on two seeds is the sample std (ddof 1), as every table's."""
    val = {0: 0.8, 1: 0.9}

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        return RunResult(cfg, None, None, {"val_avg_acc": val[cfg.seed], "avg_acc": 0.5})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    point = tune_mod.tune(base, {"lam": [1.0]}, seeds=[0, 1], out_dir=tmp_path / "t")["points"][0]
    assert point["val_avg_acc"] == pytest.approx(0.85) and point["val_std"] == pytest.approx(0.1 / 2**0.5)


TINY = ["--method", "ewc", "--benchmark", "blobs", "--tasks", "2", "--subsample", "150", "--hidden", "16",
        "--epochs", "2", "--threads", "1", "--param", "lam=1.0,1000.0", "--quiet"]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_resume_continues_a_killed_search_to_the_same_choice(tmp_path, jobs):
    """``anpyc tune ... --resume``: a finished run is read back, a killed one continues from its
    newest checkpoint, one never started runs; the points' figures are those of an unbroken
    search. (A killed search had to start over with --overwrite.)"""
    import json
    import shutil

    from anpyc.cli import main

    out = tmp_path / "t"
    assert main(["tune", *TINY, "--seeds", "2", "--out", str(tmp_path / "whole")]) == 0
    assert main(["tune", *TINY, "--seeds", "2", "--out", str(out)]) == 0
    finished = out / "point_0" / "seed_0" / "metrics.json"
    before = finished.stat().st_mtime_ns
    killed = out / "point_1" / "seed_0"
    for name in ("metrics.json", "acc_matrix.csv", "val_acc_matrix.csv"):
        (killed / name).unlink()
    for later in sorted((killed / "checkpoints").glob("ckpt-*.pt"))[1:]:
        later.unlink()  # killed after its first task
    shutil.rmtree(out / "point_1" / "seed_1")  # never started
    (out / "tune.json").unlink()
    assert main(["tune", *TINY, "--seeds", "2", "--out", str(out), "--resume", "--jobs", jobs]) == 0
    whole, resumed = (json.loads((d / "tune.json").read_text()) for d in (tmp_path / "whole", out))
    assert [p["val_avg_acc"] for p in resumed["points"]] == [p["val_avg_acc"] for p in whole["points"]]
    assert finished.stat().st_mtime_ns == before  # read back, not trained again


def test_resume_of_a_search_refuses_other_settings_an_empty_folder_and_overwrite(tmp_path, capsys):
    from anpyc.cli import main

    assert main(["tune", *TINY, "--out", str(tmp_path / "t")]) == 0
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    other = [a if a != "lam=1.0,1000.0" else "lam=1.0,10.0" for a in TINY]
    for argv, words in [
        ([*other, "--out", str(tmp_path / "t"), "--resume"], "was started with other settings (grid.lam: [1.0, 1000.0] then, [1.0, 10.0] now)"),
        ([*TINY, "--out", str(tmp_path / "empty"), "--resume"], "holds no sweep to resume (no tune.yaml)"),
        ([*TINY, "--out", str(tmp_path / "t"), "--resume", "--overwrite"], "--overwrite would remove them"),
    ]:
        assert main(["tune", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_resume_with_overwrite_is_refused_from_python_too(tmp_path):
    """The command line refused the pair; the API (tune, compare) now refuses it in the one place
    both open their folder (``open_sweep``), before anything is written."""
    from anpyc.experiments.compare import compare

    base = RunConfig.from_dict({"method": "ewc", "stream": {"benchmark": "blobs", "tasks": 2}})
    with pytest.raises(ConfigError, match="--overwrite would remove them"):
        tune_mod.tune(base, {"lam": [1.0]}, seeds=[0], out_dir=tmp_path / "t", resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="--overwrite would remove them"):
        compare(base, ["ewc"], [0], tmp_path / "c", resume=True, overwrite=True)
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_resume_adds_grid_values_and_seeds_keeping_every_runs_folder(tmp_path, jobs):
    """The best point at the grid's edge: the same command with values (and seeds) added, plus
    --resume, runs only the new (point, seed) runs; a point keeps its folder when the grid grows
    or is reordered (tune.yaml keeps the order), and the figures are those of a search of the
    grown grid from scratch."""
    import json

    import yaml

    from anpyc.cli import main

    def argv(values: str, *more: str) -> list[str]:
        return ["tune", *[a if a != "lam=1.0,1000.0" else f"lam={values}" for a in TINY], *more]

    out = tmp_path / "t"
    assert main(argv("1.0,1000.0", "--out", str(out))) == 0
    finished = out / "point_1" / "seed_0" / "metrics.json"  # lam 1000
    before = finished.stat().st_mtime_ns
    assert main(argv("0.01,1.0,1000.0", "--seeds", "2", "--out", str(out), "--resume", "--jobs", jobs)) == 0
    assert main(argv("0.01,1.0,1000.0", "--seeds", "2", "--out", str(tmp_path / "whole"))) == 0
    grown, whole = (json.loads((d / "tune.json").read_text()) for d in (out, tmp_path / "whole"))
    assert [p["val_avg_acc"] for p in grown["points"]] == [p["val_avg_acc"] for p in whole["points"]]
    assert [p["point"] for p in grown["points"]] == [2, 0, 1]  # lam 0.01 took the next free folder
    assert finished.stat().st_mtime_ns == before  # read back, not trained again
    assert yaml.safe_load((out / "point_2" / "seed_1" / "config.yaml").read_text())["method_params"]["lam"] == 0.01
    assert yaml.safe_load((out / "tune.yaml").read_text())["points"] == [{"lam": 1.0}, {"lam": 1000.0}, {"lam": 0.01}]
    # the same points in another order: every run read back from its own folder
    assert main(argv("1000.0,0.01,1.0", "--seeds", "2", "--out", str(out), "--resume")) == 0
    assert finished.stat().st_mtime_ns == before
    again = json.loads((out / "tune.json").read_text())
    assert {p["point"]: p["val_avg_acc"] for p in again["points"]} == {p["point"]: p["val_avg_acc"] for p in grown["points"]}
