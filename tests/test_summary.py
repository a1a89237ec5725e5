"""The summary figures of finished runs, on hand-made metrics."""

import math

import pytest

from anpyc.summary import acc_slope, learning_accuracy, method_summary, stat, time_ratio


def _run(seed: int, acc: list[list], time_s: float, **extra) -> dict:
    return {"seed": seed, "acc_matrix": acc, "avg_acc_curve": [row[0] if i == 0 else sum(row[: i + 1]) / (i + 1)
                                                              for i, row in enumerate(acc)],
            "time_s": time_s, "task_time_s": [time_s / 2] * 2, "task_eval_time_s": [0.5, 0.5], "passes": [1.0, 1.0],
            **extra}


def test_stat_uses_the_sample_std_and_drops_what_is_not_a_number():
    assert stat([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2))}
    assert stat([2.0, None, float("nan"), "x", True]) == {"mean": 2.0, "std": 0.0}
    assert stat([]) == {"mean": None, "std": None}


def test_time_ratio_pairs_seeds_and_skips_missing_ones():
    runs = [{"seed": 0, "time_s": 6.0}, {"seed": 1, "time_s": 9.0}, {"seed": 2, "time_s": 1.0}]
    assert time_ratio(runs, [{"seed": 0, "time_s": 3.0}, {"seed": 1, "time_s": 3.0}]) == [2.0, 3.0]
    assert time_ratio(runs, None) == []


def test_slope_and_learning_accuracy():
    assert acc_slope([0.9, 0.8, 0.7]) == pytest.approx(-0.1)
    assert acc_slope([0.9]) is None
    assert learning_accuracy({"acc_matrix": [[0.9, None], [0.5, 0.7]]}) == [0.9, 0.7]


def test_method_summary_on_two_seeds():
    runs = [_run(0, [[0.9, None], [0.5, 0.7]], 4.0, task_inference_acc=0.8, task_inference_cost={"memory_mb": 0.5}),
            _run(1, [[0.8, None], [0.6, 0.6]], 6.0, task_inference_acc=0.6, task_inference_cost={"memory_mb": 0.5})]
    ref = [{"seed": 0, "time_s": 2.0}, {"seed": 1, "time_s": 3.0}]
    s = method_summary(runs, ref)
    assert s["time_ratio_finetune"]["mean"] == 2.0
    assert s["learning_acc"]["mean"] == pytest.approx(0.75)  # (0.8 + 0.7) / 2
    assert s["learning_acc_per_task"] == pytest.approx([0.85, 0.65])
    assert s["task1_acc_curve"] == pytest.approx([0.85, 0.55])
    assert s["task_inference_acc"]["mean"] == pytest.approx(0.7) and s["task_inference_memory_mb"]["mean"] == 0.5
    assert s["passes_per_task"]["mean"] == 1.0
