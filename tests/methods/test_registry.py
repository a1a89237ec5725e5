"""The method registry: names, tags, and hyper-parameters typed once at the boundary."""

import subprocess
import sys

import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.methods import DEFAULT_METHOD, METHODS, Method, create, method_names, typed
from anpyc.methods.finetune import Finetune


def test_method_names_come_from_the_tags_the_methods_declare():
    names = method_names()
    assert names[0] == DEFAULT_METHOD and names[1:] == sorted(names[1:])
    assert method_names(tags={"upper-bound"}) == ["joint"] and method_names(tags={"lower-bound"}) == ["finetune"]
    assert "joint" not in method_names(without={"upper-bound"})


def test_internal_methods_are_never_listed(monkeypatch):
    class Helper(Method):
        name, tags = "helper-for-a-test", frozenset({"internal"})

    monkeypatch.setitem(METHODS, Helper.name, Helper)
    assert Helper.name not in method_names() and create(Helper.name).name == Helper.name


def test_params_are_typed_by_the_registry_once():
    cfg = RunConfig.from_dict({"method": "ewc", "method_params": {"lam": "3"}})
    assert cfg.method_params == {"lam": "3"}  # as given: the config knows no method
    once = typed(cfg)
    assert once.method_params.lam == 3.0 and typed(once) is once
    assert once.params_dict()["fisher_samples"] == type(once.method_params)().fisher_samples
    with pytest.raises(ConfigError, match=r"method_params \(ewc\): unknown key\(s\) 'lamda'"):
        typed(cfg.with_params(lamda=1))
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        typed(RunConfig(method="nope"))


def test_the_config_needs_no_method_registry():
    """No global filled at import: building a config does not depend on what was imported first."""
    code = ("import sys; from anpyc.config import RunConfig; import anpyc.config as c; "
            "cfg = RunConfig.from_dict({'method': 'ewc', 'method_params': {'lam': 3}}); "
            "assert not hasattr(c, 'METHOD_CONFIGS') and 'anpyc.methods' not in sys.modules; print(cfg.method_params)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "{'lam': 3}"


def test_a_comparison_builds_each_method_once_per_job(monkeypatch, tmp_path):
    from anpyc.experiments.compare import compare

    built = []

    class Counted(Finetune):
        name = "counted-finetune"

        def __init__(self, config=None):
            super().__init__(config)
            built.append(self)

    monkeypatch.setitem(METHODS, Counted.name, Counted)
    base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 60}, "model": {"hidden": [8]},
                                "train": {"batch_size": 30}})
    compare(base, [Counted.name], [0, 1], tmp_path / "c", quiet=True)
    assert len(built) == 2  # one per (method, seed) job: the budget asks the object the run trains
