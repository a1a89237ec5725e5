"""Presets: written only by `anpyc tune --protocol P --save-preset`, each the arg-max of its own
recorded grid (the grid file's), applied by compare/bench only under the protocol it was tuned
under."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import yaml

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.experiments import presets
from anpyc.experiments import tune as tune_mod
from anpyc.experiments.protocols import PROTOCOLS, Protocol, protocol_config, protocol_fingerprint
from anpyc.methods import has_params, method_names, typed
from anpyc.runner import RunResult

# a protocol small enough to tune in seconds (the shipped ones need MNIST and minutes per point)
TINY = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 100}, "model": {"hidden": [8]},
        "train": {"epochs": 1, "batch_size": 32}}
TINY_FLAGS = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "100", "--hidden", "8", "--epochs", "1",
              "--batch-size", "32"]
GRIDS = {"tiny": {"si": {"lam": [0.1, 1, 10, 100]}, "mas": {"lam": [0.01, 0.1], "samples": [50, 100]}}}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """Protocol ``tiny`` registered, its grid file in a preset dir of the test's own."""
    monkeypatch.setitem(PROTOCOLS, "tiny", Protocol("tiny blobs", TINY, tune={"stream": {"tasks": 3}}))
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / presets.GRID_FILE).write_text(yaml.safe_dump(GRIDS))
    monkeypatch.setattr(presets, "PRESET_DIR", folder)
    return folder


# ----------------------------------------------------------------------------- shipped files
def test_presets_and_grids_are_package_data():
    assert presets.PRESET_DIR.name == "presets" and presets.PRESET_DIR.parent.name == "anpyc"
    assert (presets.PRESET_DIR / presets.GRID_FILE).is_file() and "grids" not in presets.list_presets()


def test_shipped_grid_file_gives_every_method_the_same_number_of_points_on_every_protocol():
    grids = presets.load_grids()
    assert presets.grid_problems(grids) == []
    # every registered method with hyper-parameters, but the classifiers of the inputs alone (their
    # settings are the task inference's, not tuned: grids.yaml says why)
    tunable = {m for m in method_names(without={"no-network"}) if has_params(m)}
    assert {"anpyc", "packnet", "ewc", "si"} <= tunable and "finetune" not in tunable
    for protocol in PROTOCOLS:
        assert protocol in grids, f"protocol {protocol} has no grids"
        assert tunable <= set(grids[protocol]), (protocol, tunable - set(grids[protocol]))
        assert len({len(presets.expand_grid(g)) for g in grids[protocol].values()}) == 1
        for method, grid in grids[protocol].items():  # every point is a valid config of its method
            for point in presets.expand_grid(grid):
                typed(protocol_config(protocol).with_params(method, **point))


def test_grid_problems_catch_unequal_grids_and_unknown_protocols():
    bad = {"pmnist10": {"ewc": {"lam": [1, 10]}, "si": {"lam": [1, 10, 100]}}, "nope": {"ewc": {"lam": [1]}}}
    problems = presets.grid_problems(bad)
    assert any("different numbers of grid points" in p for p in problems) and any("nope" in p for p in problems)


def test_every_shipped_preset_is_the_argmax_of_its_own_recorded_grid():
    names = presets.list_presets()
    assert "anpyc-reference" in names
    for name in names:
        assert presets.check_preset(presets.load_preset(name)) == [], name


# ----------------------------------------------------------------------------- the arg-max check itself
def _fake_tuned(monkeypatch, tmp_path, vals: dict[float, float]):
    """tune_protocol on ``tiny`` with made-up validation figures per lam (no training)."""

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        lam = cfg.method_params.lam
        return RunResult(cfg, None, None, {"val_avg_acc": vals[lam], "avg_acc": 1 - vals[lam]})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    result = tune_mod.tune_protocol("tiny", "si", tmp_path / "t", save=True)
    return presets.load_preset("si-tiny"), result


