import json
from pathlib import Path

import numpy as np
import pytest

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.experiments.reproduce import compare_matrices, reproduce
from anpyc.runner import run

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 150}, "model": {"hidden": [16]},
         "train": {"epochs": 2, "threads": 1}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "run"
    run(RunConfig.from_dict(BLOBS), out, quiet=True)
    return out


def test_compare_matrices():
    a = np.array([[0.5, np.nan], [0.25, 0.75]])
    assert compare_matrices(a, a.copy()) is None
    b = a.copy()
    b[1, 0] += 1e-12
    assert "1 cell(s) differ, largest at [1, 0]" in compare_matrices(a, b)
    assert compare_matrices(a, b, atol=1e-9) is None
    c = a.copy()
    c[0, 1] = 0.5
    assert "defined in only one" in compare_matrices(a, c)
    assert "shape" in compare_matrices(a, a[:1])


def test_reproduce_from_the_directory_alone(finished, tmp_path, capsys):
    assert main(["reproduce", str(finished), "--quiet", "--out", str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out.startswith("reproduced: acc_matrix and val_acc_matrix identical (2x2)")
    assert (tmp_path / "again" / "acc_matrix.csv").read_bytes() == (finished / "acc_matrix.csv").read_bytes()
    # a second time into the same --out: refused, as the error says, unless --overwrite
    assert main(["reproduce", str(finished), "--quiet", "--out", str(tmp_path / "again")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["reproduce", str(finished), "--quiet", "--out", str(tmp_path / "again"), "--overwrite"]) == 0
    assert capsys.readouterr().out.startswith("reproduced: ")
    assert main(["reproduce", str(finished), "--quiet", "--overwrite"]) == 2
    assert "reproduce --overwrite needs --out" in capsys.readouterr().err


def test_a_changed_result_is_reported_with_exit_1(finished, tmp_path, capsys):
    altered = tmp_path / "altered"
    altered.mkdir()
    (altered / "config.yaml").write_bytes((finished / "config.yaml").read_bytes())
    metrics = json.loads((finished / "metrics.json").read_text())
    metrics["acc_matrix"][1][0] += 0.125
    (altered / "metrics.json").write_text(json.dumps(metrics))
    assert main(["reproduce", str(altered), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT reproduced: acc_matrix: 1 cell(s) differ, largest at [1, 0]") and "val_acc" not in out
    report = reproduce(altered, quiet=True, atol=0.2)
    assert report.equal


def test_reproduce_refuses_unfinished_runs_and_its_own_directory(finished, tmp_path, capsys):
    unfinished = tmp_path / "u"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_bytes((finished / "config.yaml").read_bytes())
    assert main(["reproduce", str(unfinished)]) == 2
    assert "did not finish" in capsys.readouterr().err
    assert main(["reproduce", str(finished), "--out", str(finished)]) == 2
    capsys.readouterr()
    assert main(["reproduce", str(tmp_path / "typo")]) == 2
    assert capsys.readouterr().err.strip().endswith("typo: no such directory")


def test_a_different_machine_is_named_beside_a_difference(finished, tmp_path, capsys):
    """A run made where torch's kernels used other vector instructions may differ by a few
    predictions: the verdict says the capability changed, as it does for the library versions."""
    import yaml

    from anpyc.runner import cpu_capability, cpu_model, provenance

    assert provenance()["cpu_capability"] == cpu_capability() != ""
    assert provenance()["cpu_model"] == cpu_model()
    moved = tmp_path / "moved"
    moved.mkdir()
    config = yaml.safe_load((finished / "config.yaml").read_text())
    assert config["meta"]["cpu_capability"] == cpu_capability()
    config["meta"]["cpu_capability"] = "ELSEWHERE"
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = json.loads((finished / "metrics.json").read_text())
    metrics["acc_matrix"][0][0] -= 0.0625
    (moved / "metrics.json").write_text(json.dumps(metrics))
    assert main(["reproduce", str(moved), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"cpu_capability ELSEWHERE -> {cpu_capability()}" in out and "NOT reproduced" in out
    # the same instructions on another processor can round differently too: named as well
    config["meta"]["cpu_capability"] = cpu_capability()
    config["meta"]["cpu_model"] = "Another CPU"
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["reproduce", str(moved), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"cpu_model Another CPU -> {cpu_model()}" in out and "cpu_capability" not in out
    del config["meta"]["cpu_model"]  # a run older than the record: said so beside a difference
    (moved / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["reproduce", str(moved), "--quiet"]) == 1
    assert f"cpu_model not recorded -> {cpu_model()}" in capsys.readouterr().out


def test_a_reproduced_directory_records_the_budget_its_original_ran_under(tmp_path):
    """A run's config.yaml holds its epochs as run and, under meta, the pass budget they came
    from; the directory ``reproduce --out`` writes must record that budget too, or ``anpyc run
    --config`` of it would take the epochs as run for passes and train less."""
    import yaml

    common = ["--benchmark", "blobs", "--tasks", "2", "--subsample", "150", "--hidden", "16", "--threads", "1",
              "--quiet", "--no-report"]
    assert main(["run", "--method", "packnet", "--epochs", "2", *common, "--out", str(tmp_path / "orig")]) == 0
    assert main(["reproduce", str(tmp_path / "orig"), "--quiet", "--out", str(tmp_path / "again")]) == 0
    orig, again = (yaml.safe_load((tmp_path / d / "config.yaml").read_text()) for d in ("orig", "again"))
    assert orig["meta"]["budget"] == again["meta"]["budget"] == {"mode": "passes", "per_task": 2.0}
    assert orig["train"]["epochs"] == again["train"]["epochs"] < 2.0
    assert main(["run", "--method", "packnet", "--config", str(tmp_path / "again" / "config.yaml"), "--quiet",
                 "--no-report", "--out", str(tmp_path / "from-again")]) == 0
    rerun = json.loads((tmp_path / "from-again" / "metrics.json").read_text())
    assert rerun["acc_matrix"] == json.loads((tmp_path / "orig" / "metrics.json").read_text())["acc_matrix"]


def test_a_folder_of_runs_reproduces_every_finished_run_below_it(tmp_path, capsys):
    """The figures of a table are means over a comparison's runs: ``reproduce`` of its folder
    (or of one method's seeds) reruns each finished run, names the ones that differ (exit 1)
    and skips the unfinished ones, saying so."""
    from anpyc.experiments.compare import compare

    cmp = tmp_path / "cmp"
    compare(RunConfig.from_dict(BLOBS), ["finetune", "ewc"], [0, 1], cmp, quiet=True)
    assert main(["reproduce", str(cmp), "--quiet", "--out", str(tmp_path / "again")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "reproduced: all 4 runs identical"
    assert lines[:-1] == [f"{cmp / m / f'seed_{s}'}: reproduced: acc_matrix and val_acc_matrix identical (2x2)"
                          for m in ("ewc", "finetune") for s in (0, 1)]
    assert (tmp_path / "again" / "ewc" / "seed_1" / "acc_matrix.csv").read_bytes() == (cmp / "ewc" / "seed_1" / "acc_matrix.csv").read_bytes()
    assert main(["reproduce", str(cmp), "--quiet", "--jobs", "2"]) == 0  # two runs at a time, the same verdicts
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["reproduce", str(cmp), "--quiet", "--jobs", "2", "--out", str(tmp_path / "again")]) == 2  # one line
    assert capsys.readouterr().err.strip().endswith("already holds a run; choose another --out or pass --overwrite")
    metrics = json.loads((cmp / "ewc" / "seed_1" / "metrics.json").read_text())
    metrics["acc_matrix"][1][1] -= 0.25
    (cmp / "ewc" / "seed_1" / "metrics.json").write_text(json.dumps(metrics))
    (cmp / "finetune" / "seed_0" / "metrics.json").unlink()  # as a killed run leaves it
    assert main(["reproduce", str(cmp), "--quiet"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"NOT reproduced: 1 of 3 runs differ ({Path('ewc') / 'seed_1'}); 1 unfinished run(s) skipped")
    assert main(["reproduce", str(cmp / "ewc"), "--quiet"]) == 1  # one method's seeds
    assert capsys.readouterr().out.splitlines()[-1] == f"NOT reproduced: 1 of 2 runs differ ({Path('seed_1')})"
    assert main(["reproduce", str(cmp / "finetune" / "seed_0"), "--quiet"]) == 2  # one unfinished run
    assert main(["reproduce", str(cmp / "finetune"), "--quiet"]) == 0  # its other seed
    (cmp / "finetune" / "seed_1" / "metrics.json").unlink()
    assert main(["reproduce", str(cmp / "finetune"), "--quiet"]) == 2
    assert "holds no finished run (2 unfinished: anpyc run --resume DIR continues one)" in capsys.readouterr().err


@pytest.mark.parametrize("where, words", [
    ("empty", "holds no run (no config.yaml in it or below it)"),
    ("cmp/inside", "reproduce --out must lie outside the folder reproduced"),
])
def test_a_folder_of_runs_refuses_in_one_line(finished, tmp_path, capsys, where, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "cmp" / "a").mkdir(parents=True)
    for name in ("config.yaml", "metrics.json"):
        (tmp_path / "cmp" / "a" / name).write_bytes((finished / name).read_bytes())
    folder = tmp_path / ("empty" if where == "empty" else "cmp")
    assert main(["reproduce", str(folder), "--quiet", "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "cmp" / "inside").exists()


def test_a_run_that_stopped_of_itself_must_stop_again_the_same_way(tmp_path, capsys):
    """A diverged run is part of a table (its row is missing or made of the other seeds): where
    its failure is recorded, in run.log or in the comparison's (or a record's) failed list,
    reproduce reruns it and compares the message; a killed run, recorded nowhere, stays skipped."""
    import shutil

    from anpyc.experiments.compare import compare

    cmp = tmp_path / "cmp"
    summary = compare(RunConfig.from_dict(BLOBS), ["finetune", "ewc"], [0, 1], cmp, quiet=True,
                      params={"ewc": {"lam": 1e12}}, report=False)
    stop = summary["failed"][0]["error"]
    assert stop.startswith("non-finite loss") and len(summary["failed"]) == 2
    assert main(["reproduce", str(cmp), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{cmp / 'ewc' / 'seed_0'}: reproduced: stopped again as it did ({stop})"
    assert lines[-1] == "reproduced: all 4 runs (2 identical, 2 stopped again as they did)"
    # a committed record keeps no run.log: the failure is read from bench.json above runs/
    record = tmp_path / "record"
    shutil.copytree(cmp / "ewc", record / "runs" / "ewc", ignore=shutil.ignore_patterns("run.log"))
    (record / "bench.json").write_text((cmp / "summary.json").read_text())
    assert main(["reproduce", str(record / "runs" / "ewc" / "seed_1"), "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == f"reproduced: stopped again as it did ({stop})"
    # another message, or a run that now finishes: named, exit 1
    other = json.loads((record / "bench.json").read_text())
    other["failed"][0]["error"] = "non-finite loss (nan) in task 1, epoch 0"
    (record / "bench.json").write_text(json.dumps(other))
    assert main(["reproduce", str(record), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"stopped with {stop!r}, not 'non-finite loss (nan) in task 1, epoch 0'" in out
    assert out.splitlines()[-1] == f"NOT reproduced: 1 of 2 runs differ ({Path('runs') / 'ewc' / 'seed_0'})"
    (cmp / "finetune" / "seed_0" / "metrics.json").unlink()
    assert main(["reproduce", str(cmp / "finetune"), "--quiet"]) == 0  # killed, recorded nowhere: skipped
    assert capsys.readouterr().out.splitlines()[-1] == "reproduced: its one run identical; 1 unfinished run(s) skipped"
    (cmp / "finetune" / "seed_0" / "run.log").write_text(f"run failed: {stop}\n")
    assert main(["reproduce", str(cmp / "finetune" / "seed_0"), "--quiet"]) == 1
    assert capsys.readouterr().out.startswith("NOT reproduced: stop: finished (ACC ")
