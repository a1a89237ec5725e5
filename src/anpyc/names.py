"""The names the command line checks before it imports torch: methods and streams.

Importing the method registry or the stream registry imports torch (seconds); a mistyped
``--method`` or ``--benchmark`` should fail at once. The names are read from the source of
the modules that register them (``@register`` classes with a literal ``name`` in the modules
that ``anpyc/methods/__init__.py`` imports; literal ``register_stream("name", ...)`` calls and
decorators in ``anpyc/data/streams.py``), so adding a method or a stream stays one file and one
registry line. Whatever is registered at run time in this process (a method or stream of your
own, imported before the command line runs) counts too. When a registering module's names
cannot be read this way, :func:`check_name` gives way to the registry itself.

Example:
    >>> "ewc" in source_names("method") and "split-mnist" in source_names("benchmark")
    True
    >>> check_name("benchmark", "split-mnits")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    anpyc.errors.ConfigError: unknown benchmark 'split-mnits' (did you mean 'split-mnist'?); known: ...
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

from anpyc.errors import ConfigError, unknown

PACKAGE = Path(__file__).resolve().parent
#: a label ``<method>+inference`` in a comparison: the method with its task inferred from the input
#: (:mod:`anpyc.methods.task_inference`; :func:`anpyc.experiments.compare.inference_aliases`)
INFERENCE_SUFFIX = "+inference"
#: the score a ``<method>+inference`` row infers the task by, unless its protocol names another
#: (:attr:`anpyc.experiments.protocols.Protocol.inference`): the very model ``--method density``
#: classifies with
INFERENCE_SCORE = "input_density"
#: a label ``<method>+density-replay`` in a comparison: the method trained on inputs drawn from the
#: class density model too, answering with it (:mod:`anpyc.methods.density_replay`)
DENSITY_REPLAY_SUFFIX = "+density-replay"
#: the run options of a ``<method>+density-replay`` row, unless its protocol names its own
#: (:attr:`anpyc.experiments.protocols.Protocol.density_replay`): inputs drawn per step (the
#: training batch's size on the class protocols) and the weight of the network's evidence
DENSITY_REPLAY = {"density_replay": 10, "density_weight": 100.0}


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _decorated_by(node: ast.ClassDef | ast.FunctionDef, name: str) -> list[ast.AST]:
    """The decorators of ``node`` that are ``name`` or a call of it (``@name``, ``@name(...)``, ``@x.name``)."""
    found = []
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if (isinstance(target, ast.Name) and target.id == name) or (isinstance(target, ast.Attribute) and target.attr == name):
            found.append(d)
    return found


def _class_name(cls: ast.ClassDef) -> str | None:
    """The literal ``name`` a method class assigns (``name = "x"`` or ``name, config_cls = "x", C``)."""
    for stmt in cls.body:
        if not isinstance(stmt, ast.Assign):
            continue
        for target in stmt.targets:
            if isinstance(target, ast.Name) and target.id == "name":
                return _literal(stmt.value)
            if isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple):
                for t, v in zip(target.elts, stmt.value.elts):
                    if isinstance(t, ast.Name) and t.id == "name":
                        return _literal(v)
    return None


def _method_modules() -> list[Path]:
    """The files of the modules ``anpyc/methods/__init__.py`` imports to register its methods."""
    tree = ast.parse((PACKAGE / "methods" / "__init__.py").read_text(encoding="utf-8"))
    files = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "anpyc.methods":
            files += [PACKAGE / "methods" / f"{alias.name}.py" for alias in node.names]
    return [f for f in files if f.is_file()]


def _methods() -> tuple[set[str], bool]:
    names, complete = set(), True
    for path in _method_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and _decorated_by(node, "register"):
                name = _class_name(node)
                complete &= name is not None
                if name is not None:
                    names.add(name)
    return names, complete


def _streams() -> tuple[set[str], bool]:
    names, complete = set(), True
    tree = ast.parse((PACKAGE / "data" / "streams.py").read_text(encoding="utf-8"))
    calls = [n.value for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    calls += [d for n in tree.body if isinstance(n, ast.FunctionDef) for d in _decorated_by(n, "register_stream")]
    for call in calls:
        func = call.func
        if isinstance(func, ast.Name) and func.id == "register_stream":
            name = _literal(call.args[0]) if call.args else None
            complete &= name is not None
            if name is not None:
                names.add(name)
    return names, complete


#: what each kind of name is read from: the source reader and the registry (module, attribute)
_KINDS = {
    "method": (_methods, ("anpyc.methods.registry", "METHODS")),
    "benchmark": (_streams, ("anpyc.data.streams", "STREAMS")),
}


@functools.cache
def _from_source(kind: str) -> tuple[frozenset[str], bool]:
    names, complete = _KINDS[kind][0]()
    return frozenset(names), complete


def source_names(kind: str) -> set[str]:
    """The names of ``kind`` (``method`` or ``benchmark``) the package registers, read from its source."""
    return set(_from_source(kind)[0])


def known_names(kind: str) -> list[str]:
    """Every name of ``kind``: read from the source, plus those registered in this process so far."""
    names = source_names(kind)
    module, attr = _KINDS[kind][1]
    if module in sys.modules:  # registered already (a method or stream of your own counts too)
        names |= set(getattr(sys.modules[module], attr))
    return sorted(names)


def check_name(kind: str, name: str) -> None:
    """Raise a one-line :class:`ConfigError` (with the closest name) unless ``name`` is a
    known ``kind`` (``method`` or ``benchmark``); without importing torch when the source says."""
    if name in known_names(kind):
        return
    if not _from_source(kind)[1]:  # a name the source does not spell out: ask the registry itself
        import importlib

        module, attr = _KINDS[kind][1]
        if name in getattr(importlib.import_module(module), attr):
            return
    raise ConfigError(unknown(kind, name, known_names(kind)))
