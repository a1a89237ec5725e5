"""Mixed test streams: without task ids (domain, class) the rows of every seen task are
shuffled together in batches that cross tasks. A method's answer (with task inference or without) to a row must not depend on
the rows it comes with: every method predicts the same for every row under two shufflings
and two batch sizes, and the loop's accuracy matrix does not move with the batch size."""

import numpy as np
import pytest
import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.data.taskdata import ConcatData, TaskData
from anpyc.loop.train import mixed_accuracy
from anpyc.methods import method_names
from anpyc.parallel.collectives import rank_shuffled_batches
from anpyc.runner import build_stream, run
from anpyc.utils import eval_mode

BLOBS = {"stream": {"benchmark": "blobs", "tasks": 3, "subsample": 120, "test_subsample": 90},
         "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 40}}
FAST = {"anpyc": {"importance_samples": 50}, "ewc": {"fisher_samples": 50}, "online-ewc": {"fisher_samples": 50},
        "mas": {"samples": 50}, "er": {"buffer": 20}, "derpp": {"buffer": 20}}


def _predictions(result, tasks, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every test row of every task, in one shuffled stream (``seed``, ``batch_size``): the
    method's label and inferred task for each, back in the rows' own order."""
    model, method = result.model, result.method
    data = ConcatData([t.test for t in tasks])
    labels, views = np.full(len(data), -1), np.full(len(data), -1)
    with eval_mode(model), method.eval_context(model, None), torch.no_grad():
        for (x, _, _), rows in rank_shuffled_batches(data, batch_size, torch.Generator().manual_seed(seed)):
            labels[rows.numpy()] = method.predict(model, x, None).argmax(1).numpy()
            inferred = method.inferred_tasks()
            if inferred is not None:
                views[rows.numpy()] = inferred.numpy()
    return labels, views


@pytest.mark.parametrize("scenario", ["domain", "class"])
@pytest.mark.parametrize("name", method_names())
def test_every_method_predicts_each_row_alike_whatever_its_batch(name, scenario):
    cfg = RunConfig.from_dict({**BLOBS, "method": name, "method_params": FAST.get(name, {}), "scenario": scenario})
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    a_labels, a_views = _predictions(result, stream, seed=1, batch_size=7)
    b_labels, b_views = _predictions(result, stream, seed=2, batch_size=64)
    assert (a_labels >= 0).all()
    assert np.array_equal(a_labels, b_labels) and np.array_equal(a_views, b_views)


INFERRED = [(m, "input_density") for m in method_names(without={"no-network"})] + [
    ("hat", score) for score in ("entropy", "feature_density", "combined", "mixture_combined",
                                             "mixture_evidence")]


@pytest.mark.parametrize("scenario", ["domain", "class"])
@pytest.mark.parametrize("name, score", INFERRED)
def test_every_method_with_task_inference_predicts_each_row_alike_whatever_its_batch(name, score, scenario):
    """``<method>+inference``: the task inferred and the view answering depend on the row alone."""
    params = {**FAST.get(name, {}), "task_inference": score}
    cfg = RunConfig.from_dict({**BLOBS, "method": name, "method_params": params, "scenario": scenario})
    stream = build_stream(cfg)
    result = run(cfg, quiet=True, stream=stream)
    a_labels, a_views = _predictions(result, stream, seed=1, batch_size=7)
    b_labels, b_views = _predictions(result, stream, seed=2, batch_size=64)
    assert (a_labels >= 0).all() and (a_views >= 0).all()
    assert np.array_equal(a_labels, b_labels) and np.array_equal(a_views, b_views)


def test_the_accuracy_matrix_does_not_move_with_the_test_batch_size():
    results = []
    for batch_size in (7, 1000):
        cfg = RunConfig.from_dict({**BLOBS, "method": "packnet", "scenario": "class",
                                   "train": {**BLOBS["train"], "eval_batch_size": batch_size}})
        results.append(run(cfg, quiet=True))
    assert np.array_equal(results[0].acc_matrix, results[1].acc_matrix, equal_nan=True)
    assert np.array_equal(results[0].val_acc_matrix, results[1].val_acc_matrix, equal_nan=True)


def test_batches_cross_tasks_and_each_row_is_scored_for_its_own_task():
    """A predictor that answers from the row alone, right on task 0 and wrong on task 1:
    the mixed batches hold rows of both, and the per-task accuracies come out apart."""
    a = TaskData(torch.zeros(30, 2), torch.zeros(30, dtype=torch.long), 0)
    b = TaskData(torch.ones(20, 2), torch.zeros(20, dtype=torch.long), 1)
    mixed = []

    def predict(x, part):
        mixed.append(len(set(part.tolist())) > 1)
        return torch.stack([1 - x[:, 0], x[:, 0]], 1)  # label 0 for zeros, 1 for ones

    accs = mixed_accuracy(predict, [a, b], TrainConfig(eval_batch_size=10), torch.Generator().manual_seed(0))
    assert accs == [1.0, 0.0] and any(mixed)
