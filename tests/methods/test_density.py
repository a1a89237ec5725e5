"""density and slda: classifiers of the inputs alone, no network. Right where the answer is
known, in every scenario; their state is their state_dict; the loop trains no network for
them and records what they read."""

from __future__ import annotations

import json

import pytest
import torch

from anpyc.config import ModelConfig, RunConfig
from anpyc.data.user import stream_from_datasets
from anpyc.errors import ConfigError
from anpyc.methods import create, typed
from anpyc.models import build_model
from anpyc.runner import run
from anpyc.scenario import HookContext

NAMES = ("density", "slda")
DIM = 8


def _blob(task: int, label: int, centre: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs around ``6 e_centre`` (unit noise) labelled ``label``; 1 x 2 x 4 "images"."""
    g = torch.Generator().manual_seed(seed * 100 + task * 10 + centre)
    x = torch.randn(n, DIM, generator=g) * 0.7
    x[:, centre] += 6.0
    return x.reshape(n, 1, 2, 4), torch.full((n,), label, dtype=torch.long)


def _separated(scenario: str, n: int = 60):
    """Two tasks of two classes, every class around its own corner: task ``t``'s class ``c``
    sits at ``e_{2t+c}``, labelled ``c`` (task, domain) or ``2t+c`` (class)."""

    def split(seed: int) -> list:
        parts = []
        for t in range(2):
            xs, ys = zip(*[_blob(t, 2 * t + c if scenario == "class" else c, 2 * t + c, n, seed) for c in range(2)],
                         strict=True)
            parts.append((torch.cat(xs), torch.cat(ys)))
        return parts

    return stream_from_datasets(split(0), split(1), val=split(2), seed=0)


def _fitted(name: str, stream, scenario: str, params: dict | None = None):
    model = build_model(ModelConfig(hidden=(4,)), stream.input_shape)
    method = create(name, params)
    for t, task in enumerate(stream):
        model.add_head(task.n_outputs)
        method.after_task(model, task, HookContext(t, len(stream), scenario=scenario))
    return model, method


def _test_rows(stream, t: int):
    x, y, _ = stream[t].test.get(torch.arange(len(stream[t].test)))
    return x, y


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_separated_classes_are_all_right_in_every_scenario(name, scenario):
    stream = _separated(scenario)
    model, method = _fitted(name, stream, scenario)
    for t in range(2):
        x, y = _test_rows(stream, t)
        given = t if scenario == "task" else None
        logits = method.predict(model, x, given)
        assert torch.equal(logits.argmax(1), y)
        if given is None:  # the task of the best component: right too
            assert torch.equal(method.inferred_tasks(), torch.full_like(y, t))
        else:
            assert method.inferred_tasks() is None
    width = 4 if scenario == "class" else 2
    assert logits.shape == (len(x), width)


@pytest.mark.parametrize("name", NAMES)
def test_task_id_restricts_the_answer_to_that_tasks_classes(name):
    """Class scenario, a task-1 input asked as if from task 0: only task 0's labels answer."""
    stream = _separated("class")
    model, method = _fitted(name, stream, "class")
    x, _ = _test_rows(stream, 1)
    logits = method.predict(model, x, 0)
    assert set(logits.argmax(1).tolist()) <= {0, 1} and torch.isinf(logits[:, 2:]).all()


def test_domain_logits_marginalise_the_task():
    """A label's logit is the log of the summed likelihoods of its components (one per task)."""
    stream = _separated("domain")
    model, method = _fitted("density", stream, "domain")
    x, _ = _test_rows(stream, 0)
    scores = method.component_scores(x.flatten(1))
    labels = method.component_label
    expected = torch.stack([torch.logsumexp(scores[:, labels == c], 1) for c in range(2)], 1)
    torch.testing.assert_close(method.predict(model, x, None), expected)


def test_density_is_the_gaussian_likelihood_when_its_rank_is_full():
    """With every direction principal, a class's PPCA model is its maximum-likelihood
    Gaussian: the scores are the Gaussian log-densities (every variance here, about 0.5, is
    above the noise floor; the float32 residual term, empty in theory, costs ~1e-3)."""
    stream = _separated("class", n=200)
    model, method = _fitted("density", stream, "class", {"rank": DIM})
    x, y, _ = stream[0].train.get(torch.arange(len(stream[0].train)))
    x = x.flatten(1)
    probe = _test_rows(stream, 0)[0].flatten(1)
    for c in range(2):
        rows = x[y == c].double()
        mean, cov = rows.mean(0), torch.cov(rows.T, correction=0)
        gauss = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
        torch.testing.assert_close(method.component_scores(probe)[:, c].double(), gauss.log_prob(probe.double()),
                                   rtol=1e-4, atol=1e-2)


def test_slda_keeps_the_class_means_and_the_pooled_covariance_whatever_the_batch():
    stream = _separated("class", n=50)
    _, small = _fitted("slda", stream, "class", {"batch_size": 7})
    _, large = _fitted("slda", stream, "class", {"batch_size": 500})
    xs, ys = zip(*[t.train.get(torch.arange(len(t.train)))[:2] for t in stream], strict=True)
    x, y = torch.cat(xs).flatten(1).double(), torch.cat(ys)
    means = torch.stack([x[y == c].mean(0) for c in range(4)])
    pooled = sum((x[y == c] - means[c]).T @ (x[y == c] - means[c]) for c in range(4)) / len(x)
    for method in (small, large):
        torch.testing.assert_close(method.slda_mean.double(), means, rtol=0, atol=1e-5)
        torch.testing.assert_close(method.slda_scatter.double() / int(method.slda_n), pooled, rtol=1e-5, atol=1e-5)
    # the linear discriminant of the shrunk covariance
    shrunk = (1 - 1e-4) * pooled + 1e-4 * torch.eye(DIM, dtype=torch.float64)
    weight = means @ torch.linalg.inv(shrunk)
    torch.testing.assert_close(large.slda_weight.double(), weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(large.slda_bias.double(), -0.5 * (weight * means).sum(1), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_gives_identical_predictions(name):
    stream = _separated("domain")
    model, method = _fitted(name, stream, "domain")
    fresh = create(name)
    fresh.load_state_dict(method.state_dict())
    x, _ = _test_rows(stream, 1)
    assert torch.equal(fresh.predict(model, x, None), method.predict(model, x, None))
    assert torch.equal(fresh.predict(model, x, 1), method.predict(model, x, 1))


@pytest.mark.parametrize("name", NAMES)
def test_before_any_task_every_label_is_equally_likely(name):
    model = build_model(ModelConfig(hidden=(4,)), (1, 2, 4))
    assert torch.equal(create(name).predict(model, torch.randn(3, 1, 2, 4), None), torch.zeros(3, 1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
def test_a_run_trains_no_network_and_records_what_it_read(tmp_path, name, scenario):
    """blobs, 3 tasks: no optimizer step, the statistics in method_state_mb, the inputs
    read as passes (density: its 150 samples of 180 training inputs; slda: all)."""
    cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 180}, "model": {"hidden": [8]},
                               "method": name, "method_params": {"samples": 150} if name == "density" else {},
                               "scenario": scenario, "train": {"epochs": 2}})
    result = run(cfg, tmp_path / "run", quiet=True)
    m = result.metrics
    assert m["passes"] == pytest.approx([150 / 180 if name == "density" else 1.0] * 3)
    assert m["method_state_mb"] > 0 and m["trains_network"] is False and m["components"] == 12
    assert m["n_params"] == m["n_shared_params"] == 0  # the unused network's are not the method's
    assert m["avg_acc"] > 0.25 if scenario == "task" else m["avg_acc"] > 0  # 4 classes a task (a weak model of blobs)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in log] == [0, 0, 0] and all(r["loss"] is None for r in log)  # no loss: null
    assert ("task_inference_acc" in m) == (scenario != "task")


def test_the_loop_gives_no_training_hook_and_no_retrain():
    """A method that trains no network gets after_task with ``retrain=None`` and no step."""
    calls: list[str] = []
    base = type(create("density"))

    class Spy(base):
        def before_step(self, model):
            calls.append("step")

        def after_task(self, model, task, ctx, retrain=None):
            calls.append(f"after_task retrain={retrain}")
            super().after_task(model, task, ctx, retrain)

    cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 100}, "model": {"hidden": [8]},
                               "method": "density"})
    run(cfg, quiet=True, method=Spy(typed(cfg).method_params))
    assert calls == ["after_task retrain=None"] * 2


