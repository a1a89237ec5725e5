import json
import shutil

import pytest
from report_fakes import METHODS, make_record_dir

from anpyc.errors import OutputError
from anpyc.report.load import load_results


def test_run_dir(run_dir):
    res = load_results(run_dir)
    assert res.kind == "run" and res.methods == ["anpyc"]
    assert res.seeds == [0] and res.n_tasks == 4 and res.benchmark == "blobs"
    assert res.runs["anpyc"][0].config["meta"]["git_commit"].endswith("-dirty")


def test_compare_dir_keeps_the_comparison_order(compare_dir):
    res = load_results(compare_dir)
    assert res.kind == "compare" and res.methods == list(METHODS)
    assert res.seeds == [0, 1]
    assert [r.seed for r in res.runs["ewc"]] == [0, 1]


def test_unfinished_runs_are_skipped_and_unlisted_methods_found(compare_dir):
    (compare_dir / "ewc" / "seed_1" / "metrics.json").unlink()
    (compare_dir / "finetune" / "seed_0" / "metrics.json").write_text("{not json")
    shutil.copytree(compare_dir / "packnet", compare_dir / "extra")
    for seed_dir in (compare_dir / "extra").iterdir():
        m = json.loads((seed_dir / "metrics.json").read_text())
        (seed_dir / "metrics.json").write_text(json.dumps({**m, "method": "extra"}))
    res = load_results(compare_dir)
    assert [r.seed for r in res.runs["ewc"]] == [0]
    assert [r.seed for r in res.runs["finetune"]] == [1]
    assert res.methods[-1] == "extra"


def test_not_a_results_dir(tmp_path):
    with pytest.raises(OutputError, match="neither a run directory"):
        load_results(tmp_path)
    with pytest.raises(OutputError, match="not a directory"):
        load_results(tmp_path / "missing")
    (tmp_path / "compare.yaml").write_text("methods: [a]\n")
    with pytest.raises(OutputError, match="no finished run"):
        load_results(tmp_path)


def test_an_unfinished_run_says_how_to_finish_it(run_dir, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(run_dir, killed)
    (killed / "metrics.json").unlink()  # killed before its metrics were written
    with pytest.raises(OutputError, match=r"killed holds an unfinished run \(no metrics.json\): continue it with "
                                          r"`anpyc run --resume .*killed`, then report it"):
        load_results(killed)


def test_a_tuning_folder_is_refused_naming_its_table(tmp_path):
    """``anpyc report`` on a tuning's folder said it was neither a run nor a comparison; its
    table is there already, and each of its runs reports alone."""
    from anpyc import rundir

    (tmp_path / rundir.TUNE).write_text("tune: ewc\n")
    with pytest.raises(OutputError, match=r"holds a tuning: its table is .*tune\.md .*report one of its runs") as err:
        load_results(tmp_path)
    assert "\n" not in str(err.value)


def test_a_committed_record_reads_its_runs_folder(tmp_path):
    """docs/benchmarks/NAME keeps bench.json and compare.yaml beside runs/<label>/seed_<s>."""
    record = make_record_dir(tmp_path / "record")
    res = load_results(record)
    assert res.kind == "compare" and res.methods == list(METHODS) and res.seeds == [0, 1]
    assert res.runs["ewc"][0].path == record / "runs" / "ewc" / "seed_0"
    assert res.summary["benchmark"] == "recorded"  # bench.json stands for summary.json
    (record / "bench.json").unlink()  # a comparison's record, not a suite's: no summary, the same runs
    assert load_results(record).runs.keys() == res.runs.keys()
    (record / "runs" / "ewc").rename(record / "ewc")  # runs beside compare.yaml: those are the comparison's
    assert load_results(record).methods == ["ewc"]
