import json
from pathlib import Path

import pytest

from anpyc.cli import main
from anpyc.errors import ConfigError
from anpyc.experiments.bench import SUITES, run_suite
from anpyc.experiments.protocols import PROTOCOLS
from script_loader import load_script


def test_unknown_suite_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown suite"):
        run_suite("nope", tmp_path)


def test_every_suite_config_is_valid():
    from anpyc.config import RunConfig
    from anpyc.methods import method_config

    for bench in SUITES.values():
        RunConfig.from_dict(bench.base)
        for method, params in bench.aliases.values():
            method_config(method, params)


def test_quick_bench_writes_json_and_markdown(tmp_path, mnist_dir, capsys):
    out = tmp_path / "b"
    assert main(["bench", "quick", "--tasks", "2", "--subsample", "300", "--methods", "anpyc,finetune",
                 "--out", str(out), "--quiet", "--allow-dirty"]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert set(data["methods"]) == {"anpyc", "finetune"} and data["bench"]["machine"]["cores"] >= 1
    assert data["bench"]["machine"]["cpu_capability"]  # what explains a few flipped predictions elsewhere
    assert "| anpyc |" in (out / "bench.md").read_text() and "| anpyc |" in capsys.readouterr().out
    command = data["bench"]["command"]  # no machine path: --out relative to the working directory
    assert command.startswith("anpyc bench quick") and not command.split("--out ")[1].startswith("/")
    assert data["methods"]["anpyc"]["runs"] == ["anpyc/seed_0"]


def test_bench_command_makes_out_relative(tmp_path, monkeypatch):
    from anpyc.experiments.bench import bench_command

    monkeypatch.chdir(tmp_path)
    argv = ["/x/.venv/bin/anpyc", "bench", "long", "--jobs", "2", "--out", str(tmp_path / "b" / "long")]
    assert bench_command("long", tmp_path / "b" / "long", argv) == "anpyc bench long --jobs 2 --out b/long"
    argv = ["anpyc", "bench", "long", f"--out={tmp_path / 'b'}"]
    assert bench_command("long", tmp_path / "b", argv) == "anpyc bench long --out=b"
    assert bench_command("long", "b", ["python", "-m", "pytest"]) == "anpyc bench long --out b"


def test_reference_bench_runs_exactly_the_shipped_preset():
    """`anpyc bench reference` and `anpyc run --config src/anpyc/presets/anpyc-reference.yaml`
    resolve to the same run config (released weights at zero, the authors' epochs)."""
    from anpyc.config import RunConfig
    from anpyc.experiments.bench import bench_plan
    from anpyc.experiments.presets import PRESET_DIR
    from anpyc.methods import typed

    shipped = typed(RunConfig.from_file(PRESET_DIR / "anpyc-reference.yaml"))
    ran = bench_plan("reference").configs()["anpyc-reference"]
    assert ran.to_dict() == shipped.to_dict()
    p = ran.method_params
    assert p.keep_schedule == "reference" and p.prune_steps is None and p.retrain_scope == "all" and p.train_on is False
    assert ran.model.dropout == 0.5 and ran.stream.first_task_unpermuted is False


def test_reference_alias_runs_next_to_default(tmp_path, mnist_dir):
    summary = run_suite("reference", tmp_path / "r", methods=["anpyc", "anpyc-reference"], quiet=True,
                            overrides={"stream": {"tasks": 2, "subsample": 300, "test_subsample": 200}, "train": {"epochs": 1}},
                            params={"anpyc-reference": {"retrain_epochs": 0.1}}, allow_dirty=True)
    ref = summary["methods"]["anpyc-reference"]
    assert ref["method"] == "anpyc" and ref["params"]["keep_schedule"] == "reference"
    assert summary["methods"]["anpyc"]["params"] == {}


def test_bench_applies_a_preset_only_under_its_protocol(tmp_path, monkeypatch):
    """A preset tuned under pmnist10 applies to `bench long` (pmnist10 with 50 tasks) but not to
    pmnist10 with another learning rate, nor to pmnist10-common; --no-presets: the defaults."""
    from anpyc.experiments import presets
    from anpyc.experiments.bench import bench_plan
    from anpyc.experiments.protocols import protocol_fingerprint

    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    presets.save_preset("ewc", "pmnist10", {"lam": 7.0}, {"protocol": {"name": "pmnist10", "fingerprint": protocol_fingerprint("pmnist10")}})
    plan = bench_plan("long", ["ewc", "si"])
    assert plan.params["ewc"] == {"lam": 7.0} and plan.presets_applied == {"ewc": "ewc-pmnist10"} and "si" not in plan.params
    assert plan.configs()["ewc"].method_params.lam == 7.0
    other = bench_plan("pmnist10", ["ewc"], overrides={"train": {"lr": 0.05}})
    assert other.params == {} and other.presets_not_applied["ewc"].endswith("train.lr 0.1 (preset) vs 0.05 (run)")
    assert bench_plan("pmnist10-common", ["ewc"]).presets_applied == {}
    assert bench_plan("pmnist10", ["ewc"], presets=False).params == {}
    assert bench_plan("pmnist10", ["ewc"], params={"ewc": {"lam": 1.0}}).params["ewc"] == {"lam": 1.0}  # --param wins


def test_bench_jobs_flag_is_checked(tmp_path):
    assert main(["bench", "quick", "--jobs", "0", "--out", str(tmp_path / "j")]) == 2


def test_long_bench_runs_every_method_the_comparison_needs():
    long = SUITES["long"]
    # every method that trains a network but the upper bounds (joint: 50 x the data)
    from anpyc.methods import method_names

    expected = set(method_names(without={"upper-bound", "no-network"}))
    assert set(long.methods) == expected and "joint" not in long.methods
    assert {"anpyc", "anpyc-masks", "hat", "er", "derpp", "lwf"} <= set(long.methods)
    assert long.base["stream"]["tasks"] == 50


def test_an_alias_runs_with_its_methods_preset(tmp_path, monkeypatch):
    """`er-200` is `er` with buffer 200: it gets er's tuned preset under its own change."""
    from anpyc.experiments import bench as bench_mod

    def fake(bench, methods, base, budget, presets=True):
        assert "er" in methods  # er's preset is looked up for its alias even when er itself is not run
        return {"er": {"replay_batch": 32, "buffer": 500}}, {"er": "er-x"}, {}

    monkeypatch.setattr(bench_mod, "method_params", fake)
    plan = bench_mod.bench_plan("split-mnist-class", ["er-200"])
    assert plan.aliases["er-200"] == ("er", {"replay_batch": 32, "buffer": 200}) and plan.params == {}


@pytest.mark.parametrize("name", ["pmnist10", "long"])
def test_task_aware_suites_give_packnet_the_masks_variants_warm_start(name):
    """The row that credits anpyc-masks' warm start: PackNet at its own preset, released weights
    keeping their values instead of the paper's zeros."""
    from dataclasses import asdict

    from anpyc.experiments.bench import bench_plan

    plan = bench_plan(name)
    assert {"packnet-reinit-keep", "packnet", "anpyc-masks"} <= set(plan.methods)
    configs = plan.configs()
    keep, paper = configs["packnet-reinit-keep"], configs["packnet"]
    assert keep.method == "packnet" and (keep.method_params.reinit, paper.method_params.reinit) == ("keep", "zero")
    assert {**asdict(keep.method_params), "reinit": "zero"} == asdict(paper.method_params)
    assert paper.method_params.prune_fraction == 0.9  # the preset applies to both


# ----------------------------------------------------------------------------- without task ids: like with like
@pytest.mark.parametrize("name", ["pmnist10-domain", "split-mnist-class", "split-fmnist-class"])
def test_no_task_id_suites_give_the_density_model_to_every_method(name):
    from anpyc.experiments.bench import bench_plan
    from anpyc.methods import METHODS

    suite = SUITES[name]
    network = [m for m in suite.methods if METHODS[m].trains_network]
    assert "density" in suite.methods and set(network) >= {"anpyc", "packnet", "hat", "ewc", "er", "finetune"}
    configs = bench_plan(name).configs()
    for m in network:
        # every method is given the same inference: the score its protocol names
        assert configs[f"{m}+inference"].task_inference == PROTOCOLS[name].inference and configs[f"{m}+inference"].method == m
        # the plain row has one head and no inference, whatever a preset tuned before this option recorded
        assert configs[m].task_inference == "none" and configs[m].model.head == "single"
    assert "density+inference" not in configs
    # the class streams: the same replay drawn from the density model for every method whose budget allows it
    replayed = [label for label in configs if label.endswith("+density-replay")]
    if name == "pmnist10-domain":
        assert not replayed
    else:
        assert len(replayed) >= 9 and "finetune+density-replay" in replayed and "anpyc+density-replay" in replayed
        for label in replayed:
            assert configs[label].density_replay == PROTOCOLS[name].density_replay["density_replay"]


def test_the_domain_protocol_infers_the_task_by_one_ppca_per_task_and_compare_follows_it(tmp_path, monkeypatch):
    """pmnist10-domain's tasks differ in the whole input: its rows use ``pooled_density`` (chosen on
    validation, a tenth of the cost); the class-incremental protocols a per-class mixture of PPCA
    models (``mixture_density``; on split MNIST with the heads' evidence, ``mixture_combined``;
    each chosen on validation), and ``anpyc compare --protocol`` gives a ``+inference`` label its
    protocol's score."""
    from anpyc.experiments import compare as compare_module

    assert PROTOCOLS["pmnist10-domain"].inference == "pooled_density"
    assert PROTOCOLS["split-mnist-class"].inference == "mixture_combined"
    assert PROTOCOLS["split-fmnist-class"].inference == "mixture_density"
    seen = {}

    class _Planned(Exception):
        pass

    def planned(base, methods, seeds, out, params, **kw):
        seen.update(kw)
        raise _Planned  # what it would run is all this test needs

    monkeypatch.setattr(compare_module, "compare", planned)
    with pytest.raises(_Planned):
        main(["compare", "--protocol", "pmnist10-domain", "--methods", "packnet+inference", "--out", str(tmp_path / "c"), "--quiet"])
    assert seen["aliases"]["packnet+inference"][1]["task_inference"] == "pooled_density"


def test_a_no_task_id_table_shows_three_groups_compared_within_each(tmp_path):

    out = tmp_path / "b"
    summary = run_suite("split-mnist-class", out, seeds=1, methods=["anpyc", "finetune", "finetune+inference", "density"],
                        quiet=True, overrides={"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 120},
                                               "model": {"hidden": [8]}, "train": {"epochs": 1}}, allow_dirty=True)
    assert summary["methods"]["finetune+inference"]["task_inference"] == "mixture_combined"
    text = (out / "bench.md").read_text()
    rows = [line.split(" | ")[:2] for line in text.splitlines() if line.startswith("| ") and "ACC" not in line]
    assert rows == [["| one head, no task inference", "anpyc"], ["| one head, no task inference", "finetune"],
                    ["| task inferred, a head per task", "finetune+inference"], ["| the inputs' model alone", "density"]]
    module = load_script(Path(__file__).resolve().parents[2] / "docs" / "scripts" / "bench_tables.py")
    table = module.table(out)
    assert "| task inferred | finetune+inference |" in table and "| inputs alone | density |" in table


@pytest.mark.parametrize("stage", ["ablation", "ablation-default"])
def test_every_tuned_ablation_row_is_the_arg_max_of_its_committed_tuning(stage):
    """Each row of both stages of the ablation (`anpyc bench ablation[-domain]`, `anpyc bench
    ablation-default[-domain]`) runs the knob its committed `anpyc tune` (the stage's tune.sh)
    chose on validation, with the row's change on the stage's pinned base."""
    from anpyc.experiments import bench
    from anpyc.experiments.tune import protocol_tune_config

    base, rows, tuned_of, pin = {
        "ablation": (bench.PAPER_MECHANISMS, bench.ABLATION_ROWS, bench.ABLATION_TUNED, "paper="),
        "ablation-default": (bench.DEFAULT_MECHANISMS, bench.DEFAULT_ABLATION_ROWS, bench.DEFAULT_ABLATION_TUNED, "base="),
    }[stage]
    folder = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / stage
    pinned = next(line for line in (folder / "tune.sh").read_text().splitlines() if line.startswith(pin))
    assert dict(kv.split("=") for kv in pinned[len(pin) + 1:-1].split()) == {k: str(v).lower() for k, v in base.items()}
    assert set(tuned_of) == set(bench.PROTOCOLS_OF_ABLATION)
    for protocol in bench.PROTOCOLS_OF_ABLATION:
        assert set(tuned_of[protocol]) >= set(rows) - {"no-consolidation"}, (protocol, "a row without its tuning")
        for row, tuned in tuned_of[protocol].items():
            result = json.loads((folder / "tune" / protocol / row / "tune.json").read_text())
            proxy = protocol_tune_config(protocol, "anpyc").stream  # tuned on today's proxy
            assert (result["config"]["stream"]["tasks"], result["config"]["stream"]["test_subsample"]) == (
                proxy.tasks, proxy.test_subsample), (protocol, row)
            grid = {k: v for k, v in result["grid"].items() if len(v) > 1}
            assert set(grid) == set(tuned), (protocol, row)
            valid = [p for p in result["points"] if not p["failed"]]
            best = max(valid, key=lambda p: (p["val_avg_acc"], -p["point"]))
            assert {k: best["params"][k] for k in grid} == tuned, (protocol, row)
            for k, v in {**base, **rows[row]}.items():  # the row is what was tuned
                if k not in grid:
                    assert best["params"][k] == v, (protocol, row, k)


def test_polarisation_suite_puts_the_paper_anpyc_beside_the_importance_penalties():
    """`anpyc bench polarisation`: ANPyC at its default and with every mechanism of the paper
    (the ablation's row, its tuned lambda) and every method tagged importance-penalty, at their
    pmnist10 presets."""
    from anpyc.experiments.bench import PAPER_MECHANISMS, bench_plan

    plan = bench_plan("polarisation")
    assert set(plan.methods) == {"anpyc", "ewc", "online-ewc", "si", "mas", "anpyc-all"}
    method, params = plan.aliases["anpyc-all"]
    assert method == "anpyc" and {k: params[k] for k in {**PAPER_MECHANISMS, "lam": 3.0}} == {**PAPER_MECHANISMS, "lam": 3.0}
    assert plan.presets_applied.get("si") == "si-pmnist10" and plan.presets_applied.get("anpyc") == "anpyc-pmnist10"


def test_bench_methods_take_the_suites_own_variants(capsys):
    """`bench reference --methods anpyc-reference` names the suite's variant: only names that
    are neither registered nor the suite's are refused (exit 2, before any training)."""
    from anpyc.cli import main

    assert main(["bench", "reference", "--methods", "anpyc-reference,nope", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "anpyc-reference" not in err.split("known:")[0]


def test_a_bench_refuses_a_dirty_tree_and_records_its_commit(tmp_path, monkeypatch, capsys):
    """A published figure names its code: uncommitted changes stop the bench with one line
    (exit 2) unless --allow-dirty, which bench.json then records beside the commit."""
    import anpyc.runner

    monkeypatch.setattr(anpyc.runner, "git_commit", lambda: "abc123-dirty")
    (tmp_path / "blobs.yaml").write_text("stream: {benchmark: blobs}\n")
    argv = ["bench", "quick", "--methods", "finetune", "--seeds", "1", "--config", str(tmp_path / "blobs.yaml"),
            "--tasks", "2", "--subsample", "60", "--hidden", "8", "--quiet", "--no-report", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "uncommitted changes (abc123-dirty)" in err[0] and "--allow-dirty" in err[0]
    assert not (tmp_path / "b").exists()  # refused before anything is written
    assert main([*argv, "--allow-dirty"]) == 0
    bench = json.loads((tmp_path / "b" / "bench.json").read_text())["bench"]
    assert (bench["commit"], bench["clean_tree"], bench["allow_dirty"]) == ("abc123", False, True)
    assert bench["run_commits"] == ["abc123-dirty"]  # what each run's config.yaml recorded
    monkeypatch.setattr(anpyc.runner, "git_commit", lambda: "abc123")
    assert main([*argv, "--overwrite"]) == 0
    bench = json.loads((tmp_path / "b" / "bench.json").read_text())["bench"]
    assert (bench["commit"], bench["clean_tree"], bench["allow_dirty"]) == ("abc123", True, False)


def test_the_headline_suites_run_five_seeds_and_the_long_one_three() -> None:
    # issue #27: 5 seeds behind the README's pmnist10, domain and class claims, 3 for 50 tasks
    from anpyc.experiments.bench import SUITES

    assert [SUITES[n].seeds for n in ("pmnist10", "pmnist10-domain", "split-mnist-class", "split-fmnist-class")] == [5] * 4
    assert SUITES["long"].seeds == 3 and SUITES["pmnist10-common"].seeds == 3