def test_check_preset_passes_the_right_preset_and_catches_wrong_ones(tiny, monkeypatch, tmp_path):
    right, result = _fake_tuned(monkeypatch, tmp_path, {0.1: 0.5, 1.0: 0.8, 10.0: 0.8, 100.0: 0.2})
    assert right["method_params"]["lam"] == 1.0  # ties go to the earlier point; test ACC never chooses
    assert presets.check_preset(right) == []
    tuned = right["tuned"]
    assert tuned["protocol"]["name"] == "tiny" and tuned["protocol"]["fingerprint"] == protocol_fingerprint("tiny")
    assert tuned["proxy"] == {"stream": {"tasks": 3}} and tuned["grid"] == GRIDS["tiny"]["si"]
    assert [p["val_avg_acc"] for p in tuned["points"]] == [0.5, 0.8, 0.8, 0.2]
    assert tuned["command"].startswith("anpyc tune") and "--out" in tuned["command"] and tuned["date"]
    assert "git_commit" in tuned and result["preset"].endswith("si-tiny.yaml")

    def broken(change) -> list[str]:
        p = copy.deepcopy(right)
        change(p)
        return presets.check_preset(p)

    assert any("arg-max" in m for m in broken(lambda p: p["method_params"].update(lam=10.0)))  # a tied, later point
    assert any("arg-max" in m for m in broken(lambda p: p["tuned"]["points"][3].update(val_avg_acc=0.9)))
    assert any("not grids.yaml" in m for m in broken(lambda p: p["tuned"]["grid"].update(lam=[1, 10, 100, 1000])))
    assert any("recorded points" in m for m in broken(lambda p: p["tuned"]["points"].pop(0)))
    assert any("changed since tuning" in m for m in broken(lambda p: p["tuned"]["protocol"]["fingerprint"].update({"train.lr": 0.5})))
    assert any("provenance lacks 'command'" in m for m in broken(lambda p: p["tuned"].pop("command")))
    assert any("tuned on the proxy" in m for m in broken(lambda p: p["tuned"].update(proxy={"stream": {"tasks": 2}})))
    assert presets.check_preset({"method": "si", "method_params": {}}) != []
    monkeypatch.setitem(PROTOCOLS, "tiny", Protocol("tiny, changed", {**TINY, "train": {"epochs": 2}}))
    assert any("changed since tuning" in m for m in presets.check_preset(right))


# ----------------------------------------------------------------------------- applying presets
def test_presets_apply_only_under_their_protocol(tiny, monkeypatch, tmp_path, caplog):
    _fake_tuned(monkeypatch, tmp_path, {0.1: 0.5, 1.0: 0.6, 10.0: 0.9, 100.0: 0.2})
    cfg = RunConfig.from_dict(TINY)
    params, applied, skipped = presets.select_presets(["si", "mas", "finetune"], cfg, "passes", {"si": {"xi": 0.5}})
    assert applied == {"si": "si-tiny"} and skipped == {} and params["si"]["lam"] == 10.0 and params["si"]["xi"] == 0.5
    longer = RunConfig.from_dict({**TINY, "stream": {**TINY["stream"], "tasks": 7, "test_subsample": 10}, "seed": 3})
    assert presets.select_presets(["si"], longer, "passes")[1] == {"si": "si-tiny"}  # length, evaluation, seed: same protocol
    other = RunConfig.from_dict({**TINY, "train": {**TINY["train"], "optimizer": "adam", "lr": 0.001}})
    with caplog.at_level(logging.WARNING, logger="anpyc.experiments.presets"):
        params, applied, skipped = presets.select_presets(["si"], other, "passes")
    assert params == {} and applied == {}
    assert skipped["si"] == "preset si-tiny not applied (tuned under protocol tiny): train.lr 0.1 (preset) vs 0.001 (run)"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # one line for the comparison, naming the protocol that fits best and how the run differs
    assert len(warnings) == 1 and "no preset applies to si (it runs its defaults)" in warnings[0]
    assert "closest protocol its presets were tuned under, tiny, differs in 2 setting(s), first train.lr 0.1 vs 0.001" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anpyc.experiments.presets"):
        presets.select_presets(["si"], RunConfig.from_dict({**TINY, "scenario": "domain"}), "passes")
    assert [r.getMessage() for r in caplog.records] == [
        "no preset applies to si (it runs its defaults): no protocol its presets were tuned under runs blobs in the "
        "domain scenario; --no-presets silences this"]
    assert presets.select_presets(["si"], cfg, "epochs")[1] == {}  # another budget is another protocol


