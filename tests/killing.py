"""Killing a run in-process at a checkpoint (a plain module: tests in any folder import it)."""

from __future__ import annotations

from anpyc.callbacks import checkpoint as ck


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the library catches a BaseException."""


def kill_after(monkeypatch, n_saves: int) -> None:
    """Raise :class:`Killed` right after the ``n_saves``-th checkpoint is written."""
    real, calls = ck.save, {"n": 0}

    def save(run_dir, payload, keep=ck.KEEP):
        path = real(run_dir, payload, keep)
        calls["n"] += 1
        if calls["n"] == n_saves:
            raise Killed(path)
        return path

    monkeypatch.setattr(ck, "save", save)
