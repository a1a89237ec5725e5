"""Joint training: train on every task seen so far (the upper bound; not a fair competitor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from anpyc.data.taskdata import ConcatData
from anpyc.methods.base import Method
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.scenario import HookContext


@register
class Joint(Method):
    """At task ``t`` trains on the union of tasks ``0..t`` (each example keeps its task id,
    so multi-head models train every head). Its data budget grows with ``t``."""

    name = "joint"
    tags = frozenset({"upper-bound"})

    def training_data(self, task: Task, seen: Sequence[Task], ctx: HookContext) -> ConcatData:
        return ConcatData([s.train for s in seen])
