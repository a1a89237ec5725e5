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
)
from anpyc.methods.base import Method, NoConfig, shared_params
from anpyc.methods.registry import (
    METHODS,
    create,
    get_method_class,
    method_config,
    register,
    resolved_params,
)

__all__ = [
    "METHODS",
    "Method",
    "NoConfig",
    "create",
    "get_method_class",
    "method_config",
    "register",
    "resolved_params",
    "shared_params",
]
