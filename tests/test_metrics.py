import math

import numpy as np
import pytest

from anpyc import metrics

NAN = float("nan")
R3 = [[0.9, NAN, NAN], [0.8, 0.95, NAN], [0.7, 0.9, 0.85]]


def test_average_accuracy_last_row():
    assert metrics.average_accuracy(R3) == pytest.approx((0.7 + 0.9 + 0.85) / 3)


def test_bwt_hand_computed():
    assert metrics.bwt(R3) == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0: best before last = 0.9, final 0.7; task 1: best 0.95, final 0.9
    assert metrics.forgetting(R3) == pytest.approx((0.2 + 0.05) / 2)


def test_fwt():
    assert metrics.fwt([0.1, 0.5, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(0.15)
    assert math.isnan(metrics.fwt([0.5], [0.1]))


def test_partial_matrix_uses_last_trained_row():
    R = [[0.9, NAN, NAN], [0.8, 0.95, NAN], [NAN, NAN, NAN]]
    assert metrics.average_accuracy(R) == pytest.approx(0.875)
    assert metrics.bwt(R) == pytest.approx(-0.1)


def test_curve_and_single_task():
    assert metrics.average_accuracy_curve(R3) == pytest.approx([0.9, 0.875, 0.8166666])
    assert metrics.bwt([[0.5]]) == 0.0 and metrics.forgetting([[0.5]]) == 0.0


def test_input_not_modified():
    R = np.array(R3)
    before = R.copy()
    metrics.summarize(R)
    np.testing.assert_array_equal(R, before)


@pytest.mark.parametrize("bad", [[[0.5, 0.2]], [[1.5]], [[-0.1]]])
def test_bad_matrices_rejected(bad):
    with pytest.raises(ValueError):
        metrics.average_accuracy(bad)


def test_kurtosis_gaussian_near_three():
    rng = np.random.default_rng(0)
    assert metrics.kurtosis(rng.normal(size=200_000)) == pytest.approx(3.0, abs=0.05)


def test_a_matrix_with_no_evaluated_task_and_mismatched_transfer_inputs_are_refused():
    with pytest.raises(ValueError, match="accuracy matrix has no evaluated task"):
        metrics.average_accuracy(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="acc_before and baseline must have the same length"):
        metrics.fwt([0.1, 0.2], [0.1])


def test_too_few_values_give_nan_not_a_number_that_looks_measured():
    assert math.isnan(metrics.kurtosis([1.0])) and math.isnan(metrics.kurtosis([2.0, 2.0]))  # one value; no spread
    empty = metrics.weight_distribution([])
    assert all(math.isnan(empty[k]) for k in ("zero_share", "near_zero_share", "bimodality", "kurtosis"))
    assert empty["hist_counts"] == [] and math.isnan(metrics.fwt([0.5], [0.1]))


def test_forgetting_is_negative_for_a_task_that_ends_above_its_best_earlier_accuracy():
    R = [[0.5, NAN, NAN], [0.4, 0.9, NAN], [0.8, 0.9, 0.7]]  # task 0 peaks at 0.5 before the last task, ends at 0.8
    assert metrics.forgetting(R) == pytest.approx((-0.3 + 0.0) / 2)
