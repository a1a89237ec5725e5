"""One writer per run directory (issue #17, part 2): the lock of :mod:`anpyc.rundir`."""

import contextlib
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from anpyc import rundir
from anpyc.errors import OutputError


def _hold(folder: Path, ready) -> None:
    rundir.acquire(folder)
    ready.set()
    time.sleep(600)  # until killed


@contextlib.contextmanager
def _held_by_other_process(folder: Path):
    """Another process holds ``folder``'s lock inside the block, then is killed (SIGKILL)."""
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    other = ctx.Process(target=_hold, args=(folder, ready), daemon=True)
    other.start()
    try:
        assert ready.wait(120)
        yield other.pid
    finally:
        other.kill()
        other.join()


# ---------------------------------------------------------------------------- the lock itself
def test_lock_is_reentrant_released_at_the_end_of_the_outer_session(tmp_path):
    with rundir.session():
        rundir.acquire(tmp_path)
        with rundir.session():
            rundir.acquire(tmp_path)  # the same process again: no error
        assert rundir.holder(tmp_path) == os.getpid()  # the inner session does not release it
    assert rundir.holder(tmp_path) is None
    assert not (tmp_path / rundir.LOCK_NAME).exists()


def test_second_process_is_refused_with_the_holders_pid(tmp_path):
    with _held_by_other_process(tmp_path) as pid:
        with pytest.raises(OutputError, match=rf"is being written by another anpyc process \(pid {pid}\)"):
            rundir.acquire(tmp_path)
    with rundir.session():  # the kernel dropped the dead process's lock: the stale file does not block
        assert (tmp_path / rundir.LOCK_NAME).exists()
        rundir.acquire(tmp_path)
        assert rundir.holder(tmp_path) == os.getpid()


def _child_releases(folder: str) -> None:
    rundir.release(folder)  # inherited state was forgotten at fork: nothing to release
    with rundir.session():
        try:
            rundir.acquire(folder)
        except OutputError:
            os._exit(3)  # refused: the parent still holds it
    os._exit(0)


def test_forked_child_neither_holds_nor_releases_its_parents_lock(tmp_path):
    with rundir.session():
        rundir.acquire(tmp_path)
        child = multiprocessing.get_context("fork").Process(target=_child_releases, args=(str(tmp_path),))
        child.start()
        child.join()
        assert child.exitcode == 3
        assert rundir.holder(tmp_path) == os.getpid()


def test_adopted_directory_is_never_released_by_the_worker(tmp_path):
    with rundir.session():
        rundir.adopt([tmp_path])
        rundir.acquire(tmp_path)  # re-entrant on the adopted directory, no lock file taken
    assert str(tmp_path) in rundir.held()
    assert not (tmp_path / rundir.LOCK_NAME).exists()
    rundir._held.pop(rundir._key(tmp_path))  # this test process is no worker: undo