def test_split_mnist_presets_do_not_reach_an_sgd_run(monkeypatch, tmp_path):
    """The issue's case: presets tuned with Adam lr 1e-3 must not be applied to an SGD lr 0.1 run."""
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    fp = protocol_fingerprint("split-mnist")
    presets.save_preset("ewc", "split-mnist", {"lam": 10000.0}, {"protocol": {"name": "split-mnist", "fingerprint": fp}})
    sgd = RunConfig.from_dict({"stream": {"benchmark": "split-mnist"}})
    params, applied, skipped = presets.select_presets(["ewc"], sgd, "passes")
    assert params == {} and "ewc" in skipped
    assert presets.select_presets(["ewc"], protocol_config("split-mnist"), "passes")[1] == {"ewc": "ewc-split-mnist"}


def test_tune_protocol_cli_writes_a_checked_preset_that_compare_and_run_use(tiny, tmp_path, capsys, caplog):
    assert main(["tune", "--protocol", "tiny", "--method", "si", "--out", str(tmp_path / "t"), "--save-preset",
                 "--threads", "1", "--quiet"]) == 0
    preset = presets.load_preset("si-tiny")
    assert presets.check_preset(preset) == [] and len(preset["tuned"]["points"]) == 4
    assert "--protocol tiny" in preset["tuned"]["command"] and not preset["tuned"]["command"].split("--out ")[1].startswith("/")
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["protocol"]["name"] == "tiny"
    capsys.readouterr()
    base = [*TINY_FLAGS, "--quiet", "--no-report"]
    assert main(["compare", "--methods", "si,finetune", "--out", str(tmp_path / "c"), *base]) == 0
    assert "si: preset si-tiny" in capsys.readouterr().out
    cmp = yaml.safe_load((tmp_path / "c" / "compare.yaml").read_text())
    assert cmp["params"]["si"] == preset["method_params"]
    assert main(["compare", "--methods", "si", "--no-presets", "--out", str(tmp_path / "d"), *base]) == 0
    assert yaml.safe_load((tmp_path / "d" / "compare.yaml").read_text())["params"] == {}
    with caplog.at_level(logging.WARNING):
        assert main(["compare", "--methods", "si", "--lr", "0.05", "--out", str(tmp_path / "e"), *base]) == 0
    assert yaml.safe_load((tmp_path / "e" / "compare.yaml").read_text())["params"] == {}
    assert "train.lr 0.1 vs 0.05 (this run)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # explicit use: applied, with a warning on the mismatch
        assert main(["run", "--method", "si", "--preset", "si-tiny", "--lr", "0.05", "--out", str(tmp_path / "r"), *base]) == 0
    assert "tuned under protocol tiny" in caplog.text
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["method_params"] == preset["method_params"]
    assert main(["run", "--method", "mas", "--preset", "si-tiny", "--out", str(tmp_path / "r2"), *base]) == 2


