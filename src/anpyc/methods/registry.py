"""Method registry: ``@register`` on a class makes it available by its ``name``.

The registry is where a method's hyper-parameters are typed: :func:`typed` turns a run
config's ``method_params`` mapping into the method's frozen config dataclass (every field,
defaults filled in; unknown keys and wrong types are a :class:`ConfigError`), once, at the
boundary (the command line, :func:`anpyc.runner.run`, a comparison's jobs). Lists of methods
(suites, tuning, tests) come from :func:`method_names`, selected by the tags each method
declares (:attr:`anpyc.methods.base.Method.tags`).

Example:
    >>> from anpyc.config import RunConfig
    >>> typed(RunConfig.from_dict({"method": "ewc", "method_params": {"lam": 3}})).method_params.lam
    3.0
    >>> "joint" in method_names() and "joint" not in method_names(without={"upper-bound"})
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from anpyc.config import RunConfig, from_dict, to_dict
from anpyc.errors import ConfigError, unknown

if TYPE_CHECKING:
    from anpyc.methods.base import Method

METHODS: dict[str, type] = {}

#: the library's own method: listed first wherever methods are listed
DEFAULT_METHOD = "anpyc"


def register(cls: type) -> type:
    """Class decorator: add a :class:`~anpyc.methods.base.Method` subclass to the registry.

    Example:
        >>> from anpyc.methods.base import Method
        >>> @register
        ... class DocNoop(Method):
        ...     name = "doc-noop"  # every hook a no-op: fine-tuning
        >>> create("doc-noop").name, get_method_class("doc-noop") is DocNoop
        ('doc-noop', True)
        >>> del METHODS["doc-noop"]
    """
    if cls.name in METHODS and METHODS[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method_class(name: str) -> type:
    """The registered method class named ``name`` (what :func:`create` builds); any other
    name is a :class:`ConfigError` that names the closest one.

    Example:
        >>> cls = get_method_class("ewc")
        >>> cls.__name__, cls.config_cls.__name__
        ('EWC', 'EWCConfig')
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(unknown("method", name, sorted(METHODS))) from None


def method_config(name: str, params: Any = None) -> Any:
    """The method's config dataclass built from ``params`` (a mapping, or already the
    dataclass); unknown keys are an error.

    Example:
        >>> method_config("ewc", {"lam": 3})
        EWCConfig(lam=3.0, ...)
    """
    cls = get_method_class(name)
    if isinstance(params, cls.config_cls):
        return params
    if dataclasses.is_dataclass(params):
        params = to_dict(params)
    elif isinstance(params, Mapping):
        params = dict(params)
    return from_dict(cls.config_cls, params, f"method_params ({name})")  # anything else: a ConfigError


def typed(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``method_params`` as the method's config dataclass (every field, defaults
    filled in); returned as it is when it already holds it. An unknown method, key or value
    is a :class:`ConfigError`.

    Example:
        >>> cfg = typed(RunConfig.from_dict({"method": "ewc", "method_params": {"lam": 3}}))
        >>> cfg.method_params
        EWCConfig(lam=3.0, ...)
    """
    config = method_config(cfg.method, cfg.method_params)
    if cfg.task_inference != "none" and not get_method_class(cfg.method).trains_network:
        raise ConfigError(f"task_inference: {cfg.method} trains no network (it is a model of the inputs already); "
                          "task inference is for methods that train one")
    if cfg.density_replay and not get_method_class(cfg.method).trains_network:
        raise ConfigError(f"density_replay: {cfg.method} trains no network (it is a model of the inputs already); "
                          "replay from the density model is for methods that train one")
    return cfg if config is cfg.method_params else dataclasses.replace(cfg, method_params=config)


def create(name: str, params: Any = None) -> Method:
    """Build method ``name`` with hyper-parameters ``params``.

    Example:
        >>> create("finetune").name
        'finetune'
    """
    return get_method_class(name)(method_config(name, params))


def resolved_params(name: str, params: Any = None) -> dict[str, Any]:
    """Every hyper-parameter of the method, defaults filled in (saved in config.yaml).

    Example:
        >>> resolved_params("ewc", {"lam": 3})
        {'lam': 3.0, 'fisher': 'empirical', ...}
    """
    return to_dict(method_config(name, params))


def has_params(name: str) -> bool:
    """Whether the method has hyper-parameters (something to tune).

    Example:
        >>> has_params("ewc"), has_params("finetune")
        (True, False)
    """
    return bool(dataclasses.fields(get_method_class(name).config_cls))


def method_names(tags: Iterable[str] = (), without: Iterable[str] = ()) -> list[str]:
    """Registered methods carrying every tag of ``tags`` and none of ``without``, the default
    method first, then by name; methods tagged ``internal`` (test helpers) never.

    Example:
        >>> method_names(tags={"lower-bound"})
        ['finetune']
    """
    tags, without = set(tags), {*without, "internal"}
    names = [n for n, cls in METHODS.items() if tags <= cls.tags and not (without & cls.tags)]
    return sorted(names, key=lambda n: (n != DEFAULT_METHOD, n))
