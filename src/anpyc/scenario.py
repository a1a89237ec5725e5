"""What a method may know, and when: scenarios as objects, and the context the loop hands to hooks.

After van de Ven, Tuytelaars & Tolias (2022, "Three types of incremental learning"):

* ``task``: the task id is known in training and at test time; one head per task
  (task-aware, multi-head);
* ``domain``: one head with the same outputs for every task; no task id at test time;
* ``class``: one head over every class seen so far, growing with each task; no task id at
  test time.

A :class:`Scenario` owns that behaviour: the labels a stream gets, the head the model gets
and how it grows (:meth:`Scenario.begin_task`), which task id a test batch may reveal
(:meth:`Scenario.test_task_id`) and which tasks are tested after each one. The loop
(:mod:`anpyc.loop.train`) and every :class:`HookContext` carry the object; methods ask it
(``ctx.scenario.grows_head``), never compare names. In every scenario training batches carry
their task id (task boundaries are known while learning); in ``domain`` and ``class`` every
evaluation hook gets ``task_id=None`` and test batches carry no task id.

A new scenario is one :func:`register_scenario` call; the command line's ``--scenario``
choices and the config's check come from :data:`SCENARIOS`.

Example:
    >>> ctx = HookContext(task=2, n_tasks=3, seed=0, scenario="domain")
    >>> ctx.last, ctx.task_id_at_test, ctx.scenario.name
    (True, False, 'domain')
    >>> SCENARIOS["class"].labels, SCENARIOS["class"].grows_head
    ('global', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anpyc.errors import ConfigError, unknown

if TYPE_CHECKING:
    import torch

HEADS = ("multi", "single")
LABELS = ("local", "global")


@dataclass(frozen=True, eq=False)
class Scenario:
    """What is known at test time, and what that means for the stream and the model.

    ``head``: ``multi`` (one head per task) or ``single`` (one shared head); ``labels``:
    ``local`` (each task's own labels 0..k-1) or ``global`` (the stream's class ids);
    ``task_id_at_test``: whether evaluation may tell a method which task a test batch is from.
    A single head with global labels grows: its active outputs are every class seen so far.

    Scenarios compare by identity; comparing one with a string is an error (ask its
    properties instead: ``ctx.scenario.grows_head``, ``ctx.scenario.task_id_at_test``).

    Example:
        >>> s = Scenario("task-shared", head="single", labels="local", task_id_at_test=True)
        >>> s.grows_head, s.test_task_id(3)
        (False, 3)
    """

    name: str
    head: str
    labels: str
    task_id_at_test: bool
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"scenario {self.name!r}: head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.labels not in LABELS:
            raise ValueError(f"scenario {self.name!r}: labels must be one of {', '.join(LABELS)}, got {self.labels!r}")

    @property
    def grows_head(self) -> bool:
        """One shared head over the stream's class ids: it grows with the classes seen."""
        return self.head == "single" and self.labels == "global"

    @property
    def global_labels(self) -> bool:
        """Tasks are labelled with the stream's class ids (not each task's own 0..k-1)."""
        return self.labels == "global"

    def test_task_id(self, task: int) -> int | None:
        """The task id evaluation may reveal for ``task``'s test data (``None``: hidden)."""
        return task if self.task_id_at_test else None

    def tested_after(self, task: int) -> range:
        """The tasks evaluated once ``task`` is learnt: every task seen so far."""
        return range(task + 1)

    def begin_task(self, model: Any, task: Any, seen: Sequence[Any]) -> None:
        """The model side of a new task: its head (one per task, or the shared one, which in
        a growing scenario then answers over every class seen so far)."""
        model.add_head(task.n_outputs)
        if self.grows_head:
            model.set_active_outputs(max(c for s in seen for c in s.classes) + 1)

    def with_task_inference(self) -> Scenario:
        """This scenario for a method trained task-aware whose task is inferred at test time
        (``task_inference``, :mod:`anpyc.methods.task_inference`): the same labels and the
        same hidden task id at test, but one head per task in training (:class:`TaskAwareTraining`).
        A scenario that shows the task id has nothing to infer: it is returned as it is.

        Example:
            >>> s = SCENARIOS["class"].with_task_inference()
            >>> s.head, s.labels, s.task_id_at_test, s is SCENARIOS["class"].with_task_inference()
            ('multi', 'global', False, True)
        """
        if self.task_id_at_test:
            return self
        if self.name not in _TASK_AWARE:
            _TASK_AWARE[self.name] = TaskAwareTraining(
                self.name, head="multi", labels=self.labels, task_id_at_test=False,
                description=f"{self.description}; trained with a head per task, the task inferred at test time",
                tested=self)
        return _TASK_AWARE[self.name]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            raise TypeError(f"a Scenario is not compared with a name ({other!r}): ask its properties "
                            "(grows_head, global_labels, task_id_at_test, head, labels)")
        return self is other

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class TaskAwareTraining(Scenario):
    """A scenario that hides the task id at test time (``tested``), as a method with task
    inference is trained in it: one head per task (:meth:`Scenario.with_task_inference`).
    With the stream's class ids as labels (``class``) each task's head answers over that
    task's own classes (the method sees them as ``0..k-1``, the inference maps them back);
    with labels shared by every task (``domain``) every task's head has those labels. Every
    new head is drawn afresh, as in the ``task`` scenario: a head started as a copy of the
    previous task's (the shared head's trajectory, before 2026-12-05) made the body learn the
    new task in the directions the old heads read, and fine-tune with inference forgot far
    more (validation 77.7 % against 89.9 % on pmnist10-domain; docs/baselines.md)."""

    tested: Scenario | None = field(default=None, compare=False)

    def begin_task(self, model: Any, task: Any, seen: Sequence[Any]) -> None:
        model.add_head(len(task.classes) if self.global_labels else task.n_outputs)


