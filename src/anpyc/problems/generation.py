"""Generation: one class-conditional generator (``--model vae|gan``) learns class after class,
judged by a fixed classifier (recognition share, Frechet distance), with sample grids.

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = Generation.resolve(RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist"}}))
    >>> cfg.train.optimizer, cfg.stream.standardize, Generation.labels(cfg)
    ('adam', False, 'global')
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from anpyc.config import RunConfig
from anpyc.errors import ConfigError
from anpyc.generative.evaluation import dataset_of
from anpyc.generative.judge import load_judge
from anpyc.generative.training import GenerativeTraining, resolve_train_defaults
from anpyc.loop.train import LoopState, Training
from anpyc.models.generative import GENERATIVE_MODELS, build_generative
from anpyc.problems.base import Problem
from anpyc.rundir import FID_CSV


class Generation(Problem):
    """Generators learn pixel intensities in [0, 1] (their likelihood needs them: inputs are
    never standardised) with Adam at the model's rate unless set; labels are the stream's class
    ids (the condition); each task is judged by sampling its classes."""

    name = "generation"
    models = GENERATIVE_MODELS
    forward_transfer = False
    refused_tags = frozenset({"classifier-only", "no-network"})  # replay, distillation, gates, MAS; no network

    @classmethod
    def resolve(cls, cfg: RunConfig) -> RunConfig:
        if cfg.scenario != "task":  # a conditional generator is told each class: there is nothing to hide
            raise ConfigError(f"scenario {cfg.scenario!r} applies to classifiers; a generator ({cfg.model.name}) "
                              "learns each class given its label: leave --scenario at task")
        if cfg.stream.standardize:
            cfg = cfg.replace(stream=dataclasses.replace(cfg.stream, standardize=False))
        dataset_of(cfg.stream.benchmark)  # a stream a generator cannot learn fails here
        return resolve_train_defaults(cfg)

    @classmethod
    def labels(cls, cfg: RunConfig) -> str:
        return "global"

    @classmethod
    def summary_line(cls, result: Any, out: Any) -> str:
        cfg, m = result.config, result.metrics
        return (f"{cfg.method} ({cfg.model.name}) on {m['benchmark']} ({m['n_tasks']} tasks): recognition "
                f"{100 * m['avg_acc']:.2f}%  first task {100 * m['final_acc'][0]:.2f}%  FD {m['avg_fid']:.2f}  "
                f"(judge acc {100 * m['classifier_test_acc']:.2f}%)  time {m['time_s']:.1f}s  -> {out}")

    def __init__(self, cfg: RunConfig, stream: Any) -> None:
        super().__init__(cfg, stream)
        # the judge first, before the run's seeds: training it must not shift the run's randomness
        self.judge, self.judge_info = load_judge(cfg, dataset_of(cfg.stream.benchmark), stream, None)

    def build_model(self) -> Any:
        g = self.cfg.generative
        return build_generative(self.cfg.model.name, self.stream.input_shape, self.stream.n_classes,
                                self.cfg.model.hidden, g.latent_dim, g.vae_protect)

    def training(self) -> Training:
        return GenerativeTraining(self.judge)

    def callbacks(self, model: Any) -> list[Any]:
        return [self.judge]

    def start(self, out: Path | None, state: LoopState) -> None:
        self.judge.out = out
        self.judge.bind(state.progress)  # its matrices are checkpointed with the loop's

    def describe(self) -> str:
        return f"{super().describe()} ({self.cfg.model.name})"

    def metrics(self, state: LoopState) -> dict:
        return {"model": self.cfg.model.name, **self.judge.metrics(self.stream), "classifier": dict(self.judge_info),
                "classifier_test_acc": self.judge_info["test_acc"]}

    def matrices(self, state: LoopState) -> dict[str, np.ndarray]:
        return {FID_CSV: self.judge.fid}
