"""``for_run``: the method a run trains. Built from the config's method and parameters unless
one is passed; wrapped for the run options with the config's values; a method passed in is
the one wrapped; a method already wrapped (either wrapper, or the base ``MethodWrapper``) is
returned as it is, whatever the config asks, so that calling it again (the budget, then the
run) never wraps twice."""

from anpyc.config import RunConfig
from anpyc.methods import create, for_run
from anpyc.methods.base import MethodWrapper
from anpyc.methods.density_replay import DensityReplayed
from anpyc.methods.task_inference import TaskInferred

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 60}, "model": {"hidden": [8]}, "scenario": "class"}


def _cfg(method="ewc", **params):
    return RunConfig.from_dict({**BLOBS, "method": method, "method_params": params})


def test_without_a_run_option_the_configs_method_with_its_parameters():
    method = for_run(_cfg("ewc", lam=7, fisher_samples=30))
    assert not isinstance(method, MethodWrapper) and method.name == "ewc"
    assert (method.config.lam, method.config.fisher_samples) == (7.0, 30)


def test_a_method_passed_in_is_returned_as_it_is_without_a_run_option():
    mine = create("si")
    assert for_run(_cfg("ewc"), mine) is mine  # the config's method name does not rebuild it


def test_a_method_passed_in_is_the_one_wrapped():
    mine = create("si")
    inferred = for_run(_cfg("ewc", task_inference="entropy"), mine)
    assert isinstance(inferred, TaskInferred) and inferred.inner is mine
    replayed = for_run(_cfg("ewc", density_replay=5), mine)
    assert isinstance(replayed, DensityReplayed) and replayed.inner is mine


def test_the_wrappers_get_the_run_options_values():
    assert for_run(_cfg(task_inference="pooled_density")).inference.score == "pooled_density"
    replayed = for_run(_cfg(density_replay=7, density_weight=2.5))
    assert (replayed.samples_per_step, replayed.weight) == (7, 2.5)
    assert replayed.inner.name == "ewc" and not isinstance(replayed.inner, MethodWrapper)


def test_a_wrapped_method_is_never_wrapped_again_whatever_the_config_asks():
    inferred = TaskInferred(create("ewc"), "entropy")
    assert for_run(_cfg(density_replay=5), inferred) is inferred
    replayed = DensityReplayed(create("ewc"), 5, 1.0)
    assert for_run(_cfg(task_inference="entropy"), replayed) is replayed
    plain = MethodWrapper(create("ewc"))  # a wrapper of one's own counts as wrapped too
    assert for_run(_cfg(task_inference="entropy"), plain) is plain
