"""Continual generation: how the one loop trains a generator (``--model vae|gan``).

Each task of a split stream (``split-mnist``, ``split-fashion-mnist``; by class with
``classes_per_task: 1`` or by pair) brings new classes to one class-conditional generator.
The continual-learning method is the same object as for classifiers and the loop is the same
one (:func:`anpyc.loop.train.train_stream`, the only caller of the hooks): the generation
problem kind (:mod:`anpyc.problems.generation`) passes it :class:`GenerativeTraining`, with
its own fit (:func:`fit_generative`: the model's loss, Adam with the model's betas, the GAN's
discriminator trained first on each batch by its own optimizer, without hooks) and its own
evaluation (:class:`anpyc.generative.judge.GenerativeJudge`: samples of each task's classes,
drawn inside the method's evaluation context).

Outputs follow the classification run-directory contract (``config.yaml``, ``log.jsonl``,
``run.log``, ``metrics.json``, ``acc_matrix.csv``, ``val_acc_matrix.csv``, checkpoints,
TensorBoard), where ``R[i][j]`` is the *recognition share* of task ``j``'s classes after
training task ``i`` (:mod:`anpyc.generative.evaluation`), plus ``fid_matrix`` (Frechet
distance to real test images on the judging classifier's features; ``val_fid_matrix`` against
validation images), ``class_recognition`` (per class) and one sample grid per task in
``samples/task_<t>.png`` (a row per class seen so far).

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist",
    ...     "classes_per_task": 1}, "method": "finetune"})
    >>> resolve_train_defaults(cfg).train.optimizer
    'adam'
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.loop.train import Training, fit
from anpyc.models.generative import GenerativeModel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from anpyc.data.batches import SplitData
    from anpyc.data.streams import Task
    from anpyc.loop.train import Predict
    from anpyc.methods.base import Method
    from anpyc.scenario import HookContext

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


def make_generative_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig,
                              betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the model family's betas, or SGD when asked for."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def fit_generative(
    model: GenerativeModel, method: Method, data: SplitData, cfg: TrainConfig,
    epochs: float, generator: torch.Generator, optimizer: torch.optim.Optimizer | None = None,
    aux_optimizer: torch.optim.Optimizer | None = None, **kwargs,
) -> dict:
    """:func:`anpyc.loop.train.fit` for a generator: ``model.loss`` as the task loss, Adam (the
    model family's betas; fresh unless ``optimizer`` is given), and the auxiliary network (the
    GAN's discriminator) stepped first on every batch by its own optimizer (``aux_optimizer``,
    fresh unless given). Returns ``fit``'s stats (with ``aux_loss``, the auxiliary network's
    last-epoch mean loss)."""
    optimizer = optimizer or make_generative_optimizer(model.training_parameters(), cfg, model.adam_betas)
    aux_params = model.auxiliary_parameters()
    aux_step = None
    if aux_params:
        aux_opt = aux_optimizer or make_generative_optimizer(aux_params, cfg, model.adam_betas)

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


class GenerativeTraining(Training):
    """How the loop trains and scores a generator: no head (a task only brings new class
    codes), Adam with the model family's betas over the generator's parameters, fresh for every
    task, and one for the auxiliary network (the GAN's discriminator), both in the loop state
    (a checkpoint holds them); :func:`fit_generative`; the judge scores each task."""

    mixes_tasks = False  # the judge samples each task's classes: there are no test rows to mix

    def __init__(self, judge: Callable[[GenerativeModel, Predict, Task, int, TrainConfig],
                                       tuple[float, float]]) -> None:
        self.judge = judge

    def begin_task(self, model: GenerativeModel, task: Task, seen: Sequence[Task],
                   ctx: HookContext) -> None:
        """A conditional generator needs no per-task head: a task only brings new class codes."""

    def task_optimizer(self, model: GenerativeModel, method: Method,
                       kept: torch.optim.Optimizer | None,
                       cfg: TrainConfig) -> torch.optim.Optimizer:
        return make_generative_optimizer(model.training_parameters(), cfg, model.adam_betas)

    def aux_optimizer(self, model: GenerativeModel,
                      cfg: TrainConfig) -> torch.optim.Optimizer | None:
        params = model.auxiliary_parameters()
        return make_generative_optimizer(params, cfg, model.adam_betas) if params else None

    def fit(self, model: GenerativeModel, method: Method, data: SplitData,
            cfg: TrainConfig, epochs: float, generator: torch.Generator, **kwargs) -> dict:
        return fit_generative(model, method, data, cfg, epochs, generator, **kwargs)

    def evaluate(self, model: GenerativeModel, predict: Predict, task: Task, after_task: int,
                 cfg: TrainConfig) -> tuple[float, float]:
        return self.judge(model, predict, task, after_task, cfg)
