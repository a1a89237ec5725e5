"""Task inference (the kernel): input density on classes with fewer examples than pixels;
grouping a batch by the view it picks answers as every view answering every input would;
its cost is reported, and only where a task is inferred."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anpyc.config import RunConfig
from anpyc.data.taskdata import TaskData
from anpyc.kernels import inference
from anpyc.kernels.inference import (
    MIXTURE,
    MIXTURE_SCORES,
    PPCA_PARTS,
    TaskInference,
    fit_class_mixtures,
    fit_class_ppca,
    ppca_log_likelihoods,
    sqrt_inputs,
)
from anpyc.runner import build_stream


class _LinearViews:
    """Views that share nothing: task ``k``'s logits come from its own linear map."""

    shared_body = False

    def __init__(self, d: int, outputs: list[int]) -> None:
        gen = torch.Generator().manual_seed(0)
        self.maps = [nn.Linear(d, n) for n in outputs]
        for m in self.maps:
            nn.init.normal_(m.weight, generator=gen)
        self.calls: list[int] = []  # rows each call of logits ran

    def logits(self, k, x):
        self.calls.append(len(x))
        return self.maps[k](x.flatten(1))

    def features(self, k, x):
        return x.flatten(1)

    def features_and_logits(self, k, x):
        return self.features(k, x), self.logits(k, x)

    def head_logits(self, k, features):
        return self.maps[k](features)


def test_input_density_with_few_examples_per_class_is_finite_and_right(mnist_dir):
    """About 30 examples per class in 784 dimensions: a float32 ``eigh`` of such a low-rank
    covariance may fail or return NaN; the fit must still be finite and tell the two
    permutations apart."""
    stream = build_stream(RunConfig.from_dict({
        "stream": {"benchmark": "permuted-mnist", "tasks": 2, "subsample": 300, "test_subsample": 200},
        "scenario": "domain",
    }))
    views = _LinearViews(784, [10, 10])
    inf = TaskInference("input_density")
    for k in range(2):
        inf.record(k, stream[k].train, stream[k].val, list(range(10)), views, torch.device("cpu"))
    assert all(torch.isfinite(b).all() for name, b in inf.named_buffers() if name.startswith("in_"))
    for j in range(2):
        x = stream[j].test.get(torch.arange(200))[0]
        inf.predict(x, views)
        assert float((inf.last_views == j).float().mean()) > 0.95


def test_input_density_runs_each_input_through_its_view_once_and_answers_as_all_views_would():
    """Cheap inference: the task is chosen before any forward pass, then every row goes through
    its own view once (the batch grouped by view); the logits are those of the chosen view."""
    gen = torch.Generator().manual_seed(1)
    centres = [torch.zeros(6), torch.full((6,), 5.0), torch.full((6,), -5.0)]
    views = _LinearViews(6, [2, 3, 2])
    inf = TaskInference("input_density", rank=2)
    for k, c in enumerate(centres):
        x = c + torch.randn(60, 6, generator=gen)
        data = _data(x, torch.arange(60) % views.maps[k].out_features, k)
        inf.record(k, data, data, [10 * k + i for i in range(views.maps[k].out_features)], views, torch.device("cpu"))
    x = torch.cat([c + torch.randn(20, 6, generator=gen) for c in centres])[torch.randperm(60, generator=gen)]
    views.calls.clear()
    out = inf.predict(x, views)
    assert sum(views.calls) == len(x)  # one forward pass per input
    for k in range(3):
        rows = inf.last_views == k
        assert rows.any()
        cols = [10 * k + i for i in range(views.maps[k].out_features)]
        assert torch.allclose(out[rows][:, cols], views.maps[k](x[rows]), atol=1e-6)
        assert torch.isinf(out[rows]).sum() == rows.sum() * (out.shape[1] - len(cols))
    assert inf.cost()["forward_passes_per_input"] == 1 and inf.cost()["memory_mb"] > 0


