"""What a method may know at test time: in the domain and class scenarios no task id reaches
any method, through any hook, for every registered method; in the task scenario it does."""

import pytest
import torch

from anpyc.config import RunConfig
from anpyc.methods import get_method_class, method_names, typed
from anpyc.runner import run
from anpyc.scenario import SCENARIOS, HookContext, Scenario, register_scenario


def _spy(name: str):
    """The registered method ``name`` with its evaluation hooks recording what they get."""
    base = get_method_class(name)

    class Spy(base):
        def __init__(self, config=None):
            super().__init__(config)
            self.seen: list[tuple[str, object]] = []
            self.training = False  # inside after_task: the task in training is known (its validation)

        def after_task(self, model, task, ctx, retrain=None):
            self.training = True
            try:
                super().after_task(model, task, ctx, retrain)
            finally:
                self.training = False

        def eval_context(self, model, task_id):
            if not self.training:
                self.seen.append(("eval_context", task_id))
            return super().eval_context(model, task_id)

        def predict(self, model, x, task_id):
            if not self.training:
                self.seen.append(("predict", task_id))
            assert isinstance(x, torch.Tensor)  # inputs only: no labels, no task ids
            return super().predict(model, x, task_id)

    return Spy


BLOBS = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 120}, "model": {"hidden": [8]},
         "train": {"epochs": 1, "batch_size": 40}}
FAST = {"anpyc": {"importance_samples": 50}, "ewc": {"fisher_samples": 50}, "online-ewc": {"fisher_samples": 50},
        "mas": {"samples": 50}, "er": {"buffer": 20}, "derpp": {"buffer": 20}}


@pytest.mark.parametrize("scenario", ["domain", "class"])
@pytest.mark.parametrize("name", method_names())
def test_no_task_id_reaches_a_method_at_test_time(name, scenario):
    cfg = typed(RunConfig.from_dict({**BLOBS, "method": name, "method_params": FAST.get(name, {}), "scenario": scenario}))
    spy = _spy(name)(cfg.method_params)
    run(cfg, quiet=True, method=spy)
    assert spy.seen and {kind for kind, _ in spy.seen} == {"eval_context", "predict"}
    assert all(task_id is None for _, task_id in spy.seen), spy.seen[:5]


def test_the_task_scenario_does_reveal_it():
    cfg = typed(RunConfig.from_dict({**BLOBS, "method": "finetune"}))
    spy = _spy("finetune")(cfg.method_params)
    run(cfg, quiet=True, method=spy)
    assert {task_id for _, task_id in spy.seen} == {0, 1}


def test_scenarios_say_what_is_known():
    assert [SCENARIOS[s].task_id_at_test for s in ("task", "domain", "class")] == [True, False, False]
    assert [SCENARIOS[s].grows_head for s in ("task", "domain", "class")] == [False, False, True]
    assert HookContext(task=0, scenario="class").task_id_at_test is False


def test_a_scenario_is_asked_not_compared_with_a_name():
    ctx = HookContext(task=0, scenario="class")
    assert ctx.scenario is SCENARIOS["class"] and ctx.scenario.global_labels
    with pytest.raises(TypeError, match="ask its properties"):
        _ = ctx.scenario == "class"


def test_unknown_scenarios_are_refused_where_the_config_is_built():
    from anpyc.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scenario 'nope'; known: task, domain, class"):
        RunConfig.from_dict({"scenario": "nope"})


def test_no_method_compares_scenario_names():
    """Methods ask the Scenario object (``ctx.scenario.grows_head``), never compare its name."""
    import ast
    from pathlib import Path

    import anpyc.methods

    offenders = []
    for path in sorted(Path(anpyc.methods.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                isinstance(side, ast.Attribute) and side.attr == "scenario" for side in (node.left, *node.comparators)
            ) and any(isinstance(side, ast.Constant) and isinstance(side.value, str) for side in (node.left, *node.comparators)):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("kwargs, words", [
    ({"head": "shared"}, "scenario 'mine': head must be one of multi, single, got 'shared'"),
    ({"labels": "per-task"}, "scenario 'mine': labels must be one of local, global, got 'per-task'"),
])
def test_a_scenario_with_an_unknown_head_or_labels_is_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Scenario("mine", **{"head": "single", "labels": "local", "task_id_at_test": False, **kwargs})


def test_a_second_scenario_under_a_registered_name_is_refused():
    with pytest.raises(ValueError, match="scenario name 'domain' registered twice"):
        register_scenario(Scenario("domain", head="single", labels="local", task_id_at_test=False))
    assert SCENARIOS["domain"].head == "single" and register_scenario(SCENARIOS["domain"]) is SCENARIOS["domain"]
