"""What a kind of problem brings to a run: the interface the runner's one path uses.

A problem kind (classification, generation) decides the stream settings its model needs, the
labels of its stream, how its model is built, how the loop trains and scores it
(:class:`anpyc.loop.train.Training`), which callbacks it adds (a baseline, a judge) and the
figures it adds to ``metrics.json`` and the run directory. The runner asks the kind of the
run's model (:func:`anpyc.problems.problem_for`) and does the rest the same way for all:
run directory, checkpoints and resume, logs, TensorBoard, several processes.

Example:
    >>> from anpyc.config import RunConfig
    >>> from anpyc.problems import problem_for
    >>> problem_for(RunConfig.from_dict({"model": {"name": "vae"}})).name
    'generation'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from anpyc.config import RunConfig
from anpyc.loop.train import LoopState, Training


class Problem:
    """One kind of problem. Class methods work on configs (before anything is built); an
    instance is one run's: ``Problem(cfg, stream)``, with ``cfg`` as :meth:`resolve` left it."""

    name: ClassVar[str] = "problem"
    #: model names this kind claims (``--model``); the kind that claims none is the default
    models: ClassVar[tuple[str, ...]] = ()
    #: measure each task's accuracy before it is trained (forward transfer)
    forward_transfer: ClassVar[bool] = True
    #: method tags (:attr:`anpyc.methods.base.Method.tags`) this kind cannot train
    refused_tags: ClassVar[frozenset[str]] = frozenset()

    # ----------------------------------------------------------------- configs
    @classmethod
    def resolve(cls, cfg: RunConfig) -> RunConfig:
        """``cfg`` with the settings this kind needs (its stream and training defaults);
        raises :class:`~anpyc.errors.AnpycError` for a setting it cannot run."""
        return cfg

    @classmethod
    def labels(cls, cfg: RunConfig) -> str:
        """The labels of the stream: ``local`` (per task) or ``global`` (the stream's classes)."""
        raise NotImplementedError

    @classmethod
    def summary_line(cls, result: Any, out: Any) -> str:
        """One line about a finished run (what ``anpyc run`` prints)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- one run
    def __init__(self, cfg: RunConfig, stream: Any) -> None:
        self.cfg, self.stream = cfg, stream

    def build_model(self) -> Any:
        raise NotImplementedError

    def training(self) -> Training:
        """How the loop begins, trains and scores a task of this kind."""
        return Training()

    def callbacks(self, model: Any) -> list[Any]:
        """Loop callbacks of this kind, made from the freshly built (untrained) model."""
        return []

    def start(self, out: Path | None, state: LoopState) -> None:
        """The run directory (``None``: none) and the loop state (fresh or restored) are known."""

    def describe(self) -> str:
        """What the progress bar calls the run."""
        return f"{self.cfg.method} on {self.stream.name}"

    def metrics(self, state: LoopState) -> dict:
        """Figures of this kind for ``metrics.json`` (after the common ones)."""
        return {}

    def matrices(self, state: LoopState) -> dict[str, np.ndarray]:
        """More matrices for the run directory: file name -> T x T matrix."""
        return {}
