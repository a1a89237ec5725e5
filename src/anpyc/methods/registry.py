"""Method registry: ``@register`` on a class makes it available by its ``name``."""

from __future__ import annotations

from typing import Any

from anpyc.config import METHOD_CONFIGS, from_dict, to_dict
from anpyc.errors import ConfigError

METHODS: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: add a :class:`~anpyc.methods.base.Method` subclass to the registry."""
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    METHOD_CONFIGS[cls.name] = cls.config_cls
    return cls


def get_method_class(name: str) -> type:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None


def method_config(name: str, params: Any = None) -> Any:
    """The method's config dataclass built from ``params`` (a mapping, or already the
    dataclass); unknown keys are an error."""
    cls = get_method_class(name)
    if isinstance(params, cls.config_cls):
        return params
    return from_dict(cls.config_cls, dict(params or {}), f"method_params ({name})")


def create(name: str, params: Any = None):
    """Build method ``name`` with hyper-parameters ``params``.

    Example:
        >>> create("finetune").name
        'finetune'
    """
    return get_method_class(name)(method_config(name, params))


def resolved_params(name: str, params: Any = None) -> dict[str, Any]:
    """Every hyper-parameter of the method, defaults filled in (saved in config.yaml)."""
    return to_dict(method_config(name, params))
