"""The method a run trains: the method its config names, wrapped for the run options every
method accepts (:data:`anpyc.config.RUN_OPTIONS`): task inference
(:mod:`anpyc.methods.task_inference`) or replay drawn from the density model
(:mod:`anpyc.methods.density_replay`). Kept out of the registry: the wrappers use methods
(``density``, ``replay``) that import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anpyc.config import RunConfig
from anpyc.methods.base import MethodWrapper
from anpyc.methods.density_replay import DensityReplayed
from anpyc.methods.registry import create
from anpyc.methods.task_inference import TaskInferred

if TYPE_CHECKING:
    from anpyc.methods.base import Method


def for_run(cfg: RunConfig, method: Method | None = None) -> Method:
    """The method object a run trains: ``method`` (default: built from ``cfg``), wrapped for
    task inference when ``cfg.task_inference`` asks (:class:`anpyc.methods.task_inference.TaskInferred`),
    for replay from the density model when ``cfg.density_replay`` does
    (:class:`anpyc.methods.density_replay.DensityReplayed`).

    Example:
        >>> cfg = RunConfig.from_dict({"method": "ewc", "scenario": "class", "method_params": {"task_inference": "combined"}})
        >>> type(for_run(cfg)).__name__, for_run(cfg).inner.name
        ('TaskInferred', 'ewc')
    """
    method = method if method is not None else create(cfg.method, cfg.method_params)
    if isinstance(method, MethodWrapper):
        return method
    if cfg.density_replay:
        return DensityReplayed(method, cfg.density_replay, cfg.density_weight)
    if cfg.task_inference == "none":
        return method
    return TaskInferred(method, cfg.task_inference)