def test_pooled_density_fits_one_ppca_per_task_and_picks_the_tasks_input_density_picks(mnist_dir):
    """``pooled_density``: one PPCA of a task's inputs, its classes pooled, a tenth of the
    per-class mixture's memory and scoring on a 10-class task; on permutations of MNIST (tasks
    that differ in the whole input) it picks the task the per-class mixture picks."""
    stream = build_stream(RunConfig.from_dict({
        "stream": {"benchmark": "permuted-mnist", "tasks": 3, "subsample": 600, "test_subsample": 300},
        "scenario": "domain",
    }))
    views = _LinearViews(784, [10, 10, 10])
    scores = {score: TaskInference(score) for score in ("input_density", "pooled_density")}
    for inf in scores.values():
        for k in range(3):
            inf.record(k, stream[k].train, stream[k].val, list(range(10)), views, torch.device("cpu"))
    pooled, mixture = scores["pooled_density"], scores["input_density"]
    assert [len(getattr(pooled, f"in_mean__{k}")) for k in range(3)] == [1, 1, 1]
    assert pooled.cost()["memory_mb"] < mixture.cost()["memory_mb"] / 5
    x = torch.cat([stream[j].test.get(torch.arange(300))[0] for j in range(3)])
    picked = {}
    for score, inf in scores.items():
        views.calls.clear()
        out = inf.predict(x, views)
        picked[score] = (inf.last_views.clone(), out)
        assert sum(views.calls) == len(x) and inf.cost()["forward_passes_per_input"] == 1
    assert torch.equal(picked["pooled_density"][0], torch.arange(3).repeat_interleave(300))
    assert torch.equal(picked["pooled_density"][0], picked["input_density"][0])
    assert torch.equal(picked["pooled_density"][1], picked["input_density"][1])


def _data(x, y, k):
    from anpyc.data.taskdata import TaskData

    return TaskData(x, y, k)


def test_task_inference_reports_its_cost_and_only_when_used():
    from anpyc.runner import run

    base = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 200}, "model": {"hidden": [16]}, "method": "packnet"}
    hidden = run(RunConfig.from_dict({**base, "scenario": "domain", "method_params": {"task_inference": "input_density"}}),
                 quiet=True).metrics
    cost = hidden["task_inference_cost"]
    assert cost["forward_passes_per_input"] == 1 and cost["score"] == "input_density" and cost["memory_mb"] > 0
    assert hidden["method_state_mb"] >= cost["memory_mb"]
    for cfg in (base, {**base, "scenario": "domain"}):  # task ids given; no task inference asked for
        assert "task_inference_cost" not in run(RunConfig.from_dict(cfg), quiet=True).metrics


def test_the_ppca_of_fewer_rows_than_pixels_is_the_covariances_own():
    """The fit from the rows' Gram matrix (fewer rows than dimensions) gives the model the
    covariance's eigendecomposition gives, to float precision."""

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=gen) @ torch.randn(8, 100, generator=gen) + 0.1 * torch.randn(60, 100, generator=gen)
    fast = inference._ppca(x, 5, 1e-3)
    centred = x - x.mean(0)
    eig, vec = torch.linalg.eigh(centred.T @ centred / len(x))
    eig, vec = eig.flip(0).clamp_min(0), vec.flip(1)
    noise = eig[5:].mean()
    slow = (x.mean(0), vec[:, :5], torch.maximum(eig[:5], noise), noise)
    stack = [{n: part.unsqueeze(0) for n, part in zip(inference.PPCA_PARTS, fit, strict=True)} for fit in (fast, slow)]
    probe = x[:30] + torch.randn(30, 100, generator=gen)
    a, b = (inference.ppca_log_likelihoods(probe, s) for s in stack)
    assert torch.allclose(a, b, rtol=1e-4) and torch.allclose(fast[2], slow[2], rtol=1e-4)
    assert torch.allclose(fast[1].T @ fast[1], torch.eye(5), atol=1e-4)  # orthonormal directions


