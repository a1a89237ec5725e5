"""Continual generation: the training loop and runner for ``--model vae|gan``.

Each task of a split stream (``split-mnist``, ``split-fashion-mnist``; by class with
``classes_per_task: 1`` or by pair) brings new classes to one class-conditional generator.
The continual-learning method is the same object as for classifiers and the loop is the same
one (:func:`anpyc.loop.train.train_stream`, the only caller of the hooks): this module passes it
its own ``fit`` (:func:`fit_generative`: the model's loss, Adam with the model's betas, the
GAN's discriminator trained first on each batch by its own optimizer, without hooks) and
its own ``evaluate`` (:class:`GenerativeJudge`: samples of each task's classes, drawn inside
the method's evaluation context).

Outputs follow the classification run-directory contract (``config.yaml``, ``log.jsonl``,
``run.log``, ``metrics.json``, ``acc_matrix.csv``, ``val_acc_matrix.csv``), where
``R[i][j]`` is the *recognition share* of task ``j``'s classes after training task ``i``
(:mod:`anpyc.generative.evaluation`), plus ``fid_matrix`` (Frechet distance to real test images
on the judging classifier's features; ``val_fid_matrix`` against validation images),
``class_recognition`` (per class) and one sample grid per task in
``samples/task_<t>.png`` (a row per class seen so far).

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist",
    ...     "classes_per_task": 1}, "method": "finetune"})
    >>> from anpyc.runner import run
    >>> result = run(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.data.streams import Stream
from anpyc.data.taskdata import ConcatData, TaskData
from anpyc.generative.evaluation import (
    EvalClassifier,
    frechet_distance,
    load_or_train_classifier,
    predict,
    real_features,
)
from anpyc.generative.images import save_grid
from anpyc.loop.train import fit
from anpyc.models.generative import GenerativeModel
from anpyc.rundir import SAMPLES
from anpyc.utils import eval_mode, seeded_generator

log = logging.getLogger(__name__)


def resolve_train_defaults(cfg: RunConfig) -> RunConfig:
    """Generative models train with Adam. A run that kept the classification defaults
    (``optimizer: sgd``, ``lr: 0.1``) gets Adam at the model's learning rate (VAE 1e-3, GAN
    2e-4); the saved ``config.yaml`` shows what was used. Explicit choices are kept."""
    from anpyc.models.generative import ConditionalGAN, ConditionalVAE

    t = cfg.train
    if t.optimizer == "sgd" and t.lr == TrainConfig().lr:
        lr = (ConditionalGAN if cfg.model.name == "gan" else ConditionalVAE).default_lr
        log.info("generative model: using Adam with lr %g (the classification default is SGD, lr 0.1)", lr)
        return cfg.replace(train=TrainConfig(**{**t.__dict__, "optimizer": "adam", "lr": lr}))
    return cfg


def make_generative_optimizer(params, cfg: TrainConfig, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the model family's betas, or SGD when asked for."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def fit_generative(
    model: GenerativeModel, method, data: TaskData | ConcatData, cfg: TrainConfig, epochs: int,
    generator: torch.Generator, optimizer=None, **kwargs,
) -> dict:
    """:func:`anpyc.loop.train.fit` for a generator: ``model.loss`` as the task loss, a fresh Adam
    (the model family's betas) per call, and the auxiliary network (the GAN's discriminator)
    stepped first on every batch by its own optimizer. Returns ``fit``'s stats (with
    ``aux_loss``, the auxiliary network's last-epoch mean loss)."""
    optimizer = make_generative_optimizer(model.training_parameters(), cfg, model.adam_betas)
    aux_params = model.auxiliary_parameters()
    aux_step = None
    if aux_params:
        aux_opt = make_generative_optimizer(aux_params, cfg, model.adam_betas)

        def aux_step(x: torch.Tensor, y: torch.Tensor) -> float:
            aux_loss = model.auxiliary_loss(x, y)
            aux_opt.zero_grad(set_to_none=True)
            aux_loss.backward()
            aux_opt.step()
            return float(aux_loss.detach())

    return fit(model, method, data, cfg, epochs, generator, optimizer=optimizer, loss_fn=_generative_loss,
               aux_step=aux_step, params=model.training_parameters(), **kwargs)


def _generative_loss(model: GenerativeModel, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return model.loss(x, y)


def no_head(model, task, seen, ctx) -> None:
    """A conditional generator needs no per-task head: a task only brings new class codes."""


@torch.no_grad()
def generate(model: GenerativeModel, cls: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images of class ``cls`` in [0, 1], in eval mode."""
    with eval_mode(model):
        return model.sample(torch.full((n,), int(cls), dtype=torch.long), generator).cpu()


class GenerativeJudge:
    """The ``evaluate`` of a generative run, and a loop callback.

    After task ``i`` it scores every class of task ``j`` (inside the method's evaluation
    context, which the loop enters): recognition share of generated samples by the judging
    classifier and Frechet distance to real test (validation) images, with the same latent
    codes after every task and for every method of a seed (paired comparisons). It keeps the
    FID matrices and per-class figures, adds them to each task's record and draws one sample
    grid per task (``samples/task_<i>.png``)."""

    def __init__(self, clf: EvalClassifier, stream: Stream, seed: int, samples: int, columns: int, out: Path | None) -> None:
        self.clf, self.seed, self.samples, self.columns, self.out = clf, seed, samples, columns, out
        classes = [c for task in stream for c in task.classes]
        self.test_feats = real_features(clf, ConcatData([t.test for t in stream]), classes)
        self.val_feats = real_features(clf, ConcatData([t.val for t in stream]), classes)
        T, C = len(stream), stream.n_classes
        self.fid, self.val_fid = np.full((T, T), np.nan), np.full((T, T), np.nan)
        self.per_class, self.per_class_fid = np.full((T, C), np.nan), np.full((T, C), np.nan)
        self.grid_rows: list[torch.Tensor] = []

    def draw(self, model: GenerativeModel, cls: int, n: int, draw: int) -> torch.Tensor:
        return generate(model, cls, n, seeded_generator(self.seed, 7, draw, cls))

    def score(self, images: torch.Tensor, cls: int, real: dict[int, np.ndarray]) -> tuple[float, float]:
        pred, feats = predict(self.clf, images)
        share = float((pred == cls).float().mean())
        fid = frechet_distance(real[cls], feats.numpy()) if len(real.get(cls, ())) >= 2 else math.nan
        return share, fid

    def __call__(self, model: GenerativeModel, _predict, task, after_task: int, cfg: TrainConfig) -> tuple[float, float]:
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

    def on_task_end(self, loop, record: dict) -> None:
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
