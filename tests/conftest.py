"""Shared fixtures. The default suite is offline: synthetic data, plus MNIST where `make test`
has fetched it (a test that needs MNIST fails under CI if it is missing, skips elsewhere)."""

from __future__ import annotations

import os

import pytest
import torch

from anpyc.data import sources

torch.set_num_threads(1)


@pytest.fixture
def mnist_dir() -> str:
    status = sources.verify(sources.MNIST)
    if not all(v == "ok" for v in status.values()):
        msg = "MNIST not fetched: run `anpyc data fetch mnist` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(sources.resolve_data_dir())


@pytest.fixture
def fashion_dir() -> str:
    status = sources.verify(sources.FASHION_MNIST)
    if not all(v == "ok" for v in status.values()):
        msg = "Fashion-MNIST not fetched: run `anpyc data fetch fashion-mnist` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(sources.resolve_data_dir())


BAD_INPUTS = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def bad_input_count(pytestconfig) -> dict:
    """Tally of bad inputs the property-based tests tried, by family (printed at the end)."""
    return pytestconfig.stash.setdefault(BAD_INPUTS, {})


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    counts = config.stash.get(BAD_INPUTS, {})
    if counts:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(
            f"bad inputs tried: {sum(counts.values())} ({detail}); each gave a one-line error, exit 2, no file changed"
        )


@pytest.fixture
def private_mnist_dir(mnist_dir, tmp_path) -> str:
    """A data dir of its own holding links to the MNIST files: what a test caches there
    (e.g. the judging classifier of generative runs) never leaks into other tests."""
    from pathlib import Path

    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for f in (Path(mnist_dir) / "mnist").iterdir():
        if f.is_file() and "idx" in f.name:
            (folder / f.name).symlink_to(f.resolve())
    return str(tmp_path / "data")
