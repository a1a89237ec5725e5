"""Continual-learning metrics as pure functions of the accuracy matrix.

``R`` is T x T: ``R[i, j]`` is the accuracy (fraction 0..1) on task ``j`` after training task
``i``; cells not evaluated are NaN. No function modifies its input.

Example:
    >>> R = [[0.9, float("nan")], [0.7, 0.8]]
    >>> round(average_accuracy(R), 3), round(bwt(R), 3)
    (0.75, -0.2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _matrix(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    A = np.array(R, dtype=float)  # a copy: callers' objects are never written to
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"accuracy matrix must be square, got shape {A.shape}")
    finite = A[np.isfinite(A)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError("accuracies must be fractions in [0, 1]")
    return A


def _last_row(A: np.ndarray) -> int:
    """Index of the last task trained (the last row with its diagonal filled)."""
    done = [i for i in range(A.shape[0]) if np.isfinite(A[i, i])]
    if not done:
        raise ValueError("accuracy matrix has no evaluated task")
    return done[-1]


def average_accuracy(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """ACC = (1/T) sum_j R[T-1, j], over the tasks trained so far (Lopez-Paz & Ranzato 2017)."""
    A = _matrix(R)
    k = _last_row(A)
    return float(np.mean(A[k, : k + 1]))


def average_accuracy_curve(R: Sequence[Sequence[float]] | np.ndarray) -> list[float]:
    """ACC after each task: ``[mean(R[i, :i+1]) for i]`` (how accuracy decays with length)."""
    A = _matrix(R)
    k = _last_row(A)
    return [float(np.mean(A[i, : i + 1])) for i in range(k + 1)]


def bwt(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Backward transfer, (1/(T-1)) sum_{j<T-1} (R[T-1, j] - R[j, j]) (GEM, Lopez-Paz &
    Ranzato 2017). Negative means forgetting; 0.0 for a single task."""
    A = _matrix(R)
    k = _last_row(A)
    if k == 0:
        return 0.0
    return float(np.mean([A[k, j] - A[j, j] for j in range(k)]))


def forgetting(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Average forgetting (Chaudhry et al. 2018): for each old task, best accuracy it ever had
    before the last task minus its final accuracy, averaged. 0.0 for a single task."""
    A = _matrix(R)
    k = _last_row(A)
    if k == 0:
        return 0.0
    return float(np.mean([np.nanmax(A[j:k, j]) - A[k, j] for j in range(k)]))


def fwt(acc_before: Sequence[float], baseline: Sequence[float]) -> float:
    """Forward transfer (GEM): (1/(T-1)) sum_{j>=1} (acc on task j just before training it
    - acc of a randomly initialised model on task j). NaN when fewer than two tasks."""
    before = np.array(acc_before, dtype=float)
    base = np.array(baseline, dtype=float)
    if before.shape != base.shape:
        raise ValueError("acc_before and baseline must have the same length")
    if before.size < 2:
        return math.nan
    return float(np.mean(before[1:] - base[1:]))


def final_accuracies(R: Sequence[Sequence[float]] | np.ndarray) -> list[float]:
    """Accuracy on each task after the last task trained."""
    A = _matrix(R)
    k = _last_row(A)
    return [float(v) for v in A[k, : k + 1]]


def summarize(R: Sequence[Sequence[float]] | np.ndarray, acc_before: Sequence[float] | None = None,
              baseline: Sequence[float] | None = None) -> dict:
    """All scalar metrics of a run in one dict (what ``metrics.json`` carries)."""
    out = {
        "avg_acc": average_accuracy(R),
        "bwt": bwt(R),
        "forgetting": forgetting(R),
        "avg_acc_curve": average_accuracy_curve(R),
        "final_acc": final_accuracies(R),
    }
    if acc_before is not None and baseline is not None:
        out["fwt"] = fwt(acc_before, baseline)
    return out


def kurtosis(values: Sequence[float] | np.ndarray) -> float:
    """Excess-free (Pearson) kurtosis E[(x-mu)^4] / sigma^4; 3 for a Gaussian."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size < 2:
        return math.nan
    d = x - x.mean()
    var = np.mean(d**2)
    if var == 0:
        return math.nan
    return float(np.mean(d**4) / var**2)


def weight_distribution(values: Sequence[float] | np.ndarray, near: float = 0.05,
                        bins: int = 40) -> dict:
    """How "sparse and polarised" a set of weights is (ANPyC's claim for its synapses):

    * ``zero_share``: share exactly zero (pruned and never reused);
    * ``near_zero_share``: share with ``|w| < near * rms(w)``;
    * ``bimodality``: Sarle's bimodality coefficient of ``|w|``, ``(skew^2 + 1) / kurtosis``
      (above 5/9, the uniform distribution's, suggests two modes: many weights near zero and
      a group of large ones);
    * ``kurtosis``: Pearson kurtosis of ``w`` (3 for a Gaussian; heavy tails above);
    * ``hist_edges`` / ``hist_counts``: a histogram of ``log10 |w|`` over the non-zero weights.

    Example:
        >>> d = weight_distribution([0.0, 0.0, 0.001, 1.0, -1.0])
        >>> d["zero_share"], d["near_zero_share"]
        (0.4, 0.6)
    """
    w = np.asarray(values, dtype=float).ravel()
    if w.size == 0:
        return {"zero_share": math.nan, "near_zero_share": math.nan, "bimodality": math.nan, "kurtosis": math.nan,
                "hist_edges": [], "hist_counts": []}
    a = np.abs(w)
    rms = float(np.sqrt(np.mean(w**2)))
    d = a - a.mean()
    var = float(np.mean(d**2))
    skew = float(np.mean(d**3) / var**1.5) if var > 0 else math.nan
    kurt_abs = float(np.mean(d**4) / var**2) if var > 0 else math.nan
    logs = np.log10(a[a > 0]) if (a > 0).any() else np.zeros(0)
    counts, edges = np.histogram(logs, bins=bins) if logs.size else (np.zeros(0), np.zeros(0))
    return {
        "zero_share": float(np.mean(a == 0)),
        "near_zero_share": float(np.mean(a < near * rms)) if rms > 0 else 1.0,
        "bimodality": (skew**2 + 1) / kurt_abs if var > 0 else math.nan,
        "kurtosis": kurtosis(w),
        "hist_edges": [round(float(e), 4) for e in edges],
        "hist_counts": [int(c) for c in counts],
    }
