"""Every example in a docstring of the package runs and prints what it shows (examples that
need data or a run directory are marked ``# doctest: +SKIP`` and are only read)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import anpyc

MODULES = ["anpyc"] + sorted(m.name for m in pkgutil.walk_packages(anpyc.__path__, "anpyc.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_shown(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} fail (run: python -m doctest -v)"
