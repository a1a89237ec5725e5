"""torch.distributed collectives and data sharding; every function is a no-op (or the
one-process answer) when no process group is initialised, so library code (the loop, the
kernels, methods) calls them unconditionally. Joining and leaving a process group and the
loop's task-boundary synchronisation are :mod:`anpyc.callbacks.distributed`; starting the
processes is :mod:`anpyc.parallel.launch`.

Data parallelism in anpyc (see :mod:`anpyc.parallel.launch` for starting the processes):

* **Training** (:func:`shard_batches`, :func:`sync_gradients_`): every rank draws the same
  shuffled order from the run's generator; each global batch of ``train.batch_size`` examples
  is split ``rank::world_size`` (what ``DistributedSampler`` does with a per-rank batch of
  ``batch_size / world_size``). After ``backward`` the gradients are summed over ranks weighted
  by each rank's example count, so every rank steps with the gradient of the *global* batch
  mean: the same step a single process takes with the same ``batch_size``.
* **Evaluation and importance** (:func:`rank_batches`): whole batches are dealt round-robin to
  the ranks and the sums (correct counts, importance) are all-reduced.
* **Data without random access** (a ``DataLoader`` wrapped as
  :class:`anpyc.data.user.BatchIterable`): the same two rules over the loader's examples in
  its own order, regrouped into batches of the asked size, so the split is as exact as for an
  in-memory set. Every rank reads the whole loader (and drops the others' rows): ranks must
  see the same order (seed a shuffling loader's ``generator`` alike on every rank).
* **Decisions** (masks, ownership, anything drawn at random): every rank runs the same hooks;
  :func:`anpyc.callbacks.distributed.sync_task_state_` then broadcasts the model and all
  method buffers from rank 0 at each task boundary, so every rank holds rank 0's state bit
  for bit.

Example:
    >>> import torch
    >>> world_size(), rank(), is_main_process()
    (1, 0, True)
    >>> all_reduce_mean_(torch.ones(2)).tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

from anpyc.data.taskdata import Batch, rebatch
from anpyc.data.user import resolve_data
from anpyc.errors import DistributedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from anpyc.data.batches import SplitData

log = logging.getLogger(__name__)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def _uses_nccl() -> bool:
    return is_distributed() and dist.get_backend() == "nccl"


def _comm_view(tensor: Tensor) -> Tensor:
    """A tensor the backend accepts (NCCL: on the GPU; contiguous; bool as uint8)."""
    out = tensor
    if out.dtype == torch.bool:
        out = out.to(torch.uint8)
    if _uses_nccl() and not out.is_cuda:
        out = out.to(torch.device("cuda", torch.cuda.current_device()))
    return out.contiguous()


def _collective(tensor: Tensor, fn: Callable[[Tensor], object]) -> Tensor:
    buf = _comm_view(tensor)
    fn(buf)
    if buf is not tensor:
        tensor.copy_(buf.to(tensor.device, tensor.dtype))
    return tensor


def all_reduce_mean_(tensor: Tensor) -> Tensor:
    """Average ``tensor`` over ranks, in place."""
    if is_distributed():
        _collective(tensor, lambda b: dist.all_reduce(b, op=dist.ReduceOp.SUM))
        tensor.div_(world_size())
    return tensor


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks, in place."""
    if is_distributed():
        _collective(tensor, lambda b: dist.all_reduce(b, op=dist.ReduceOp.SUM))
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` with rank ``src``'s copy, in place, bit for bit (sent as raw bytes,
    so any dtype works: gloo has no int16 or bool broadcast)."""
    if is_distributed():
        raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
        _collective(raw, lambda b: dist.broadcast(b, src=src))
        if raw.data_ptr() != tensor.data_ptr() or not tensor.is_contiguous():
            with torch.no_grad():
                tensor.copy_(raw.view(tensor.dtype).reshape(tensor.shape))
    return tensor


def sum_scalars(*values: float) -> list[float]:
    """Sum a few numbers over ranks in one collective (counts, totals)."""
    if not is_distributed():
        return [float(v) for v in values]
    return all_reduce_sum_(torch.tensor(values, dtype=torch.float64)).tolist()


def all_gather_object(obj: object) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


# ------------------------------------------------------------------------------ data
def shard_batches(data: SplitData, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """This rank's part of each shuffled global batch of ``batch_size`` examples.

    Every rank draws the same permutation from ``generator`` (it must be seeded alike), cuts it
    into global batches and keeps rows ``rank::world_size`` of each, so ranks see disjoint
    examples and take the same number of steps. A rank whose part of the last batch is empty
    gets an empty batch (it must still join the gradient all-reduce). In one process this is
    exactly ``iterate(data, batch_size, shuffle=True, generator=generator)``.

    Data without random access (a ``DataLoader``) is read in its own order (``generator``
    unused) and regrouped into global batches of ``batch_size``, split the same way.
    """
    r, w = rank(), world_size()
    data = resolve_data(data)
    if not data.random_access:
        for x, y, t in rebatch(data.batches(batch_size, True, generator), batch_size):
            yield x[r::w], y[r::w], t[r::w]
        return
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        local = idx[r::w].contiguous()
        if len(local) == 0:
            x, y, t = data.get(idx[:1])  # shapes of an example, then none of it
            yield x[:0], y[:0], t[:0]
        else:
            yield data.get(local)


def rank_shuffled_batches(data: SplitData, batch_size: int,
                          generator: torch.Generator) -> Iterator[tuple[Batch, Tensor | None]]:
    """Whole batches ``rank, rank + world_size, ...`` of one shuffled order of ``data`` (the
    same on every rank: seed ``generator`` alike), each with the positions of its rows in
    ``data`` (``None`` for data without random access, read in its own shuffled order): a
    mixed test stream whose sums are all-reduced afterwards.

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> data = TaskData(torch.zeros(5, 1), torch.arange(5), 0)
        >>> [rows.tolist() for _, rows in rank_shuffled_batches(data, 2, torch.Generator().manual_seed(0))]
        [[4, 0], [1, 3], [2]]
    """
    r, w = rank(), world_size()
    data = resolve_data(data)
    if not data.random_access:
        for b, batch in enumerate(rebatch(data.batches(batch_size, True, generator), batch_size)):
            if b % w == r:
                yield batch, None
        return
    order = torch.randperm(len(data), generator=generator)
    for b, start in enumerate(range(0, len(order), batch_size)):
        if b % w == r:
            rows = order[start : start + batch_size]
            yield data.get(rows), rows


def rank_batches(data: SplitData, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
    """Batches ``rank, rank + world_size, ...`` of ``iterate(data, batch_size, limit=limit)``
    (in order, unshuffled): for sums that are all-reduced afterwards (evaluation,
    importance). Whole batches, so per-batch statistics equal the one-process ones.
    Data without random access is read in its own order; every rank reads all of it."""
    r, w = rank(), world_size()
    data = resolve_data(data)
    if not data.random_access:
        for b, batch in enumerate(rebatch(data.batches(batch_size), batch_size, limit)):
            if b % w == r:
                yield batch
        return
    n = len(data) if limit is None else min(limit, len(data))
    for b, start in enumerate(range(0, n, batch_size)):
        if b % w == r:
            yield data.get(torch.arange(start, min(start + batch_size, n)))


# ------------------------------------------------------------------------------ gradients
def sync_gradients_(params: Iterable[nn.Parameter], loss_sum: float, count: int) -> tuple[float, int]:
    """Make every rank's ``.grad`` the gradient of the global batch mean; one all-reduce.

    Each rank's gradient (of its own batch mean, plus any penalty) is weighted by its example
    count ``count``; the weighted sum over ranks divided by the total count is the gradient a
    single process computes on the whole global batch. A parameter with no gradient on any
    rank (an old task's head) keeps ``grad=None``, as in one process, so optimizers skip it;
    one used on some rank only gets the others' zeros. ``loss_sum`` (loss times count) is
    summed alongside. Returns ``(global loss_sum, global count)``.
    """
    if not is_distributed():
        return loss_sum, count
    params = [p for p in params if p.requires_grad]
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    device = params[0].device if params else torch.device("cpu")
    sizes = [p.numel() for p in params]
    head = 2 + len(params)
    flat = torch.zeros(head + sum(sizes), dtype=dtype, device=device)
    flat[0], flat[1] = float(loss_sum), float(count)
    offset = head
    for i, (p, n) in enumerate(zip(params, sizes)):
        if p.grad is not None and count > 0:
            flat[2 + i] = 1.0
            flat[offset : offset + n] = p.grad.reshape(-1).to(flat.dtype) * count
        offset += n
    all_reduce_sum_(flat)
    header = flat[:head].tolist()  # one device sync for the loss, count and flags
    total = header[1]
    offset = head
    for i, (p, n) in enumerate(zip(params, sizes)):
        if header[2 + i] > 0:
            g = (flat[offset : offset + n] / total).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        elif p.grad is not None:
            p.grad = None  # no rank had a gradient: same as one process
        offset += n
    return header[0], int(round(total))


# ------------------------------------------------------------------------------ state
def _signature(module: nn.Module, tensors: list[tuple[str, Tensor]]) -> list[tuple[str, tuple, str]]:
    return [(name, tuple(t.shape), str(t.dtype)) for name, t in tensors]


def _broadcast_all(module: nn.Module, what: str, tensors: list[tuple[str, Tensor]], src: int) -> None:
    signatures = all_gather_object(_signature(module, tensors))
    for r, sig in enumerate(signatures):
        if sig != signatures[src]:
            mine = {s[0]: s[1:] for s in signatures[src]}
            theirs = {s[0]: s[1:] for s in sig}
            diff = sorted(set(mine.items()) ^ set(theirs.items()))
            raise DistributedError(
                f"{what} differs in structure between rank {src} and rank {r} "
                f"(first difference: {diff[0][0] if diff else '?'}): every rank must create the same "
                "buffers in the same order (do not create state on one rank only)"
            )
    with torch.no_grad():
        for _, t in tensors:
            broadcast_(t, src)


def broadcast_module_buffers_(module: nn.Module, src: int = 0) -> None:
    """Overwrite every buffer of ``module`` (a Method's importance, masks, anchors...) with
    rank ``src``'s copy. Raises :class:`DistributedError` if ranks hold different buffer
    sets (a method created state on one rank only).

    Example:
        >>> from anpyc.methods import create
        >>> broadcast_module_buffers_(create("finetune"))  # no-op in one process
    """
    if is_distributed():
        _broadcast_all(module, f"{type(module).__name__} state", list(module.named_buffers()), src)


def broadcast_module_state_(module: nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank ``src``'s copy."""
    if is_distributed():
        tensors = list(module.named_parameters()) + list(module.named_buffers())
        _broadcast_all(module, f"{type(module).__name__} parameters", tensors, src)


def state_checksum(*modules: nn.Module) -> str:
    """SHA-256 over the bytes of every parameter and buffer of ``modules`` (names included):
    equal on every rank when their states are bit-identical.

    Example:
        >>> from anpyc.methods import create
        >>> len(state_checksum(create("finetune")))
        64
    """
    h = hashlib.sha256()
    for module in modules:
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            h.update(name.encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def decorrelate_rng_(seed: int) -> None:
    """Give ranks other than 0 their own global torch RNG stream (dropout masks differ between
    ranks); rank 0 keeps the one-process stream so its draws match a single-process run."""
    r = rank()
    if r > 0:
        torch.manual_seed((int(seed) + 1_000_003 * r) % 2**63)