def test_tune_all_tunes_every_method_of_the_protocol(tiny, tmp_path, monkeypatch):
    calls = []

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        calls.append(cfg.method)
        return RunResult(cfg, None, None, {"val_avg_acc": 0.5, "avg_acc": 0.5})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    assert main(["tune-all", "--protocol", "tiny", "--out", str(tmp_path / "a"), "--save-preset", "--quiet"]) == 0
    assert sorted(calls) == ["mas"] * 4 + ["si"] * 4  # every point of every method with a grid
    assert {n for n in presets.list_presets()} == {"si-tiny", "mas-tiny"}
    assert all(presets.check_preset(presets.load_preset(n)) == [] for n in ("si-tiny", "mas-tiny"))
    assert (tmp_path / "a" / "mas" / "tune.md").is_file()


def test_tune_protocol_takes_its_own_grid_without_saving_a_preset(tiny, tmp_path, monkeypatch):
    """``tune --protocol P --param ...``: the protocol's settings and proxy, a grid of one's own
    (how the ablation's rows are tuned); nothing is written to the shipped presets."""
    seen = []

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        seen.append(dict(cfg.params_dict()))
        return RunResult(cfg, None, None, {"val_avg_acc": 0.5 + cfg.method_params.lam / 100, "avg_acc": 0.5})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    argv = ["tune", "--protocol", "tiny", "--method", "si", "--param", "lam=1,10", "--param", "xi=0.5", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "g")]) == 0
    result = json.loads((tmp_path / "g" / "tune.json").read_text())
    assert result["grid"] == {"lam": [1, 10], "xi": [0.5]} and result["best"]["params"]["lam"] == 10
    assert [p["xi"] for p in seen] == [0.5, 0.5] and presets.list_presets() == []


@pytest.mark.parametrize("argv", [
    ["tune", "--method", "si", "--param", "lam=1,10", "--save-preset"],           # a preset needs a protocol
    ["tune", "--protocol", "tiny", "--method", "si", "--lr", "0.5"],             # the protocol's settings are fixed
    ["tune", "--protocol", "tiny", "--method", "si", "--param", "lam=1,10", "--save-preset"],  # a preset's grid is the grid file's
    ["tune", "--protocol", "tiny", "--method", "lwf"],                           # no grid for lwf here
    ["tune", "--protocol", "tiny", "--method", "si", "--budget", "epochs"],
    ["tune", "--protocol", "nope", "--method", "si"],
])
def test_tune_protocol_refuses_what_would_break_the_record(tiny, tmp_path, argv):
    assert main([*argv, *(["--benchmark", "blobs"] if "--protocol" not in argv else []), "--out", str(tmp_path / "x")]) == 2
    assert presets.list_presets() == []


def test_save_then_load(tmp_path):
    path = presets.save_preset("si", "tiny", {"lam": 3.0}, {"seeds": [0]}, directory=tmp_path)
    assert path.name == "si-tiny.yaml"
    assert presets.load_preset("si-tiny", tmp_path)["method_params"] == {"lam": 3.0}
    assert set(presets.tuned_presets("si", tmp_path)) == {"si-tiny"} and presets.tuned_presets("mas", tmp_path) == {}
    with pytest.raises(ConfigError, match="unknown preset"):
        presets.load_preset("nope", tmp_path)


def test_a_presets_task_inference_is_not_applied(tmp_path):
    """Mask methods' presets tuned when task inference was their own option (on by default)
    hold ``task_inference``; whether a run infers tasks is now the run's (a
    ``<method>+inference`` row), so a preset's is dropped when it applies."""
    preset = presets.load_preset("packnet-pmnist10-domain")
    preset["method_params"]["task_inference"] = "input_density"
    (tmp_path / "packnet-pmnist10-domain.yaml").write_text(yaml.safe_dump(preset))
    base = RunConfig.from_dict(PROTOCOLS["pmnist10-domain"].base)
    params, applied, _ = presets.select_presets(["packnet"], base, "passes", directory=tmp_path)
    assert applied == {"packnet": "packnet-pmnist10-domain"} and "task_inference" not in params["packnet"]
    assert params["packnet"]["prune_fraction"] == preset["method_params"]["prune_fraction"]  # the rest applies
    assert presets.load_preset("packnet-pmnist10-domain") is not presets.load_preset("packnet-pmnist10-domain")  # copies


