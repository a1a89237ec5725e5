"""A new scenario in one file: task ids at test time, but one head shared by every task."""

from anpyc.scenario import Scenario, register_scenario

TASK_SHARED_HEAD = register_scenario(Scenario(  # the registry line: --scenario task-shared-head
    "task-shared-head", head="single", labels="local", task_id_at_test=True,
    description="task ids at test time, one head shared by every task",
))
