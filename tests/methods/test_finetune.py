"""Fine-tuning, the lower bound: a name and a tag, every hook the base class's no-op, no
parameters, and a run that trains each task once and keeps no state."""

import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.methods import create
from anpyc.methods.base import Method
from anpyc.methods.finetune import Finetune
from anpyc.runner import run

HOOKS = ("attach", "before_task", "training_data", "penalty", "before_step", "after_step", "after_task",
         "eval_context", "predict", "inferred_tasks", "summary", "epochs_for_budget", "extra_examples")


def test_finetune_declares_a_name_and_a_tag_and_nothing_else():
    # anything more (a hook, a budget) would make the reference row protect or spend something
    assert {k for k in vars(Finetune) if not k.startswith("__")} == {"name", "tags"}
    assert all(getattr(Finetune, hook) is getattr(Method, hook) for hook in HOOKS)


def test_finetune_takes_no_parameters():
    assert create("finetune", {}).config == create("finetune").config
    with pytest.raises(ConfigError, match=r"method_params \(finetune\): unknown key\(s\) 'lam'; it takes none"):
        create("finetune", {"lam": 1})


def test_a_finetune_run_trains_each_task_once_and_keeps_no_state():
    cfg = RunConfig.from_dict({"method": "finetune", "stream": {"benchmark": "blobs", "tasks": 3, "subsample": 60},
                               "model": {"hidden": [8]}, "train": {"batch_size": 30}})
    result = run(cfg, quiet=True)
    assert result.metrics["passes"] == [1.0, 1.0, 1.0]  # the budget, no extra pass
    assert result.metrics["decision_passes"] == [0.0, 0.0, 0.0]
    assert result.method.state_dict() == {"_extra_state": {}} and result.method.summary() == {}