@pytest.mark.parametrize(("name", "least"), [("density", 0.93), ("slda", 0.84)])
def test_class_incremental_split_mnist_without_a_network(mnist_dir, name, least):
    """The known figures, small: 2000 training and 1000 test images per task (full data:
    95.5 % and 87.2 %)."""
    cfg = RunConfig.from_dict({"stream": {"benchmark": "split-mnist", "subsample": 2000, "test_subsample": 1000},
                               "model": {"hidden": [8]}, "method": name, "scenario": "class"})
    m = run(cfg, quiet=True).metrics
    assert m["avg_acc"] >= least and m["task_inference_acc"] >= least


MIXTURE = {"components": 3, "transform": "sqrt"}


def test_a_mixture_on_square_roots_keeps_every_scenario_right_and_its_state_round_trips():
    stream = _separated("class")
    model, method = _fitted("density", stream, "class", MIXTURE)
    assert method.n_components > 4 and method.input_shift.numel() == 1  # more than one component per class
    x, y = _test_rows(stream, 1)
    assert (method.predict(model, x, None).argmax(1) == y).float().mean() >= 0.95
    fresh = create("density", MIXTURE)
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.predict(model, x, None), method.predict(model, x, None))


def test_one_component_without_a_transform_is_the_plain_density_bit_for_bit():
    stream = _separated("domain")
    model, plain = _fitted("density", stream, "domain")
    _, explicit = _fitted("density", stream, "domain", {"components": 1, "transform": "none"})
    x, _ = _test_rows(stream, 1)
    assert torch.equal(plain.predict(model, x, None), explicit.predict(model, x, None))


@pytest.mark.parametrize("params", [{"components": 0}, {"transform": "log"}])
def test_bad_mixture_settings_are_refused(params):
    with pytest.raises(ConfigError, match="components|transform"):
        create("density", params)
