"""Significance of a difference between two methods' results over seeds: Welch's t-test.

The project's rule for "ahead"/"behind" is a difference larger than both standard deviations
(:func:`anpyc.summary.clearly_ahead`); tables put Welch's unequal-variance t-test beside it, so
a reader can see where the two agree. Computed from the summary (mean, sample std, seeds), as
the committed ``bench.json`` files hold them; no SciPy needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from anpyc.summary import clearly_ahead

__all__ = ["Standing", "Welch", "format_p", "standing", "student_t_two_sided_p", "welch_t_test"]


@dataclass(frozen=True)
class Welch:
    """Welch's t statistic of ``a - b``, its degrees of freedom and the two-sided p-value."""

    t: float
    df: float
    p: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p < alpha


def welch_t_test(a: dict, b: dict, n_a: int, n_b: int) -> Welch | None:
    """Welch's t-test of two summaries ``{"mean", "std"}`` (sample std, ``ddof=1``) over
    ``n_a`` and ``n_b`` seeds; ``None`` with fewer than two seeds on either side.

    Example:
        >>> w = welch_t_test({"mean": 0.92, "std": 0.003}, {"mean": 0.91, "std": 0.004}, 5, 5)
        >>> round(w.t, 2), round(w.df, 1), w.p < 0.01
        (4.47, 7.4, True)
    """
    if min(n_a, n_b) < 2 or a.get("mean") is None or b.get("mean") is None:
        return None
    va, vb = (a.get("std") or 0.0) ** 2 / n_a, (b.get("std") or 0.0) ** 2 / n_b
    diff = a["mean"] - b["mean"]
    if va + vb == 0.0:  # no spread at all: any difference is certain, none is none
        return Welch(math.copysign(math.inf, diff) if diff else 0.0, float(n_a + n_b - 2), 0.0 if diff else 1.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    return Welch(t, df, student_t_two_sided_p(t, df))


@dataclass(frozen=True)
class Standing:
    """The best row and the others, split by the project's claim rule: ``ahead`` holds the rows
    it beats by both rules (a difference beyond both standard deviations and Welch's p < 0.05),
    ``level`` the rest (not claimed to be behind), each with its Welch test."""

    best: str
    ahead: tuple[tuple[str, Welch], ...]
    level: tuple[tuple[str, Welch | None], ...]


def standing(rows: Sequence[tuple[str, dict, int]]) -> Standing | None:
    """Which of ``rows`` (label, ACC summary ``{"mean", "std"}``, seeds) the best one is ahead of
    by both rules; ``None`` with fewer than two rows. A row with one seed is never beaten.

    Example:
        >>> s = standing([("a", {"mean": 0.92, "std": 0.003}, 5), ("b", {"mean": 0.91, "std": 0.004}, 5),
        ...               ("c", {"mean": 0.915, "std": 0.01}, 5)])
        >>> s.best, [label for label, _ in s.ahead], [label for label, _ in s.level]
        ('a', ['b'], ['c'])
    """
    if len(rows) < 2:
        return None
    best, best_stat, best_n = max(rows, key=lambda row: row[1]["mean"])
    ahead: list[tuple[str, Welch]] = []
    level: list[tuple[str, Welch | None]] = []
    for label, stat, n in rows:
        if label == best:
            continue
        welch = welch_t_test(best_stat, stat, best_n, n)
        if welch is not None and welch.significant() and clearly_ahead(best_stat, stat):
            ahead.append((label, welch))
        else:
            level.append((label, welch))
    return Standing(best, tuple(ahead), tuple(level))


def format_p(p: float) -> str:
    """How tables print a p-value.

    Example:
        >>> format_p(0.0123), format_p(2e-5)
        ('p 0.012', 'p < 0.001')
    """
    return "p < 0.001" if p < 0.001 else f"p {p:.3f}"


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom: the regularised incomplete
    beta function I_x(df/2, 1/2) at x = df / (df + t^2).

    Example:
        >>> round(student_t_two_sided_p(2.228139, 10), 4)
        0.05
    """
    if math.isinf(t):
        return 0.0
    return _betai(df / 2.0, 0.5, df / (df + t * t))


def _betai(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # the continued fraction converges fast on this side of the mean; use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def _beta_continued_fraction(a: float, b: float, x: float, eps: float = 1e-14, tiny: float = 1e-300) -> float:
    """The continued fraction of the incomplete beta function by the modified Lentz method."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h
