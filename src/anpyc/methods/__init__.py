"""Continual-learning methods behind one hook interface, found by name in a registry.

Example:
    >>> from anpyc.methods import create, METHODS
    >>> sorted(METHODS)[:2]
    ['anpyc', 'anpyc-masks']
"""

from anpyc.methods import (  # noqa: F401  (registers the classes)
    anpyc,
    anpyc_masks,
    density,
    density_replay,
    ewc,
    finetune,
    hat,
    joint,
    lwf,
    mas,
    online_ewc,
    packnet,
    replay,
    si,
    task_inference,
)
from anpyc.methods.base import Method, NoConfig, shared_params
from anpyc.methods.registry import (
    DEFAULT_METHOD,
    METHODS,
    create,
    get_method_class,
    has_params,
    method_config,
    method_names,
    register,
    resolved_params,
    typed,
)
from anpyc.methods.wrappers import for_run

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "Method",
    "NoConfig",
    "create",
    "for_run",
    "get_method_class",
    "has_params",
    "method_config",
    "method_names",
    "register",
    "resolved_params",
    "typed",
    "shared_params",
]