def test_run_preset_applies_every_section_of_a_whole_run_preset(tmp_path):
    """`anpyc run --preset anpyc-reference --out D` runs the authors' setting: its network,
    optimiser, batch, epochs and stream come with it (flags still win); the first task keeps
    half of its free pool, so half the body is free after it; another method is refused."""
    out = tmp_path / "ref"
    argv = ["run", "--preset", "anpyc-reference", "--benchmark", "blobs", "--tasks", "3", "--epochs", "1",
            "--param", "retrain_epochs=0.1", "--param", "importance_samples=100", "--quiet", "--no-report"]
    assert main([*argv, "--out", str(out)]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["method"] == "anpyc" and cfg["model"]["hidden"] == [64, 32] and cfg["model"]["dropout"] == 0.5
    assert cfg["model"]["init"] == "truncated_normal" and cfg["train"]["batch_size"] == 256 and cfg["train"]["lr"] == 0.02
    assert cfg["train"]["lr_decay"] == 0.99 and cfg["method_params"]["keep_schedule"] == "reference"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["free_fraction_total_curve"][0] == pytest.approx(0.5, abs=0.01)
    assert metrics["kept_share"] == [0.5, 0.6, 1.0]  # 50 %, then 40 % of the free pool; the last task not pruned
    assert main(["run", "--preset", "anpyc-reference", "--method", "ewc", "--out", str(tmp_path / "x")]) == 2


def test_a_preset_named_for_another_method_is_refused_from_python_too():
    """The CLI says "drop --method" before it gets here; the Python API checks the same."""
    with pytest.raises(ConfigError, match="preset 'si-pmnist10' is for method 'si', not 'ewc'"):
        presets.select_presets(["ewc"], RunConfig(), "passes", named={"ewc": "si-pmnist10"})


@pytest.mark.parametrize("text, words", [
    ("- pmnist10\n", "must map protocols to methods to grids"),
    ("pmnist10: [si]\n", "pmnist10 must map methods to grids"),
    ("pmnist10:\n  si: {lam: []}\n", "pmnist10.si must map each parameter to a non-empty list"),
])
def test_a_malformed_grid_file_is_one_line(tmp_path, text, words):
    (tmp_path / presets.GRID_FILE).write_text(text)
    with pytest.raises(ConfigError, match=words):
        presets.load_grids(tmp_path / presets.GRID_FILE)


def test_tune_all_resumes_the_methods_it_reached_and_starts_the_others(tiny, tmp_path, monkeypatch):
    """``tune-all --resume`` after a kill: a method whose search had started goes on in its
    folder (its settings checked); one the kill came before starts there."""
    import shutil

    calls = []

    def fake_run(cfg, out_dir=None, quiet=False, overwrite=False, stream=None, method=None, budget=None, report=False):
        calls.append((cfg.method, overwrite))
        return RunResult(cfg, None, None, {"val_avg_acc": 0.5, "avg_acc": 0.5})

    monkeypatch.setattr(tune_mod, "run", fake_run)
    monkeypatch.setattr(tune_mod, "build_stream", lambda *a, **k: None)
    argv = ["tune-all", "--protocol", "tiny", "--out", str(tmp_path / "a"), "--quiet"]
    assert main(argv) == 0
    shutil.rmtree(tmp_path / "a" / "si")  # the kill came before si's search
    (tmp_path / "a" / "mas" / "tune.json").unlink()  # ... and during mas's
    calls.clear()
    assert main([*argv, "--resume"]) == 0
    assert sorted(calls) == [("mas", True)] * 4 + [("si", False)] * 4  # mas goes on in its folder, si starts
    assert (tmp_path / "a" / "mas" / "tune.json").is_file() and (tmp_path / "a" / "si" / "tune.json").is_file()
    assert main([*argv, "--resume", "--overwrite"]) == 2
