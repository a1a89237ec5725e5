"""Processes at the run level: joining and leaving a torch.distributed group
(:func:`process_group`) and the loop's callback that gives every rank rank 0's model and
method state at each task boundary (:class:`DistributedSync`). The collectives themselves
(gradient averaging, sharded batches, broadcasts) are :mod:`anpyc.parallel.collectives`,
which the loop uses; the loop never imports this module.

Example:
    >>> from anpyc.config import StreamConfig, TrainConfig
    >>> from anpyc.data import make_stream
    >>> from anpyc.loop.train import LoopConfig, train_stream
    >>> from anpyc.methods import create
    >>> from anpyc.models import build_model
    >>> from anpyc.config import ModelConfig
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
    >>> model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
    >>> state = train_stream(model, create("finetune"), stream, LoopConfig(TrainConfig()), callbacks=[DistributedSync()])
    >>> state.task  # in one process the callback changes nothing
    2
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import itertools
import logging
import traceback
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch.distributed as dist
from torch import nn

from anpyc.errors import DistributedError
from anpyc.parallel.collectives import (
    all_gather_object,
    broadcast_module_buffers_,
    broadcast_module_state_,
    is_distributed,
    state_checksum,
)

if TYPE_CHECKING:
    from anpyc.loop.train import Loop
    from anpyc.scenario import HookContext

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ the group
_GENERATION = itertools.count()  # every rank joins its groups in the same order: same numbers


@contextlib.contextmanager
def process_group(
    backend: str, init_method: str, rank: int | None = None, world_size: int | None = None,
    timeout: _dt.timedelta = _dt.timedelta(minutes=30),
) -> Iterator[None]:
    """Join a torch.distributed group for the ``with`` block, and leave it cleanly.

    Leaving must free the group, so that its C++ threads (gloo: ``gloo_tcp_loop`` and two
    ``pt_gloo_runloop``) are joined while the interpreter still runs. Two things ensure it:

    * ``torch.distributed.nn`` is imported *before* the group exists. Its functions take
      ``group=group.WORLD`` as a default argument, evaluated at import; imported later (the
      first ``torch.optim`` optimizer imports it lazily, through ``torch._dynamo``) they pin
      the group for good and ``destroy_process_group`` cannot free it. A spawned rank then
      reaches interpreter shutdown with gloo's threads alive, and one that drops the last
      reference to a collective's tensor (taking the GIL) during shutdown is killed by
      CPython: "terminate called without an active exception", SIGABRT.
    * On success every rank first waits, in the group's store (not over gloo), until all
      ranks are out of their last collective (:func:`_quiesce`), so no rank closes its gloo
      connections while a peer still uses them. On an error or KeyboardInterrupt the rank
      says so in the store and leaves at once: peers blocked in a collective with it fail
      fast instead of waiting for the timeout.

    Example:
        >>> with process_group("gloo", "tcp://127.0.0.1:29500", rank=0, world_size=1):  # doctest: +SKIP
        ...     world_size()
        1
    """
    import torch.distributed.nn  # noqa: F401  (before the group exists: see above)

    kwargs = {} if rank is None else {"rank": rank, "world_size": world_size}
    dist.init_process_group(backend, init_method=init_method, timeout=timeout, **kwargs)
    key = f"anpyc/leave/{next(_GENERATION)}"
    try:
        yield
    except BaseException as exc:
        # the frames of the traceback hold the group (torch's collectives have it in a local)
        traceback.clear_frames(exc.__traceback__)
        _leave(key, ok=False, timeout=timeout)
        raise
    _leave(key, ok=True, timeout=timeout)


def _leave(key: str, ok: bool, timeout: _dt.timedelta) -> None:
    group = weakref.ref(dist.distributed_c10d._get_default_group())
    try:
        if dist.get_world_size() > 1:
            _quiesce(key, ok, timeout)
    finally:
        dist.destroy_process_group()
        if group() is not None:
            gc.collect()
        if group() is not None:  # its threads outlive it: the shutdown abort could come back
            log.log(logging.WARNING if ok else logging.DEBUG,
                    "the torch.distributed process group is still referenced after it was destroyed "
                    "(something captured it); its threads stay alive until the process exits")


def _quiesce(key: str, ok: bool, timeout: _dt.timedelta) -> None:
    """A barrier in the store: each rank posts ``left/<rank>`` once its collectives are over,
    then (on success) waits for every rank's. Rank 0 leaves last (it may host a TCPStore that
    the others still read): it waits for their ``gone/<rank>`` too. A rank that failed only
    posts and does not wait; a peer that sees its post stops waiting for the others."""
    store = dist.distributed_c10d._get_default_store()
    r, w = dist.get_rank(), dist.get_world_size()
    try:
        store.set(f"{key}/left/{r}", "ok" if ok else "error")
        if not ok:
            return
        store.wait([f"{key}/left/{i}" for i in range(w)], timeout)
        if any(store.get(f"{key}/left/{i}") != b"ok" for i in range(w)):
            return  # a peer failed: the run fails anyway; leave at once
        if r > 0:
            store.set(f"{key}/gone/{r}", "ok")
        else:
            store.wait([f"{key}/gone/{i}" for i in range(1, w)], timeout)
    except Exception as exc:  # the store is gone with a dead peer: leave anyway, say why
        if ok:
            raise DistributedError(f"rank {r} could not leave the process group cleanly: {exc}") from exc
        log.debug("rank %d: leaving the group after an error: %s", r, exc)



# ------------------------------------------------------------------------------ task boundaries
#: where (``sync_task_state_``'s ``where``) the shared parameters differed between ranks
#: before the broadcast; empty when gradient averaging kept every rank in step
DIVERGED: list[str] = []


def sync_task_state_(model: nn.Module, method: nn.Module, src: int = 0, where: str = "") -> None:
    """At a task boundary: give every rank rank ``src``'s model and method state.

    The runner calls this after ``before_task`` (new heads are drawn from each rank's own RNG)
    and after ``after_task`` (masks, ownership and anything decided at random are rank 0's).
    First it compares the ranks' shared (body) parameters: they must already agree, since every
    rank steps with the same averaged gradient; a difference is logged and recorded in
    :data:`DIVERGED` (a hook drew rank-dependent random numbers, or batch-norm statistics).
    """
    if is_distributed():
        shared = getattr(model, "body", model)
        sums = all_gather_object(state_checksum(shared))
        if len(set(sums)) != 1:
            DIVERGED.append(where or "?")
            log.warning("shared parameters differed between ranks before the broadcast (%s); rank %d's kept", where, src)
        broadcast_module_state_(model, src)
        broadcast_module_buffers_(method, src)



class DistributedSync:
    """Callback of :func:`anpyc.loop.train.train_stream`: rank 0's model and method state on every
    rank after ``before_task`` (new heads are drawn from each rank's own RNG) and after
    ``after_task`` (masks, ownership and random draws are rank 0's). A no-op in one process.
    """

    def on_task_start(self, loop: Loop, ctx: HookContext) -> None:
        sync_task_state_(loop.model, loop.method, where=f"task {ctx.task + 1} start")

    def on_task_trained(self, loop: Loop, ctx: HookContext) -> None:
        sync_task_state_(loop.model, loop.method, where=f"task {ctx.task + 1} end")