_TASK_AWARE: dict[str, Scenario] = {}  # one task-aware training scenario per tested one

#: every known scenario by name; :func:`register_scenario` adds one
SCENARIOS: dict[str, Scenario] = {}


def register_scenario(scenario: Scenario) -> Scenario:
    """Add ``scenario`` to :data:`SCENARIOS` (the CLI's ``--scenario`` and the config accept it).

    Example:
        >>> s = register_scenario(Scenario("doc-only", head="single", labels="local", task_id_at_test=True))
        >>> get_scenario("doc-only") is s
        True
        >>> del SCENARIOS["doc-only"]
    """
    known = SCENARIOS.get(scenario.name)
    if known is not None and known is not scenario:
        raise ValueError(f"scenario name {scenario.name!r} registered twice")
    SCENARIOS[scenario.name] = scenario
    return scenario


def get_scenario(scenario: str | Scenario) -> Scenario:
    """The registered scenario of that name (a :class:`Scenario` is returned as it is)."""
    if isinstance(scenario, Scenario):
        return scenario
    try:
        return SCENARIOS[scenario]
    except (KeyError, TypeError):
        raise ConfigError(unknown("scenario", scenario, SCENARIOS)) from None


TASK = register_scenario(Scenario(
    "task", head="multi", labels="local", task_id_at_test=True,
    description="task ids at test time, one head per task (default)"))
DOMAIN = register_scenario(Scenario(
    "domain", head="single", labels="local", task_id_at_test=False,
    description="one head with the same outputs for every task, no task id at test time"))
CLASS = register_scenario(Scenario(
    "class", head="single", labels="global", task_id_at_test=False,
    description="one head growing over the classes seen, no task id at test time"))


@dataclass(frozen=True)
class HookContext:
    """What the loop tells a method at a task boundary.

    ``task`` is the index of the task being learnt (the loop counts tasks; a method never
    needs to), ``n_tasks`` the stream length when known (``None`` for an open-ended stream),
    ``seed`` the run seed: every random draw of a method comes from :meth:`generator`, so runs
    with different seeds differ and a run is reproducible from its seed. ``scenario`` is the
    :class:`Scenario` object (a name is looked up). ``epochs`` and ``batch_size`` describe the
    task's main training phase (schedules such as HAT's annealing need them).

    Example:
        >>> ctx = HookContext(task=0, n_tasks=None, seed=3)
        >>> ctx.last, ctx.scenario is SCENARIOS["task"]
        (False, True)
        >>> ctx.generator(1).initial_seed() == ctx.generator(1).initial_seed()  # same seed, task and salt
        True
    """

    task: int
    n_tasks: int | None = None
    seed: int = 0
    scenario: Scenario = TASK
    epochs: float = 1.0  # of the task's main training phase
    batch_size: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", get_scenario(self.scenario))

    @property
    def last(self) -> bool:
        """True for the last task of a stream of known length."""
        return self.n_tasks is not None and self.task == self.n_tasks - 1

    @property
    def task_id_at_test(self) -> bool:
        return self.scenario.task_id_at_test

    def generator(self, *salt: int) -> torch.Generator:
        """A generator seeded from (run seed, task, ``salt``): one per purpose, independent
        of every other draw of the run."""
        from anpyc.utils import seeded_generator  # here: the scenarios themselves need no torch

        return seeded_generator(self.seed, 0x5EED, self.task, *salt)
