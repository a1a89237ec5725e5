"""The importance-weighted quadratic penalty shared by EWC, online EWC, SI, MAS and ANPyC:
how a task's importance is folded into the running one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from anpyc.errors import TrainingError
from anpyc.methods.quadratic import QuadraticPenalty


@dataclass
class _Config:
    lam: float = 1.0
    merge: str = "sum"
    gamma: float = 0.5


@pytest.mark.parametrize("merge, expected", [
    ("sum", [4.0, 2.0]), ("max", [3.0, 2.0]), ("replace", [3.0, 0.0]), ("decay", [3.5, 1.0]),
])
def test_each_merge_folds_a_second_task_into_the_first(merge, expected):
    method = QuadraticPenalty(_Config(merge=merge))
    for omega in ([1.0, 2.0], [3.0, 0.0]):
        method.merge_importance({"w": torch.tensor(omega)})
    assert method.omega("w").tolist() == expected


def test_an_unknown_merge_is_refused():
    method = QuadraticPenalty(_Config(merge="mean"))
    method.merge_importance({"w": torch.ones(2)})  # the first task has nothing to merge with
    with pytest.raises(ValueError, match="unknown merge 'mean'"):
        method.merge_importance({"w": torch.ones(2)})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_importance_stops_the_run_naming_the_tensor(bad):
    """In a loop of one's own that does not check its loss, diverged weights gave a NaN
    importance, and the statistics of it failed with torch's "min(): Expected reduction dim"."""
    method = QuadraticPenalty(_Config())
    method.record_importance(0, {"w": torch.ones(2)})  # a finite one is recorded
    with pytest.raises(TrainingError, match=r"importance of body.v after task 2 is not finite") as err:
        method.record_importance(1, {"w": torch.ones(2), "body.v": torch.tensor([1.0, bad])})
    assert "\n" not in str(err.value)
    assert len(method.history["importance_stats"]) == 1
