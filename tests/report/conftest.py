"""Fixtures: hand-made run and comparison directories (see report_fakes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_fakes import make_compare_dir, make_run_dir


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return make_run_dir(tmp_path / "run")


@pytest.fixture
def compare_dir(tmp_path) -> Path:
    return make_compare_dir(tmp_path / "cmp")
