"""Generation: the kind of ``--model vae|gan``. Its config checks and defaults (the task
scenario only, raw pixels, a split stream of a data set the judge can learn), the stream's
class ids as labels whatever the scenario, the methods it refuses, and how a run's pieces
reach the judge (with a stand-in judge: the real one trains on MNIST, see tests/generative)."""

from types import SimpleNamespace

import numpy as np
import pytest

from anpyc.config import RunConfig
from anpyc.errors import ConfigError, DataError
from anpyc.generative.training import GenerativeTraining
from anpyc.problems import Generation, problem_for
from anpyc.problems.base import Problem
from anpyc.rundir import FID_CSV


def _cfg(scenario="task", benchmark="split-mnist", model="vae"):
    return RunConfig.from_dict({"method": "ewc", "scenario": scenario, "model": {"name": model},
                                "stream": {"benchmark": benchmark}})


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_both_generators_are_this_kind(model):
    assert problem_for(_cfg(model=model)) is Generation


def test_a_scenario_that_hides_the_task_is_refused():
    # (the class scenario's refusal through a config file is in test_bad_input.py)
    with pytest.raises(ConfigError, match=r"scenario 'domain' applies to classifiers; a generator \(vae\)"):
        Generation.resolve(_cfg("domain"))


def test_a_stream_the_judge_cannot_learn_is_refused_when_resolving():
    with pytest.raises(DataError, match="generative models need a split benchmark"):
        Generation.resolve(_cfg(benchmark="permuted-mnist"))


def test_resolving_trains_on_raw_pixels_and_leaves_a_resolved_config_as_it_is():
    once = Generation.resolve(_cfg())
    assert not once.stream.standardize and once.train.optimizer == "adam"
    assert Generation.resolve(once) == once  # resolving twice (a resumed run) changes nothing more


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_the_labels_are_the_streams_class_ids_whatever_the_scenario(scenario):
    cfg = RunConfig.from_dict({"scenario": scenario})
    assert Generation.labels(cfg) == "global"


def test_a_generator_refuses_classifier_methods_and_measures_no_forward_transfer():
    assert {"classifier-only", "no-network"} <= Generation.refused_tags and not Generation.forward_transfer


class _Judge:
    """Stands in for the judging callback: records what the run gives it."""

    fid = np.eye(2)

    def bind(self, progress):
        self.bound = progress

    def metrics(self, stream):
        return {"avg_acc": 0.5, "stream": stream.name}


def _problem():
    problem = Generation.__new__(Generation)  # without loading (training) the real judge
    Problem.__init__(problem, Generation.resolve(_cfg()), SimpleNamespace(name="split-mnist"))
    problem.judge, problem.judge_info = _Judge(), {"test_acc": 0.97, "epochs": 2}
    return problem


def test_the_judge_is_the_runs_callback_its_scorer_and_its_figures():
    problem = _problem()
    assert problem.callbacks(object()) == [problem.judge]
    training = problem.training()
    assert isinstance(training, GenerativeTraining) and training.judge is problem.judge
    state = SimpleNamespace(progress={"R": []})
    problem.start("out-dir", state)
    assert problem.judge.out == "out-dir" and problem.judge.bound is state.progress  # checkpointed with the loop's
    assert problem.metrics(state) == {"model": "vae", "avg_acc": 0.5, "stream": "split-mnist",
                                      "classifier": {"test_acc": 0.97, "epochs": 2}, "classifier_test_acc": 0.97}
    assert problem.matrices(state) == {FID_CSV: problem.judge.fid}
    assert problem.describe() == "ewc on split-mnist (vae)"


def test_the_summary_line_gives_recognition_the_first_task_and_the_frechet_distance():
    metrics = {"benchmark": "split-mnist", "n_tasks": 5, "avg_acc": 0.9, "final_acc": [0.81234, 0.9], "avg_fid": 12.345,
               "classifier_test_acc": 0.991, "time_s": 30.04}
    line = Generation.summary_line(SimpleNamespace(config=_cfg(model="gan"), metrics=metrics), "runs/g")
    assert line == ("ewc (gan) on split-mnist (5 tasks): recognition 90.00%  first task 81.23%  FD 12.35  "
                    "(judge acc 99.10%)  time 30.0s  -> runs/g")
