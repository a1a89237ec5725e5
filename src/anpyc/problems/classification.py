"""Classification: a multi- or single-head classifier scored by accuracy, the default kind.

Example:
    >>> from anpyc.config import RunConfig
    >>> Classification.labels(RunConfig.from_dict({"scenario": "class"}))
    'global'
"""

from __future__ import annotations

from typing import Any

from anpyc.config import RunConfig
from anpyc.loop.train import RandomInitBaseline
from anpyc.models import build_model
from anpyc.problems.base import Problem
from anpyc.scenario import get_scenario


class Classification(Problem):
    """The stream's labels are the scenario's; accuracy after each task; forward transfer
    against the randomly initialised model (:class:`~anpyc.loop.train.RandomInitBaseline`)."""

    name = "classification"

    @classmethod
    def labels(cls, cfg: RunConfig) -> str:
        return get_scenario(cfg.scenario).labels

    @classmethod
    def summary_line(cls, result: Any, out: Any) -> str:
        cfg, m = result.config, result.metrics
        return (f"{cfg.method} on {m['benchmark']} ({m['n_tasks']} tasks): ACC {100 * m['avg_acc']:.2f}%  "
                f"BWT {100 * m['bwt']:+.2f} points  forgetting {100 * m['forgetting']:.2f} points  time {m['time_s']:.1f}s  -> {out}")

    def build_model(self) -> Any:
        return build_model(self.cfg.model, self.stream.input_shape)

    def callbacks(self, model: Any) -> list[Any]:
        return [RandomInitBaseline(model, self.cfg.seed)]  # the untrained model
