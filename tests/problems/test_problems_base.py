"""The problem-kind interface: what a kind must give (labels, its summary line, its model),
what it may leave to the base (the config as it is, the classification loop, no callbacks,
no extra figures), and how a run's kind is chosen (the kind claiming the model, else the
last kind claiming none).

(Named test_problems_base.py, not test_base.py: tests/ has no ``__init__.py`` files, so two
test modules of one basename, this and tests/methods/test_base.py, cannot both be collected.)"""

from types import SimpleNamespace

import pytest

import anpyc.problems as problems
from anpyc.config import RunConfig
from anpyc.loop.train import Training
from anpyc.problems import Classification, Generation, problem_for
from anpyc.problems.base import Problem


def _cfg(**data):
    return RunConfig.from_dict({"method": "ewc", **data})


def test_a_kind_must_give_its_labels_summary_line_and_model():
    cfg = _cfg()
    with pytest.raises(NotImplementedError):
        Problem.labels(cfg)
    with pytest.raises(NotImplementedError):
        Problem.summary_line(None, None)
    with pytest.raises(NotImplementedError):
        Problem(cfg, SimpleNamespace(name="s")).build_model()


def test_the_base_leaves_the_config_and_the_loop_as_they_are():
    cfg = _cfg()
    assert Problem.resolve(cfg) is cfg
    problem = Problem(cfg, SimpleNamespace(name="blobs"))
    training = problem.training()
    assert type(training) is Training and training.mixes_tasks  # classification's loop
    assert problem.callbacks(object()) == [] and problem.metrics(None) == {} and problem.matrices(None) == {}
    assert problem.start(None, None) is None
    assert problem.describe() == "ewc on blobs"


def test_the_base_claims_no_model_measures_forward_transfer_and_refuses_no_method():
    assert Problem.models == () and Problem.forward_transfer and Problem.refused_tags == frozenset()


def test_a_runs_kind_is_the_one_claiming_its_model(monkeypatch):
    class Mine(Problem):
        name, models = "mine", ("my-net",)

    monkeypatch.setattr(problems, "PROBLEMS", [Classification, Mine, Generation])
    assert problem_for(_cfg(model={"name": "my-net"})) is Mine
    assert problem_for(_cfg(model={"name": "vae"})) is Generation
    assert problem_for(_cfg(model={"name": "cnn"})) is Classification  # claimed by none: the default


def test_the_default_kind_is_the_last_claiming_no_model(monkeypatch):
    class Plain(Problem):
        name = "plain"

    monkeypatch.setattr(problems, "PROBLEMS", [Classification, Generation, Plain])
    assert problem_for(_cfg()) is Plain
    assert problem_for(_cfg(model={"name": "gan"})) is Generation  # a claim still wins
