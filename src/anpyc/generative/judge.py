"""Judging a continual generator after each task: recognition share and Frechet distance of
generated samples per class (with :mod:`anpyc.generative.evaluation`'s fixed classifier), and
one sample grid per task.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist"}})
    >>> judge, info = load_judge(cfg, "mnist", stream, None)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.data.streams import Stream
from anpyc.data.taskdata import ConcatData
from anpyc.generative.evaluation import (
    EvalClassifier,
    frechet_distance,
    load_or_train_classifier,
    predict,
    real_features,
)
from anpyc.generative.images import save_grid
from anpyc.models.generative import GenerativeModel
from anpyc.rundir import SAMPLES
from anpyc.utils import eval_mode, seeded_generator

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.loop.train import Loop, Predict


@torch.no_grad()
def generate(model: GenerativeModel, cls: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images of class ``cls`` in [0, 1], in eval mode."""
    with eval_mode(model):
        return model.sample(torch.full((n,), int(cls), dtype=torch.long), generator).cpu()


class GenerativeJudge:
    """The evaluation of a generative run, and a loop callback.

    After task ``i`` it scores every class of task ``j`` (inside the method's evaluation
    context, which the loop enters): recognition share of generated samples by the judging
    classifier and Frechet distance to real test (validation) images, with the same latent
    codes after every task and for every method of a seed (paired comparisons). It keeps the
    FID matrices and per-class figures in the loop's progress (:meth:`bind`: a checkpoint saves
    them with the accuracy matrices, a resumed run goes on from them), adds them to each task's
    record and draws one sample grid per task (``samples/task_<i>.png``)."""

    #: the judge's matrices in the loop's progress (T x T, T x T, T x classes, T x classes)
    KEYS = ("fid", "val_fid", "class_recognition", "class_fid")

    def __init__(self, clf: EvalClassifier, stream: Stream, seed: int, samples: int, columns: int, out: Path | None) -> None:
        self.clf, self.seed, self.samples, self.columns, self.out = clf, seed, samples, columns, out
        classes = [c for task in stream for c in task.classes]
        self.test_feats = real_features(clf, ConcatData([t.test for t in stream]), classes)
        self.val_feats = real_features(clf, ConcatData([t.val for t in stream]), classes)
        self.shapes = dict(zip(self.KEYS, [(len(stream),) * 2] * 2 + [(len(stream), stream.n_classes)] * 2))
        self.progress: dict = {}
        self.bind(self.progress)
        self.grid_rows: list[torch.Tensor] = []

    def bind(self, progress: dict) -> None:
        """Keep the matrices in ``progress`` (the loop state's; those it holds already, from a
        checkpoint, are kept)."""
        for key, shape in self.shapes.items():
            progress.setdefault(key, np.full(shape, np.nan))
        self.progress = progress

    @property
    def fid(self) -> np.ndarray:
        return self.progress["fid"]

    @property
    def val_fid(self) -> np.ndarray:
        return self.progress["val_fid"]

    @property
    def per_class(self) -> np.ndarray:
        return self.progress["class_recognition"]

    @property
    def per_class_fid(self) -> np.ndarray:
        return self.progress["class_fid"]

    def draw(self, model: GenerativeModel, cls: int, n: int, draw: int) -> torch.Tensor:
        return generate(model, cls, n, seeded_generator(self.seed, 7, draw, cls))

    def score(self, images: torch.Tensor, cls: int, real: dict[int, np.ndarray]) -> tuple[float, float]:
        pred, feats = predict(self.clf, images)
        share = float((pred == cls).float().mean())
        fid = frechet_distance(real[cls], feats.numpy()) if len(real.get(cls, ())) >= 2 else math.nan
        return share, fid

    def __call__(self, model: GenerativeModel, _predict: Predict, task: Task, after_task: int,
                 cfg: TrainConfig) -> tuple[float, float]:
        i, j = after_task, task.id
        shares, vshares, fids, vfids = [], [], [], []
        for c in task.classes:
            share, fid = self.score(self.draw(model, c, self.samples, 0), c, self.test_feats)
            vshare, vfid = self.score(self.draw(model, c, self.samples, 1), c, self.val_feats)
            shares.append(share), vshares.append(vshare), fids.append(fid), vfids.append(vfid)
            self.per_class[i, c], self.per_class_fid[i, c] = share, fid
            self.grid_rows.append(self.draw(model, c, self.columns, 2))
        self.fid[i, j], self.val_fid[i, j] = float(np.mean(fids)), float(np.mean(vfids))
        return float(np.mean(shares)), float(np.mean(vshares))

    def on_task_end(self, loop: Loop, record: dict) -> None:
        t = record["task"]
        record["classes"] = list(loop.stream[t].classes)
        record["fid"] = self.fid[t, : t + 1].tolist()
        record["avg_fid"] = float(np.mean(self.fid[t, : t + 1]))
        grid = None
        if self.out is not None:
            grid = save_grid(self.out / SAMPLES / f"task_{t}.png", torch.stack(self.grid_rows))
        record["grid"] = str(grid) if grid else None
        self.grid_rows = []

    def metrics(self, stream: Stream) -> dict:
        """The generative figures of ``metrics.json``."""
        T = len(stream)
        return {
            "metric": "recognition share of generated samples by the judging classifier",
            "fid_matrix": self.fid.tolist(),
            "val_fid_matrix": self.val_fid.tolist(),
            "avg_fid": float(np.mean(self.fid[T - 1])),
            "class_recognition": self.per_class.tolist(),
            "class_fid": self.per_class_fid.tolist(),
            "task_classes": [list(task.classes) for task in stream],
            "samples_per_class": self.samples,
        }


def load_judge(cfg: RunConfig, dataset: str, stream: Stream, out: Path | None) -> tuple[GenerativeJudge, dict]:
    """The judging classifier (trained now or read from the cache) wrapped as the run's
    evaluator; also returns the classifier's description for ``metrics.json``."""
    g = cfg.generative
    clf, info = load_or_train_classifier(dataset, cfg.stream.data_dir, g.classifier, g.classifier_epochs,
                                         g.classifier_seed, g.classifier_subsample)
    return GenerativeJudge(clf, stream, cfg.seed, g.samples_per_class, g.grid_columns, out), info
