"""Joint training: train on every task seen so far (the upper bound; not a fair competitor)."""

from __future__ import annotations

from collections.abc import Sequence

from anpyc.data.taskdata import ConcatData
from anpyc.methods.base import Method
from anpyc.methods.registry import register


@register
class Joint(Method):
    """At task ``t`` trains on the union of tasks ``0..t`` (each example keeps its task id,
    so multi-head models train every head). Its data budget grows with ``t``."""

    name = "joint"
    tags = frozenset({"upper-bound"})

    def training_data(self, task, seen: Sequence, ctx) -> ConcatData:
        return ConcatData([s.train for s in seen])
