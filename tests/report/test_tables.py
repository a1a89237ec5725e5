import math
import re

import numpy as np
from report_fakes import METHODS

from anpyc.report.load import load_results
from anpyc.report.tables import (
    extras_table,
    fmt_stat,
    markdown_table,
    matrix_table,
    mean_matrix,
    polarisation_table,
    summary_table,
)


def test_fmt_stat():
    assert fmt_stat([0.91, 0.93], 100) == "92.0 ± 1.4"  # sample std, ddof=1
    assert fmt_stat([0.5], 100) == "50.0"
    assert fmt_stat([None, float("nan"), "x"]) == "-"
    assert fmt_stat([-0.0001], 100) == "0.0"


def test_markdown_table_escapes_pipes():
    assert markdown_table(["a|b"], [["1"]]).splitlines() == ["| a\\|b |", "|---|", "| 1 |"]


def test_summary_table_means_over_seeds(compare_dir):
    res = load_results(compare_dir)
    header, rows = summary_table(res)
    by = {r[0]: dict(zip(header, r)) for r in rows}
    assert list(by) == list(METHODS)
    acc = [r.metrics["avg_acc"] for r in res.runs["anpyc"]]
    assert by["anpyc"]["ACC %"] == f"{100 * np.mean(acc):.1f} ± {100 * np.std(acc, ddof=1):.1f}"
    assert by["anpyc"]["seeds"] == "2"
    # time_s is 2 + seed for every method: ratio to fine-tune on the same seed is exactly 1
    assert by["ewc"]["time / fine-tune"] == "1.00 ± 0.00"
    assert by["ewc"]["peak RSS MiB"] == "305 ± 7"


def test_extras_table_only_lists_methods_with_extras(compare_dir):
    header, rows = extras_table(load_results(compare_dir))
    by = {r[0]: r for r in rows}
    assert set(by) == {"anpyc", "packnet", "ewc"}
    # two identical seeds: std 0; anpyc's free_fraction_total; kurtosis 3 + 2 * 4 after the last task
    assert by["anpyc"][1] == "25.0 ± 0.0" and by["anpyc"][2] == "11.00 ± 0.00"
    assert by["packnet"][1] == "40.0 ± 0.0"  # free_fraction_total, one shape for every mask method
    assert by["ewc"][1] == "-" and by["ewc"][2] == "7.00 ± 0.00" and by["ewc"][3] == "25.0 ± 0.0"


def test_extras_table_none_without_extras(compare_dir):
    res = load_results(compare_dir)
    res.runs = {"finetune": res.runs["finetune"]}
    assert extras_table(res) is None


def test_mean_matrix_keeps_unevaluated_cells_nan(compare_dir):
    runs = load_results(compare_dir).runs["finetune"]
    m = mean_matrix(runs)
    assert m.shape == (4, 4) and np.isnan(m[0, 1]) and np.isnan(m[2, 3])
    a = [r.metrics["acc_matrix"][3][0] for r in runs]
    assert math.isclose(m[3, 0], np.mean(a))
    header, rows = matrix_table(m)
    assert header[0] == "after task" and rows[0][2] == "" and rows[3][1] == f"{100 * m[3, 0]:.1f}"


def test_mean_matrix_of_nothing():
    assert mean_matrix([]) is None


def test_long_sequence_table_separates_training_from_evaluation_time():
    from anpyc.report.tables import summary_markdown

    def stat(v):
        return {"mean": v, "std": 0.0}

    entry = {key: stat(0.5) for key in ("avg_acc", "bwt", "forgetting", "val_avg_acc", "time_s")}
    entry.update(
        task1_acc_curve=[0.9] * 20, acc_slope_per_task=stat(-0.0004), train_time_first_s=stat(2.0),
        train_time_last_s=stat(2.1), eval_time_first_s=stat(0.1), eval_time_last_s=stat(0.6),
        peak_rss_mb=stat(456.0), free_fraction_total=0.03,
    )
    text = summary_markdown({"benchmark": "permuted-mnist", "n_tasks": 20, "seeds": [0], "methods": {"anpyc": entry}})
    header = next(line for line in text.splitlines() if "task 1 after 10" in line)
    assert "train s/task first 10" in header and "eval s/task first 10" in header and "peak MiB" in header
    assert "| anpyc | 90.0 | 90.0 | -0.040 | 2.0 | 2.1 | 0.1 | 0.6 | 456 | 3.0 |" in text


def test_learning_table_puts_each_method_beside_finetune(compare_dir):
    from anpyc.report.tables import learning_table

    header, rows = learning_table(load_results(compare_dir))
    assert header[0] == "method" and header[-1] == "mean"
    assert {r[0] for r in rows} >= {"finetune", "anpyc"} and all(len(r) == len(header) for r in rows)


def test_guard_table_lists_each_guarded_pruning(compare_dir):
    from anpyc.report.tables import guard_table

    header, rows = guard_table(load_results(compare_dir))
    assert rows == [["anpyc", "0", "95.0", "90.0", "94.0", "0.15", "0.3", ""]]


