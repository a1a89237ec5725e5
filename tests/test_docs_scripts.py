"""Every figure in docs has its command and a committed script: the scripts docs cite exist,
their rows are valid configs, and they run (on a tiny synthetic stream)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from script_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "docs" / "scripts" / "anpyc_variants.py"


def test_every_script_docs_cite_is_committed():
    cited = set()
    for doc in [ROOT / "README.md", *ROOT.joinpath("docs").rglob("*.md")]:
        cited |= set(re.findall(r"((?:docs|examples)/[\w./-]+\.py)", doc.read_text(encoding="utf-8")))
    assert "docs/scripts/anpyc_variants.py" in cited
    missing = sorted(c for c in cited if not (ROOT / c).is_file())
    assert not missing, f"docs cite scripts that are not in the repository: {missing}"


@pytest.mark.parametrize("table", ["defaults", "criterion", "protection", "exhaustion"])
def test_variant_rows_are_valid_configs(table):
    script = load_script(VARIANTS)
    configs = script.row_configs(table)
    assert configs and all(c.stream.benchmark == "permuted-mnist" for c in configs.values())
    assert all(c.train.lr == 0.1 and c.model.hidden == (256, 256) for c in configs.values())  # pmnist10's training


def test_variant_script_runs(tmp_path):
    script = load_script(VARIANTS)
    assert script.main(["defaults", "--smoke", "--rows", "k15x095-random,finetune", "--threads", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "defaults.json").read_text())
    assert set(data["rows"]) == {"k15x095-random", "finetune"} and all("val_avg_acc" in r for r in data["rows"].values())
    assert "| fine-tune (reference point) |" in (tmp_path / "defaults.md").read_text()


def test_per_task_table_reads_run_directories(tmp_path):
    table = load_script(ROOT / "docs" / "scripts" / "per_task_table.py")
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({
        "acc_matrix": [[0.9, None], [0.9, 0.8]], "avg_acc": 0.85, "forgetting": 0.0,
        "passes": [1.0, 1.02], "decision_passes": [0.4, 0.3],
        "prune_guard": [{"task": 0, "val_before": 0.95, "val_pruned": 0.9, "val_retrained": 0.94,
                         "planned_keep": 0.15, "keep": 0.3}]}))
    out = table.main([f"anpyc={run}"])
    assert "| anpyc | 90.0 | 80.0 | 85.0 | 0.00 | 1.01 | 0.35 |" in out and "| anpyc | 0 | 95.0 | 90.0 | 94.0 | 0.15 | 0.3 |" in out


def test_tuning_table_marks_a_one_knob_choice_at_the_grids_end():
    script = load_script(ROOT / "docs" / "scripts" / "tuning_table.py")
    preset = {"method": "ewc", "tuned": {"date": "2026-12-03T01:00:00+00:00", "git_commit": "6373d82a44", "grid": {"lam": [1.0, 10.0]}, "points": [
        {"params": {"lam": 1.0}, "val_avg_acc": 0.9}, {"params": {"lam": 10.0}, "val_avg_acc": 0.8}]}}
    assert script.row(preset) == "| ewc | lam 1, 10 | lam 1 | 90.00 | 90.00 / 80.00 | lowest | 2026-12-03 6373d82 |"
    assert "Protocol `pmnist10`" in script.table("pmnist10")


def test_bench_tables_reads_a_bench_and_applies_the_claim_rule(tmp_path):
    from anpyc.experiments.bench import run_suite

    out = tmp_path / "b"
    run_suite("quick", out, seeds=2, methods=["anpyc", "finetune", "joint"], quiet=True,
                  overrides={"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200}, "model": {"hidden": [16]}}, allow_dirty=True)
    text = load_script(ROOT / "docs" / "scripts" / "bench_tables.py").table(out)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert {r.split(" | ")[0].lstrip("| ") for r in rows} == {"anpyc", "finetune", "joint (upper bound)"}
    assert "seeds [0, 1]" in text and "anpyc bench quick" in text
    finetune = next(r for r in rows if r.startswith("| finetune"))
    assert re.search(r"\| (ahead of ANPyC|behind ANPyC|within std) \(p [<0-9. ]+(, Welch disagrees)?\) \|$", finetune)
    assert "Best **" in text and "not separable from it" in text


def _entry(mean: float, std: float, n: int = 5, **extra) -> dict:
    return {"avg_acc": {"mean": mean, "std": std}, "n_seeds": n, **extra}


def test_bench_tables_puts_welch_beside_the_both_std_rule_and_says_where_they_disagree(tmp_path):
    bt = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    ref = _entry(0.913, 0.004)
    assert bt._versus(_entry(0.925, 0.003), ref).startswith("ahead of ANPyC (p < 0.001)")
    # beyond both std but only 2 seeds each: Welch cannot call it, and the cell says so
    assert bt._versus(_entry(0.920, 0.004, n=2), _entry(0.913, 0.004, n=2)).endswith("Welch disagrees)")
    # within both std, yet Welch calls it from 10 seeds: said too
    cell = bt._versus(_entry(0.9174, 0.0045, n=10), _entry(0.913, 0.0045, n=10))
    assert cell.startswith("within std (p 0.0") and cell.endswith(", Welch disagrees)")
    assert bt._versus(_entry(0.92, 0.0, n=1), ref) == "no claim (1 seed)"
    rows = [("a", _entry(0.93, 0.002)), ("b", _entry(0.91, 0.002)), ("c", _entry(0.929, 0.002)),
            ("up", _entry(0.99, 0.001, upper_bound=True))]
    standing = bt._standing(rows, "one head")
    assert standing.startswith("one head: best **a**; ahead (both std and Welch p < 0.05) of 1 of 2")
    assert "not separable from it: c (p 0.452)." in standing
    (tmp_path / "bench.json").write_text(json.dumps({"methods": {"a": rows[0][1], "b": rows[1][1]}}))
    assert bt.versus("a", "b", tmp_path).endswith("+2.00 points; both-std rule: ahead; Welch t 15.81, df 8.0, p < 0.001")



def test_bench_tables_versus_a_row_the_bench_lacks_says_so_in_one_line(tmp_path, capsys):
    bt = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    (tmp_path / "bench.json").write_text(json.dumps({"methods": {"hat": _entry(0.9, 0.01), "finetune": _entry(0.8, 0.01)}}))
    assert bt.main(["--versus", "hatt", "finetune", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'hatt'" in err and "finetune, hat" in err
    assert bt.main(["--versus", "hat", "finetune", str(tmp_path)]) == 0
    assert "hat 90.0 ± 1.0 vs finetune" in capsys.readouterr().out

def test_baseline_defaults_are_the_best_mean_validation_point(tmp_path):
    script = load_script(ROOT / "docs" / "benchmarks" / "baselines-defaults" / "defaults.py")
    _, names, parts = script.GRIDS["er"]
    points = [dict(zip(parts[0], combo)) for combo in itertools.product(*parts[0].values())]
    for s, setting in enumerate(names):  # point 1 is best on average, point 0 on the first setting alone
        val = [0.9 if (k == 0 and s == 0) else 0.8 + 0.05 * (k == 1) for k in range(len(points))]
        rows = [{"point": k, "params": {**p, "buffer": 500}, "val_avg_acc": v, "test_avg_acc": 0.5, "failed": None}
                for k, (p, v) in enumerate(zip(points, val))]
        (tmp_path / "runs" / "er" / setting / "part0").mkdir(parents=True)
        (tmp_path / "runs" / "er" / setting / "part0" / "tune.json").write_text(json.dumps({"points": rows}))
        (tmp_path / "runs" / "er" / setting / "part0" / "tune.md").write_text("")
    assert script.main(["choose", "--out", str(tmp_path / "runs"), "--write", str(tmp_path / "docs")]) == 0
    chosen = json.loads((tmp_path / "docs" / "choices.json").read_text())["er"]
    assert chosen["params"] == points[1] and chosen["runs"] == len(points) * len(names)
    table = (tmp_path / "docs" / "er.md").read_text()
    assert f"**{', '.join(f'{k} {v}' for k, v in points[1].items())}**" in table and "90.00 *" in table


@pytest.mark.parametrize("method", ["er", "derpp", "hat", "ewc-lam", "online-ewc", "ewc-head", "online-ewc-head"])
def test_shipped_defaults_are_the_committed_validation_choice(method):
    """The committed tune.json copies give the committed choice, and the method ships it."""
    from anpyc.methods import create

    where = ROOT / "docs" / "benchmarks" / "baselines-defaults"
    script = load_script(where / "defaults.py")
    recomputed = script.choose(where / "runs", method)
    committed = json.loads((where / "choices.json").read_text())[method]
    assert recomputed is not None and recomputed["params"] == committed["params"]
    config = create(method.removesuffix("-lam").removesuffix("-head")).config  # ewc-lam, -head: EWC's later stages
    assert {k: getattr(config, k) for k in committed["params"]} == committed["params"]


def test_bench_tables_says_a_row_with_a_stopped_seed_is_the_other_seeds(tmp_path):
    """A seed that stopped leaves the row over the others (said so); a label every seed of
    which stopped has no row (said so too)."""
    bt = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    nan = "non-finite loss (nan) in task 2, epoch 0: lower the learning rate"
    bench = {
        "scenario": "class", "n_tasks": 5, "seeds": [0, 1, 2],
        "bench": {"command": "anpyc bench x", "date": "2026-12-03T00:00:00", "commit": "a" * 40, "clean_tree": True},
        "methods": {"anpyc": _entry(0.2, 0.001, n=3, method="anpyc"), "packnet": _entry(0.2, 0.001, n=2)},
        "failed": [{"method": "packnet", "seed": 1, "error": nan},
                   {"method": "derpp", "seed": 0, "error": nan}, {"method": "derpp", "seed": 2, "error": nan}],
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    text = bt.table(tmp_path)
    assert "packnet: seed(s) 1 stopped (non-finite loss (nan) in task 2, epoch 0); its row is the other 2 seeds." in text
    assert "No row for derpp: seed(s) 0, 2 stopped (non-finite loss (nan) in task 2, epoch 0)." in text
    assert "No row for packnet" not in text and "| packnet |" in text


def test_bench_tables_compares_with_the_anpyc_row_not_whichever_anpyc_variant_comes_last():
    """The ablation's rows are all ``method: anpyc``: the reference is ``anpyc-all``; a bench
    with ``anpyc`` compares with it (and ``anpyc+inference`` in its group); two unnamed
    variants and nothing else give no reference rather than an arbitrary one."""
    bt = load_script(ROOT / "docs" / "scripts" / "bench_tables.py")
    ablation = {"no-pruning": {"method": "anpyc"}, "anpyc-all": {"method": "anpyc"}, "no-consolidation": {"method": "anpyc"},
                "finetune": {"method": "finetune"}}
    assert bt.references(ablation, dict.fromkeys(ablation, ""))[""] is ablation["anpyc-all"]
    bench = {"anpyc-masks": {"method": "anpyc-masks"}, "anpyc": {"method": "anpyc"},
             "anpyc+inference": {"method": "anpyc", "task_inference": "input_density"}, "x": {"method": "anpyc"}}
    groups = {"anpyc-masks": "one head", "anpyc": "one head", "x": "one head", "anpyc+inference": "task inferred"}
    refs = bt.references(bench, groups)
    assert refs["one head"] is bench["anpyc"] and refs["task inferred"] is bench["anpyc+inference"]
    two = {"no-pruning": {"method": "anpyc"}, "no-structure": {"method": "anpyc"}}
    assert bt.references(two, dict.fromkeys(two, "")) == {}


def test_guard_record_tables_are_the_scripts_output_on_its_committed_runs():
    """Every table of docs/benchmarks/guard/README.md marked ``<!-- per_task_table KIND: NAME=DIR ... -->``
    is what docs/scripts/per_task_table.py prints for those runs (``runs``: the per-task table,
    ``guard``: the guard's table)."""
    import shlex

    script = load_script(ROOT / "docs" / "scripts" / "per_task_table.py")
    page_dir = ROOT / "docs" / "benchmarks" / "guard"
    page = (page_dir / "README.md").read_text()
    marked = re.findall(r"<!-- per_task_table (runs|guard): (.+?) -->\n((?:\|.*\n)+)", page)
    assert len(marked) == 3
    for kind, args, table in marked:
        runs = [f"{name}={page_dir / path}" for name, path in (a.split("=", 1) for a in shlex.split(args))]
        runs_part, _, guard_part = script.main(runs).partition("\n\n")
        assert table.strip() == (runs_part if kind == "runs" else guard_part).strip()


def test_full_length_tuning_reads_the_grids_and_tabulates(tmp_path):
    """docs/scripts/full_length_tuning.py: every pmnist10 grid has the protocol's 4 points, and
    the table ranks by mean test ACC with Welch's p against anpyc and fine-tune."""
    script = load_script(ROOT / "docs" / "scripts" / "full_length_tuning.py")
    assert script.grid_points("hat") == [{"c": c, "s_max": s} for c in (0.25, 0.75) for s in (100, 400)]
    assert all(len(script.grid_points(m)) == 4 for m in ("anpyc", "si", "online-ewc", "derpp"))
    assert script.grid_points("anpyc", "pmnist10-domain") == [{"lam": v} for v in (0.3, 1, 3, 10)]
    rows = {"finetune": {"test": [91.0, 91.2, 90.8]},
            "anpyc": {"params": {"lam": 1}, "test": [91.5, 91.7, 91.6]},
            "si": {"params": {"lam": 1}, "test": [92.5, 92.6, 92.4]}}
    script.write(tmp_path, rows)
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| si", "| anpyc", "| finetune"]
    assert lines[2].startswith("| si | lam 1 | 92.5 ± 0.1 | 0.00") and lines[4].endswith("|  |")
    assert json.loads((tmp_path / "table.json").read_text())["si"]["params"] == {"lam": 1}


def test_omega_floor_raises_every_zero_importance_in_a_run_and_restores_the_method(tmp_path):
    """docs/scripts/omega_floor.py (the generation record's ε-floor exploration): the floor is
    max(Ω, eps · mean positive Ω) per tensor, a run under it records no zero importance, and the
    library's ANPyC is itself again afterwards."""
    import torch

    from anpyc.methods.anpyc import ANPyC

    script = load_script(ROOT / "docs" / "scripts" / "omega_floor.py")
    floored = script.floor({"w": torch.tensor([0.0, 2.0, 4.0]), "z": torch.zeros(2)}, 0.5)
    assert floored["w"].tolist() == [1.5, 2.0, 4.0] and floored["z"].tolist() == [0.0, 0.0]
    original = ANPyC.estimate_importance
    out = tmp_path / "run"
    argv = ["0.01", "run", "--method", "anpyc", "--benchmark", "blobs", "--tasks", "2", "--epochs", "1",
            "--param", "importance_samples=64", "--quiet", "--out", str(out)]
    assert script.main(argv) == 0
    assert ANPyC.estimate_importance is original
    assert script.main(["0.01", "compare", "--jobs", "2", "--out", str(tmp_path / "jobs")]) == 2  # workers: unfloored
    assert not (tmp_path / "jobs").exists()
    assert script.main(["run", "--method", "anpyc"]) == 2  # eps first
    stats = json.loads((out / "metrics.json").read_text())["importance_stats"]
    assert len(stats) == 2 and all(s["zero_share"] == 0.0 for s in stats)


def test_omega_floor_record_tables_are_the_scripts_output_on_its_committed_runs():
    """The ε-floor tables of docs/benchmarks/generation/README.md are what
    ``omega_floor.py --table`` prints for the committed runs."""
    script = load_script(ROOT / "docs" / "scripts" / "omega_floor.py")
    record = ROOT / "docs" / "benchmarks" / "generation"
    assert script.table(record / "omega-floor").strip() in (record / "README.md").read_text(encoding="utf-8")


def _table_rows(text: str) -> dict[str, list[str]]:
    """A Markdown table's rows by their first cell, bold marks dropped."""
    return {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("| ")
            for cells in [[c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]]}


@pytest.mark.parametrize("record", ["task-mean", "omega-decay", "l2-pull"])
def test_fifty_task_exploration_tables_are_their_runs_figures(record):
    """docs/benchmarks/long/{task-mean,omega-decay,l2-pull}: every committed 50-task run has a row
    of its README's table with its validation ACC, test ACC, BWT, mean learning accuracy (the
    accuracy matrix's diagonal) and task 1's final accuracy, read from its metrics.json."""
    folder = ROOT / "docs" / "benchmarks" / "long" / record
    rows = [[c.replace("\u2212", "-") for c in cells]
            for cells in _table_rows((folder / "README.md").read_text(encoding="utf-8")).values()]
    runs = [json.loads(f.read_text()) for f in sorted(folder.glob("runs/*/metrics.json"))]
    runs = [m for m in runs if m["n_tasks"] == 50]
    assert runs
    for m in runs:
        R = m["acc_matrix"]
        learnt = sum(R[i][i] for i in range(len(R))) / len(R)
        figures = [f"{100 * m['val_avg_acc']:.2f}", f"{100 * m['avg_acc']:.2f}", f"{100 * m['bwt']:.2f}",
                   f"{100 * learnt:.2f}", f"{100 * R[-1][0]:.1f}"]
        assert figures in [r[:5] for r in rows], (record, figures)


def _bench_row(folder: Path, method: str) -> dict:
    return json.loads((folder / "bench.json").read_text(encoding="utf-8"))["methods"][method]


def _against(row: dict, ref: dict) -> str:
    from anpyc.report.stats import format_p, welch_t_test

    welch = welch_t_test(row["avg_acc"], ref["avg_acc"], row["n_seeds"], ref["n_seeds"])
    return f"{100 * (row['avg_acc']['mean'] - ref['avg_acc']['mean']):+.2f}, {format_p(welch.p)}".replace("-", "\u2212")


#: the warm-start credit records: README -> (the bench of the reference rows, its table's first
#: column -> (bench folder, None for the reference bench; method), the methods of the reference
#: bench the last two columns compare with, None for the row's own preset and SI)
WARM_START = {
    "long/masks-credit": ("long", {
        "`anpyc-masks`, its preset (the long bench)": (None, "anpyc-masks"),
        "PackNet, its preset (the long bench)": (None, "packnet"),
        "`anpyc-masks`, `keep_first` 0.2": ("keep-first-0.2", "anpyc-masks"),
        "`anpyc-masks`, `reinit` zero": ("reinit-zero", "anpyc-masks"),
        "`anpyc-masks`, `prune_last` false": ("prune-last-false", "anpyc-masks"),
        "`anpyc-masks`, all three undone": ("all-three", "anpyc-masks"),
        "PackNet, `reinit` keep": ("packnet-reinit-keep", "packnet"),
    }, ("anpyc-masks", "packnet")),
    "pmnist10/warm-start": ("pmnist10", {
        "PackNet, its preset (`reinit` zero)": (None, "packnet"),
        "`anpyc-masks`, its preset (`reinit` keep)": (None, "anpyc-masks"),
        "PackNet, `reinit` keep": ("packnet-reinit-keep", "packnet"),
        "`anpyc-masks`, `reinit` zero": ("anpyc-masks-reinit-zero", "anpyc-masks"),
    }, None),
    "pmnist10-domain/warm-start": ("pmnist10-domain", {
        "PackNet+inference, its preset (`reinit` zero)": (None, "packnet+inference"),
        "`anpyc-masks+inference`, its preset (`reinit` keep)": (None, "anpyc-masks+inference"),
        "PackNet+inference, `reinit` keep": ("packnet-inference-reinit-keep", "packnet+inference"),
    }, ("packnet+inference", "anpyc-masks+inference")),
}


@pytest.mark.parametrize("record", sorted(WARM_START))
def test_warm_start_credit_tables_are_their_benches_figures(record):
    """docs/benchmarks/{long/masks-credit,pmnist10/warm-start,pmnist10-domain/warm-start}: every
    row of the table carries its bench's ACC (mean ± std), validation ACC, and the difference and
    Welch p against the rows it is compared with, as read from the committed bench.json files."""
    base_name, rows, refs = WARM_START[record]
    folder, base = ROOT / "docs" / "benchmarks" / record, ROOT / "docs" / "benchmarks" / base_name
    table = _table_rows((folder / "README.md").read_text(encoding="utf-8"))
    for label, (sub, method) in rows.items():
        row = _bench_row(folder / sub if sub else base, method)
        compared = refs or (method, "si")  # pmnist10/warm-start: against the row's own preset and SI
        expected = [f"{100 * row['avg_acc']['mean']:.1f} \u00b1 {100 * row['avg_acc']['std']:.1f}",
                    f"{100 * row['val_avg_acc']['mean']:.1f}",
                    *("" if sub is None and m == method else _against(row, _bench_row(base, m)) for m in compared)]
        assert table[label] == expected, (record, label)


def test_baselines_warm_start_table_is_the_records_figures():
    """docs/baselines.md, "PackNet: the warm start": each row's ACC on pmnist10 and over 50 tasks
    (mean ± std) and, for a changed setting, Welch's p against the method's preset, from the
    records' bench.json files."""
    from anpyc.report.stats import format_p, welch_t_test

    bench = ROOT / "docs" / "benchmarks"
    where = {  # row -> (method, the pmnist10 folder, the 50-task folder; None: the protocol's bench)
        "PackNet, its preset (`reinit` zero)": ("packnet", None, None),
        "PackNet, `reinit` keep": ("packnet", "pmnist10/warm-start/packnet-reinit-keep",
                                   "long/masks-credit/packnet-reinit-keep"),
        "`anpyc-masks`, its preset (`reinit` keep)": ("anpyc-masks", None, None),
        "`anpyc-masks`, `reinit` zero": ("anpyc-masks", "pmnist10/warm-start/anpyc-masks-reinit-zero",
                                         "long/masks-credit/reinit-zero"),
    }
    text = (ROOT / "docs" / "baselines.md").read_text(encoding="utf-8")
    section = text[text.index("## PackNet: the warm start"):text.index("## HAT")]
    table = _table_rows(section)
    for label, (method, *folders) in where.items():
        expected = []
        for protocol, folder in zip(("pmnist10", "long"), folders):
            preset, row = _bench_row(bench / protocol, method), _bench_row(bench / (folder or protocol), method)
            cell = f"{100 * row['avg_acc']['mean']:.1f} \u00b1 {100 * row['avg_acc']['std']:.1f}"
            if folder:
                welch = welch_t_test(row["avg_acc"], preset["avg_acc"], row["n_seeds"], preset["n_seeds"])
                cell += f" ({format_p(welch.p)})"
            expected.append(cell)
        assert table[label] == expected, label


def test_penalty_step_takes_the_penalised_minimiser_and_leaves_anpyc_as_it_was(tmp_path):
    """docs/scripts/penalty_step.py (the proximal-step exploration of docs/anpyc.md): the step
    solves ``(θ - θ')² / (2 lr) + λ Ω (θ - θ*)²`` per weight, a run under both changes finishes,
    and the library's ANPyC is itself again afterwards."""
    import torch

    from anpyc.methods.anpyc import ANPyC, ANPyCConfig

    script = load_script(ROOT / "docs" / "scripts" / "penalty_step.py")
    method, weight = ANPyC(ANPyCConfig(lam=2.0)), torch.nn.Parameter(torch.tensor([1.0, 3.0]))

    class Body:
        def shared_parameters(self):
            return [("w", weight)]

    method._set("omega", "w", torch.tensor([0.0, 0.5]))
    method._set("theta_star", "w", torch.tensor([0.0, 1.0]))
    script.proximal_(method, Body(), lr=0.5)  # c = 2 * 0.5 * 2 * Ω = (0, 1)
    assert weight.tolist() == [1.0, 2.0]
    saved, saved_merge = (ANPyC.penalty, ANPyC.after_step, ANPyC.estimate_importance), ANPyC.merge_importance
    argv = ["--proximal", "--head-scale", "0.5", "--", "run", "--method", "anpyc", "--benchmark", "blobs",
            "--tasks", "2", "--epochs", "1", "--scenario", "domain", "--param", "importance_samples=64",
            "--param", "lam=100", "--quiet", "--out", str(tmp_path / "run")]
    assert script.main(argv) == 0
    assert (ANPyC.penalty, ANPyC.after_step, ANPyC.estimate_importance) == saved
    mean_argv = [a.replace("lam=100", "lam=0.1") for a in argv[3:-1]]  # Ω of mean 1: a smaller λ
    means_file = tmp_path / "means.json"
    assert script.main(["--task-mean", "--omega-means", str(means_file), *mean_argv, str(tmp_path / "task-mean")]) == 0
    assert (ANPyC.penalty, ANPyC.after_step, ANPyC.estimate_importance) == saved
    means = json.loads(means_file.read_text())  # each task's Ω mean, before the division
    assert len(means) == 2 and all(m > 0 for m in means)
    with pytest.MonkeyPatch.context() as mp:  # each task's Ω divided by its mean, the head's scaled first
        mp.setattr(ANPyC, "estimate_importance",
                   lambda self, *a: {"body": torch.tensor([1.0, 3.0]), "heads.0.weight": torch.tensor([8.0])})
        with script.patched(False, 0.5, task_mean=True):
            scaled = ANPyC.estimate_importance(method, None, None, None)
    assert {n: v.tolist() for n, v in scaled.items()} == {"body": [0.375, 1.125], "heads.0.weight": [1.5]}
    method._set("omega", "w", torch.tensor([2.0, 4.0]))
    with script.patched(False, 1.0, decay=0.5):  # online EWC's running sum: Ω <- G Ω + Ω_t
        method.merge_importance({"w": torch.tensor([1.0, 1.0])})
    assert method.omega("w").tolist() == [2.0, 3.0] and ANPyC.merge_importance is saved_merge
    assert script.main(["--decay", "0.9", *argv[3:-1], str(tmp_path / "decay")]) == 0
    with pytest.raises(SystemExit) as refused:  # worker processes would load the library unchanged
        script.main(["--proximal", "--", "compare", "--jobs=2", "--out", str(tmp_path / "jobs")])
    assert refused.value.code == 2 and not (tmp_path / "jobs").exists()
    with pytest.raises(SystemExit) as refused:
        script.main(["--decay", "0", "--", "compare", "--out", str(tmp_path / "zero")])
    assert refused.value.code == 2 and not (tmp_path / "zero").exists()


def test_same_code_tells_annotations_from_code(tmp_path):
    import subprocess

    script = load_script(ROOT / "docs" / "scripts" / "same_code.py")
    bare = "def f(x, n=2):\n    return x * n\n"
    typed = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
             "    from torch import Tensor\n\ndef f(x: Tensor, n: int = 2) -> Tensor:\n    return x * n\n")
    assert script.code_tree(bare) == script.code_tree(typed)
    assert script.code_tree(bare) != script.code_tree(bare.replace("n=2", "n=3"))
    documented = '"""A module."""\nclass C:\n    """A class."""\n\ndef f(x, n=2):\n    """Twice."""\n    return x * n\n'
    assert script.code_tree(documented) == script.code_tree('class C:\n    pass\n' + bare)
    assert script.code_tree(bare) != script.code_tree(bare.replace("x * n", "'x * n'"))
    # a package name imported for a hint alone may move under TYPE_CHECKING; other imports count
    hinted = "from anpyc.data import TaskData, iterate\ndef f(x: TaskData, n=2):\n    return iterate(x) * n\n"
    moved = ("from typing import TYPE_CHECKING\nfrom anpyc.data import iterate\nif TYPE_CHECKING:\n"
             "    from anpyc.data import TaskData\ndef f(x: TaskData, n=2):\n    return iterate(x) * n\n")
    assert script.code_tree(hinted) == script.code_tree(moved)
    assert script.code_tree(moved) != script.code_tree(moved.replace("iterate(x)", "x"))
    assert script.code_tree(bare) != script.code_tree("import numpy\n" + bare)
    assert script.code_tree(bare) != script.code_tree("from numpy import pi\n" + bare)
    exported = "from anpyc.data import TaskData\n__all__ = ['TaskData']\n"
    # a local variable's hint and a static Protocol's body are types only; a dataclass field is not
    local = "def g():\n    seen: list[int] = []\n    return seen\n"
    assert script.code_tree(local) == script.code_tree(local.replace("list[int]", "list"))
    field = "class D:\n    x: int = 0\n"
    assert script.code_tree(field) != script.code_tree(field.replace("int", "float"))
    proto = "from typing import Protocol\nclass P(Protocol):\n    x: bool\n"
    assert script.code_tree(proto) == script.code_tree(proto.replace("x: bool", "def x(self): ..."))
    checked = "@runtime_checkable\n" + proto.split("\n", 1)[1]
    overloaded = "from typing import overload\n@overload\ndef f(x: int) -> int: ...\n" + bare
    assert script.code_tree(overloaded) == script.code_tree(bare)
    assert script.code_tree(checked) != script.code_tree(checked.replace("x: bool", "y: bool"))
    assert script.code_tree(exported) != script.code_tree("__all__ = ['TaskData']\n")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True)

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(bare)
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "a")
    (tmp_path / "src" / "a.py").write_text(typed)
    assert script.differing_files(tmp_path, "HEAD") == (["src/a.py"], [])
    (tmp_path / "src" / "a.py").write_text(typed.replace("x * n", "x + n"))
    assert script.differing_files(tmp_path, "HEAD") == (["src/a.py"], ["src/a.py"])
    assert script.main(["no-such-commit-x"]) == 2 and script.main([]) == 2


