"""What a method may know, and when: the three scenarios and the context the loop hands to hooks.

After van de Ven, Tuytelaars & Tolias (2022, "Three types of incremental learning"):

* ``task``: the task id is known in training and at test time; one head per task
  (task-aware, multi-head);
* ``domain``: one head with the same outputs for every task; no task id at test time;
* ``class``: one head over every class seen so far, growing with each task; no task id at
  test time.

In every scenario training batches carry their task id (task boundaries are known while
learning). The loop (:mod:`anpyc.loop.train`) alone decides what evaluation passes to a method:
in ``domain`` and ``class`` every evaluation hook gets ``task_id=None`` and test batches
carry no task id, so a method cannot use it even by accident.

Example:
    >>> ctx = HookContext(task=2, n_tasks=3, seed=0, scenario="domain")
    >>> ctx.last, ctx.task_id_at_test
    (True, False)
    >>> SCENARIOS["class"].labels
    'global'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anpyc.utils import seeded_generator


@dataclass(frozen=True)
class Scenario:
    """How a scenario builds the stream and the model, and whether tests see task ids."""

    name: str
    head: str  # "multi": one head per task; "single": one shared head
    labels: str  # "local": per-task labels; "global": the stream's class ids
    task_id_at_test: bool


SCENARIOS: dict[str, Scenario] = {
    "task": Scenario("task", head="multi", labels="local", task_id_at_test=True),
    "domain": Scenario("domain", head="single", labels="local", task_id_at_test=False),
    "class": Scenario("class", head="single", labels="global", task_id_at_test=False),
}


@dataclass(frozen=True)
class HookContext:
    """What the loop tells a method at a task boundary.

    ``task`` is the index of the task being learnt (the loop counts tasks; a method never
    needs to), ``n_tasks`` the stream length when known (``None`` for an open-ended stream),
    ``seed`` the run seed: every random draw of a method comes from :meth:`generator`, so runs
    with different seeds differ and a run is reproducible from its seed. ``epochs`` and
    ``batch_size`` describe the task's main training phase (schedules such as HAT's
    annealing need them).

    Example:
        >>> ctx = HookContext(task=0, n_tasks=None, seed=3)
        >>> ctx.last
        False
        >>> ctx.generator(1).initial_seed() == ctx.generator(1).initial_seed()  # same seed, task and salt
        True
    """

    task: int
    n_tasks: int | None = None
    seed: int = 0
    scenario: str = "task"
    epochs: float = 1.0  # of the task's main training phase
    batch_size: int = 128

    @property
    def last(self) -> bool:
        """True for the last task of a stream of known length."""
        return self.n_tasks is not None and self.task == self.n_tasks - 1

    @property
    def task_id_at_test(self) -> bool:
        return SCENARIOS[self.scenario].task_id_at_test

    def generator(self, *salt: int) -> torch.Generator:
        """A generator seeded from (run seed, task, ``salt``): one per purpose, independent
        of every other draw of the run."""
        return seeded_generator(self.seed, 0x5EED, self.task, *salt)
