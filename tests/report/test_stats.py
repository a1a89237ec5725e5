import math

import pytest

from anpyc.report.stats import student_t_two_sided_p, welch_t_test


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.706, 40.0])
def test_student_t_p_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    # df 1 is the Cauchy distribution, df 2 has P(|T| >= t) = 1 - t / sqrt(t^2 + 2)
    assert student_t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-10)
    assert student_t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-10)


@pytest.mark.parametrize(("t", "df", "p"), [(2.228139, 10, 0.05), (2.776445, 4, 0.05), (4.604095, 4, 0.01),
                                            (1.959964, 1e6, 0.05), (3.169273, 10, 0.01)])
def test_student_t_p_matches_the_tables_critical_values(t, df, p):
    assert student_t_two_sided_p(t, df) == pytest.approx(p, rel=1e-5)
    assert student_t_two_sided_p(-t, df) == pytest.approx(p, rel=1e-5)


def test_welch_by_hand():
    # a = [1, 2, 3] (mean 2, s 1), b = [4, 6, 8, 10] (mean 7, s 2.582): se^2 = 1/3 + 6.667/4
    w = welch_t_test({"mean": 2.0, "std": 1.0}, {"mean": 7.0, "std": math.sqrt(20 / 3)}, 3, 4)
    se2 = 1 / 3 + (20 / 3) / 4
    assert w.t == pytest.approx(-5 / math.sqrt(se2))
    assert w.df == pytest.approx(se2**2 / ((1 / 3) ** 2 / 2 + ((20 / 3) / 4) ** 2 / 3))
    assert w.significant() and 0.01 < w.p < 0.05


def test_welch_edge_cases():
    assert welch_t_test({"mean": 0.9, "std": 0.0}, {"mean": 0.8, "std": 0.1}, 1, 5) is None
    assert welch_t_test({"mean": 0.9, "std": 0.0}, {"mean": 0.9, "std": 0.0}, 3, 3).p == 1.0
    assert welch_t_test({"mean": 0.9, "std": 0.0}, {"mean": 0.8, "std": 0.0}, 3, 3).p == 0.0
    same = welch_t_test({"mean": 0.9, "std": 0.01}, {"mean": 0.9, "std": 0.02}, 5, 5)
    assert same.p == pytest.approx(1.0) and not same.significant()
