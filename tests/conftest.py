"""Shared fixtures. The default suite is offline: synthetic data, plus MNIST where `make test`
has fetched it (a test that needs MNIST fails under CI if it is missing, skips elsewhere)."""

from __future__ import annotations

import http.server
import os
import threading

import pytest
import torch

from anpyc.data import sources

torch.set_num_threads(1)
# a multi-process test whose ranks fall out of step fails in 2 minutes instead of hanging 30
os.environ.setdefault("ANPYC_DIST_TIMEOUT", "120")


def _require(spec: sources.DatasetSpec) -> str:
    """The data dir holding ``spec``, verified; fails under CI (make test fetches it), skips elsewhere."""
    status = sources.verify(spec)
    if not all(v == "ok" for v in status.values()):
        msg = f"{spec.name} not fetched: run `anpyc data fetch {spec.name}` (make test does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return str(sources.resolve_data_dir())


@pytest.fixture
def mnist_dir() -> str:
    return _require(sources.MNIST)


@pytest.fixture
def fashion_dir() -> str:
    return _require(sources.FASHION_MNIST)


@pytest.fixture
def serve_dir():
    """Start a quiet HTTP server on 127.0.0.1 for a folder: ``base_url = serve_dir(folder)``."""
    servers = []

    def start(folder) -> str:
        directory = str(folder)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=directory, **kw)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()


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
