"""The generative judge's bookkeeping (:mod:`anpyc.generative.judge`): which samples and which
real images each figure compares, without training a generator or a judging classifier."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from anpyc.generative.judge import GenerativeJudge


class _Sampler(nn.Module):
    """A stand-in generator: uniform noise from the generator it is given."""

    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(len(labels), 3, generator=generator)


def _judge(tasks: int = 2) -> GenerativeJudge:
    judge = object.__new__(GenerativeJudge)  # no classifier: the scores are stubbed below
    judge.seed, judge.samples, judge.columns, judge.out, judge.grid_rows = 0, 4, 1, None, []
    judge.test_feats, judge.val_feats = {0: "test images", 1: "test images"}, {0: "val images", 1: "val images"}
    judge.shapes = {"fid": (tasks, tasks), "val_fid": (tasks, tasks), "class_recognition": (tasks, 2),
                    "class_fid": (tasks, 2)}
    judge.bind({})
    return judge


def test_validation_figures_score_other_samples_against_validation_images():
    """What tuning selects on (the validation recognition and FID) compares a second draw of
    samples with the validation images; the test figures, a first draw with the test images."""
    judge = _judge()
    seen = []
    judge.draw = lambda model, c, n, draw: torch.full((n,), float(draw))

    def score(images, c, real):
        seen.append((int(images[0]), real[c]))
        return (0.9, 1.0) if real[c] == "test images" else (0.1, 2.0)

    judge.score = score
    assert judge(None, None, SimpleNamespace(id=0, classes=(0,)), 0, None) == (0.9, 0.1)
    assert seen == [(0, "test images"), (1, "val images")]
    assert (judge.fid[0, 0], judge.val_fid[0, 0]) == (1.0, 2.0)


def test_each_draw_has_its_own_samples_and_repeats_them():
    judge = _judge()
    first, again, other = (judge.draw(_Sampler(), 1, 5, d) for d in (0, 0, 1))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_tasks_record_averages_the_distance_over_every_task_seen():
    judge = _judge()
    judge.fid[1, :2] = [1.0, 3.0]
    record = {"task": 1}
    judge.on_task_end(SimpleNamespace(stream=[SimpleNamespace(classes=(0,)), SimpleNamespace(classes=(1,))]), record)
    assert record["fid"] == [1.0, 3.0] and record["avg_fid"] == pytest.approx(2.0)