def test_ablation_table_reads_either_stage_and_signs_a_mechanism_added_back(tmp_path):
    """A row that removes a mechanism earns it its place when the base is better; a row of the
    second stage that adds one back, when that row is better."""
    table = load_script(ROOT / "docs" / "scripts" / "ablation_table.py")

    def acc(mean: float) -> dict:
        return {"avg_acc": {"mean": mean, "std": 0.001}, "n_seeds": 3}

    (tmp_path / "bench.json").write_text(json.dumps({"methods": {
        "anpyc-default": acc(0.90), "with-structure": acc(0.92), "with-pruning": acc(0.88), "finetune": acc(0.85),
        "omega-magnitude": acc(0.90)}}))
    found = {row: v[2] for row, v in table.verdicts(tmp_path).items()}
    assert found == {"with-structure": "earns its place", "with-pruning": "costs accuracy",
                     "finetune": "earns its place", "omega-magnitude": "within noise"}


def test_taylor_forms_scores_every_task_with_both_forms_and_the_fisher():
    """docs/scripts/taylor_forms.py, behind docs/benchmarks/ablation-default/taylor-form: one
    row per task, the correlations in [-1, 1], a form perfectly rank-correlated with itself."""
    import numpy as np

    from anpyc.config import RunConfig

    script = load_script(ROOT / "docs" / "scripts" / "taylor_forms.py")
    config = RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs", "tasks": 2, "subsample": 200},
                                  "train": {"epochs": 1, "threads": 1}})
    rows = script.compare_forms(config, samples=100)
    assert len(rows) == 2 and all(r["parameters"] > 0 for r in rows)
    assert all(-1 <= r[k] <= 1 for r in rows for k in r if k.startswith("rho"))
    assert all(0 <= r[k] <= 1 for r in rows for k in ("zero_removal", "zero_authors", "top_removal", "top_authors"))
    scores = np.arange(50.0)
    assert script.rank_correlation(scores, scores) == pytest.approx(1.0) and script.top_share(scores, scores) == 1.0