def test_a_summary_claims_a_lead_only_beyond_both_standard_deviations():
    from anpyc.report.tables import summary_markdown

    def entry(acc):
        zero = {"mean": 0.0, "std": 0.0}
        return {"avg_acc": acc, "bwt": zero, "forgetting": zero, "val_avg_acc": acc, "time_s": zero}

    def summary(seeds, a, b):
        return {"benchmark": "blobs", "n_tasks": 2, "seeds": seeds, "methods": {"x": entry(a), "y": entry(b)}}

    wide = summary([0, 1, 2], {"mean": 0.90, "std": 0.02}, {"mean": 0.89, "std": 0.01})
    assert re.search(r"Best ACC: x\. Ahead, by both standard deviations and Welch's p < 0\.05, of: none\. "
                     r"Not separable from it \(not claimed to be behind\): y \(p 0\.[0-9]{3}\)\.", summary_markdown(wide))
    clear = summary([0, 1, 2], {"mean": 0.90, "std": 0.002}, {"mean": 0.89, "std": 0.001})
    assert "of: y (p 0.0" in summary_markdown(clear) and "(not claimed to be behind): none." in summary_markdown(clear)
    # beyond both std but not by Welch (3 seeds, a wide spread on one side): not claimed
    std_only = summary([0, 1, 2], {"mean": 0.90, "std": 0.001}, {"mean": 0.85, "std": 0.045})
    assert "of: none." in summary_markdown(std_only) and "(not claimed to be behind): y (p 0." in summary_markdown(std_only)
    one = summary([0], {"mean": 0.90, "std": None}, {"mean": 0.80, "std": None})
    assert "from one seed: no method is claimed ahead" in summary_markdown(one)
    # by Welch but within both std (many seeds, a small difference): not claimed either
    welch_only = summary(list(range(100)), {"mean": 0.92, "std": 0.01}, {"mean": 0.915, "std": 0.01})
    assert "of: none." in summary_markdown(welch_only) and "behind): y (p < 0.001)." in summary_markdown(welch_only)
    # an upper bound (joint training) is never the best a method is measured against
    bounded = summary([0, 1, 2], {"mean": 0.90, "std": 0.002}, {"mean": 0.89, "std": 0.001})
    bounded["methods"]["joint"] = {**entry({"mean": 0.99, "std": 0.001}), "upper_bound": True}
    assert "Best ACC: x." in summary_markdown(bounded) and "joint (p" not in summary_markdown(bounded)


def test_a_summary_judges_each_row_by_its_own_seeds():
    """A row one of whose seeds stopped is compared with the seeds it has, not the planned ones."""
    from anpyc.report.stats import format_p, welch_t_test
    from anpyc.report.tables import summary_markdown

    zero = {"mean": 0.0, "std": 0.0}
    a, b = {"mean": 0.90, "std": 0.002}, {"mean": 0.89, "std": 0.003}
    rows = {"x": {"avg_acc": a, "n_seeds": 5}, "y": {"avg_acc": b, "n_seeds": 2}}
    for row in rows.values():
        row.update(bwt=zero, forgetting=zero, val_avg_acc=row["avg_acc"], time_s=zero)
    text = summary_markdown({"benchmark": "blobs", "n_tasks": 2, "seeds": [0, 1, 2, 3, 4], "methods": rows})
    assert welch_t_test(a, b, 5, 2).p != welch_t_test(a, b, 5, 5).p
    assert f"y ({format_p(welch_t_test(a, b, 5, 2).p)})" in text
    # a row left with one seed has no test: level, said so (it crashed the summary before)
    rows["y"]["n_seeds"] = 1
    text = summary_markdown({"benchmark": "blobs", "n_tasks": 2, "seeds": [0, 1, 2, 3, 4], "methods": rows})
    assert "Not separable from it (not claimed to be behind): y (one seed, no test)." in text


def test_polarisation_table_lists_methods_with_a_weight_distribution(compare_dir):
    header, rows = polarisation_table(load_results(compare_dir))
    assert header[0] == "method" and [r[0] for r in rows] == ["anpyc", "ewc"]  # finetune, packnet: none recorded
    assert rows[1][1:] == ["7.0 ± 0.0", "0.0 ± 0.0", "4.0 ± 0.0", "0.40 ± 0.00", "3.5 ± 0.0"]
    assert rows[0][2:4] == ["30.0 ± 0.0", "35.0 ± 0.0"]


def test_summary_heading_says_no_run_finished_instead_of_zero_tasks():
    """A comparison whose every run failed (bench reference diverges) has no matrix to count tasks from."""
    from anpyc.report.tables import summary_markdown

    text = summary_markdown({"benchmark": "permuted-mnist", "n_tasks": 0, "seeds": [0], "methods": {}})
    assert text.startswith("# permuted-mnist, no run finished, seeds [0]\n")
    two = summary_markdown({"benchmark": "blobs", "n_tasks": 2, "seeds": [0], "methods": {}})
    assert two.startswith("# blobs, 2 tasks, seeds [0]\n")