# ---------------------------------------------------------------------- mixtures of PPCA
def _two_clusters(n: int = 300, dim: int = 6, seed: int = 0) -> torch.Tensor:
    """One class whose rows sit around two far-apart centres, each spread along its own axis."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, dim, generator=g) * 0.3
    a[:, 0] *= 10
    b = torch.randn(n, dim, generator=g) * 0.3
    b[:, 1] *= 10
    b[:, 2] += 20
    return torch.cat([a, b])


def test_one_mixture_component_is_the_class_ppca_bit_for_bit():
    x = torch.randn(200, 7)
    y = torch.arange(200) % 3
    classes, fits = fit_class_ppca(TaskData(x, y, 0), 2000, rank=2, floor=1e-2, device=torch.device("cpu"))
    labels, mixed = fit_class_mixtures(x, y, rank=2, floor=1e-2, components=1)
    assert labels == classes
    for name in PPCA_PARTS:
        assert torch.equal(mixed[name], fits[name])
    assert torch.equal(mixed["log_weight"], torch.zeros(3))


def test_a_mixture_finds_two_clusters_and_explains_them_better_than_one_model():
    x = _two_clusters()
    y = torch.zeros(len(x), dtype=torch.long)
    _, one = fit_class_mixtures(x, y, rank=1, floor=1e-3, components=1)
    labels, two = fit_class_mixtures(x, y, rank=1, floor=1e-3, components=2, generator=torch.Generator().manual_seed(0))
    assert labels == [0, 0]
    assert torch.allclose(two["log_weight"].exp(), torch.full((2,), 0.5), atol=0.02)  # half the rows each
    mixture = torch.logsumexp(ppca_log_likelihoods(x, two) + two["log_weight"], 1)
    assert mixture.mean() > ppca_log_likelihoods(x, one)[:, 0].mean() + 5


def test_a_class_with_too_few_rows_gets_fewer_components_and_the_draw_follows_the_generator():
    x, y = _two_clusters(n=20), torch.zeros(40, dtype=torch.long)
    labels, _ = fit_class_mixtures(x, y, rank=4, floor=1e-2, components=8)
    assert 1 <= len(labels) <= 40 // 6
    draws = [fit_class_mixtures(_two_clusters(), torch.zeros(600, dtype=torch.long), rank=1, floor=1e-2, components=4,
                                generator=torch.Generator().manual_seed(s))[1]["mean"] for s in (3, 3)]
    assert torch.equal(*draws)


def test_sqrt_inputs_take_the_root_above_the_black_level_and_clamp_below_it():
    x = torch.tensor([[-1.0, 0.0, 3.0], [-2.0, 8.0, -1.0]])
    assert torch.equal(sqrt_inputs(x, -1.0), torch.tensor([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0]]))


@pytest.mark.parametrize("protocol", ["split-mnist-class", "split-fmnist-class"])
def test_the_mixture_score_is_the_form_the_density_preset_chose(protocol):
    """A protocol whose ``+inference`` rows infer the task by a mixture score
    (``mixture_density``, ``mixture_combined``) models a class as its ``density`` preset does:
    the network rows get the very model of the inputs the density row is."""
    from anpyc.experiments import presets
    from anpyc.experiments.protocols import PROTOCOLS

    assert PROTOCOLS[protocol].inference in MIXTURE_SCORES
    chosen = presets.load_preset(presets.preset_name("density", protocol))["method_params"]
    assert {key: chosen[key] for key in MIXTURE} == MIXTURE
    assert chosen["rank"] == TaskInference("mixture_density").rank
    assert chosen["samples"] == TaskInference("mixture_density").samples


def test_mixture_combined_scores_each_class_by_its_components_summed_and_with_weight_0_is_the_density():
    """``mixture_combined``: a (task, class) pair's input log-likelihood is its components'
    likelihoods, each weighted by its share, summed (the ``density`` method's class score);
    at weight 0 every input gets the class the mixture alone gives it."""
    gen = torch.Generator().manual_seed(2)
    views = _LinearViews(6, [2, 2])
    inf = TaskInference("mixture_combined", rank=1)
    for k in range(2):
        x = _two_clusters(n=60, seed=k) + 3 * k
        data = _data(x, (torch.arange(120) >= 60).long(), k)
        inf.record(k, data, data, [2 * k, 2 * k + 1], views, torch.device("cpu"), generator=gen)
    x = torch.cat([_two_clusters(n=20, seed=5) + 3 * k for k in range(2)])
    fits, task, output = inf._stack()
    per_row = ppca_log_likelihoods(sqrt_inputs(x, inf.in_shift), fits) + fits["log_weight"]
    expected = torch.stack([torch.logsumexp(per_row[:, (task == k) & (output == c)], 1)
                            for k in range(2) for c in range(2)], 1)
    assert torch.allclose(inf._pair_density(x), expected)
    inf.history["weight_hits"] = [1] + [0] * (len(inf.history["weight_hits"]) - 1)  # weight 0 chosen
    assert inf.weight == 0.0
    assert torch.equal(inf.predict(x, views).argmax(1), expected.argmax(1))  # labels 0..3 in pair order
    cost = inf.cost()
    assert cost["score"] == "mixture_combined" and cost["forward_passes_per_input"] == 2 and "weight_hits" in cost


def test_mixture_evidence_adds_the_views_features_and_chooses_both_weights_on_validation():
    """``mixture_evidence``: the pairs of ``mixture_combined`` plus the log-likelihood of the
    view's features under a PPCA model of the pair's class; with the features' weight 0 it
    answers as ``mixture_combined`` does; both weights are chosen from validation hits."""
    views = _LinearViews(6, [2, 2])
    scores = {name: TaskInference(name, rank=1) for name in ("mixture_combined", "mixture_evidence")}
    for k in range(2):
        x = _two_clusters(n=60, seed=k) + 3 * k
        data = _data(x, (torch.arange(120) >= 60).long(), k)
        for inf in scores.values():
            inf.record(k, data, data, [2 * k, 2 * k + 1], views, torch.device("cpu"),
                       generator=torch.Generator().manual_seed(k))
    evidence, combined = scores["mixture_evidence"], scores["mixture_combined"]
    assert len(evidence.history["weight_hits"]) == len(inference.COMBINED_WEIGHTS) * len(inference.FEATURE_WEIGHTS)
    assert len(combined.history["weight_hits"]) == len(inference.COMBINED_WEIGHTS)
    x = torch.cat([_two_clusters(n=20, seed=5) + 3 * k for k in range(2)])
    (density, head, feats), task, label = evidence._pair_parts(x, views)
    (density_c, head_c), _, _ = combined._pair_parts(x, views)
    assert torch.equal(density, density_c) and torch.equal(head, head_c)
    expected = torch.cat([ppca_log_likelihoods(x, evidence._feature_fits(k)) for k in range(2)], 1)
    assert torch.allclose(feats, expected)
    grid = evidence.weight_grid
    evidence.history["weight_hits"] = [int(w == 3.0 and v == 0.0) for w, v in grid]
    combined.history["weight_hits"] = [int(w == 3.0) for w in inference.COMBINED_WEIGHTS]
    assert evidence.weights == (3.0, 0.0)
    assert torch.equal(evidence.predict(x, views), combined.predict(x, views))
    evidence.history["weight_hits"] = [int(w == 0.0 and v == 1.0) for w, v in grid]
    assert torch.equal(evidence.predict(x, views).argmax(1), label[(density + feats).argmax(1)])
    cost = evidence.cost()
    assert cost["weight"] == 0.0 and cost["feature_weight"] == 1.0 and cost["weight_hits"]["0,1"] == 1
    assert all(p >= 120 for p in cost["decision_forward_passes"])  # the features' fit and the choice


def test_the_run_config_accepts_every_score_and_nothing_else():
    from typing import get_args

    from anpyc.config import RunConfig, _field_type

    assert get_args(_field_type(RunConfig, "task_inference")) == ("none", *inference.SCORES)


class _ConfidentViews(_LinearViews):
    """View ``k`` answers with confidence on inputs whose feature ``k`` is large, and is unsure
    (equal logits) on inputs where it is 0."""

    def __init__(self) -> None:
        super().__init__(2, [2, 2])

    def logits(self, k, x):
        self.calls.append(len(x))
        return torch.stack([8 * x[:, k], torch.zeros(len(x))], 1)


def test_entropy_picks_the_view_that_is_surest_of_the_input_against_its_own_validation():
    """``entropy``: every view answers; the task is the view whose output entropy is lowest
    relative to that view's entropy on its own task's validation inputs."""
    gen = torch.Generator().manual_seed(0)

    def rows(k, n):  # task k's inputs: feature k far from 0, the other 0
        x = torch.zeros(n, 2)
        x[:, k] = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) * (2 + torch.rand(n, generator=gen))
        return x, (x[:, k] < 0).long()

    views, inf = _ConfidentViews(), TaskInference("entropy")
    for k in range(2):
        x, y = rows(k, 40)
        inf.record(k, _data(x, y, k), _data(x, y, k), [2 * k, 2 * k + 1], views, torch.device("cpu"))
    x0, y0 = rows(0, 30)
    x1, y1 = rows(1, 30)
    out = inf.predict(torch.cat([x0, x1]), views)
    assert inf.last_views.tolist() == [0] * 30 + [1] * 30
    assert out.argmax(1).tolist() == (2 * 0 + y0).tolist() + (2 * 1 + y1).tolist()
