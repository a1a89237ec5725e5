"""Mini-batches over any task data: in-memory sets with random access (``get(idx)``) are
shuffled with the run's generator; sources without it (``batches()``: a ``DataLoader``...)
are read in their own order and regrouped to the batch size asked for.

Example:
    >>> parts = [(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))]
    >>> [len(y) for _, y, _ in rebatch(parts, 2)]
    [2, 1]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Protocol

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor, Tensor]  # inputs, labels, task ids


class SplitData(Protocol):
    """What every split of a task offers (``TaskData``, ``DatasetData``, ``BatchIterable``,
    ``ConcatData``): its size, input shape and labels, and either random access (``get``)
    or its own batches (``batches``), as ``random_access`` says."""

    @property
    def random_access(self) -> bool: ...  # a class attribute or a property

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def labels(self) -> Tensor: ...


def rebatch(batches: Iterable[Batch], size: int, limit: int | None = None) -> Iterator[Batch]:
    """Regroup ``batches`` into batches of ``size`` examples (the last one may be shorter),
    stopping after ``limit`` examples without pulling a batch more from the source.

    Example:
        >>> parts = [(torch.zeros(k, 1), torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.long)) for k in (3, 4)]
        >>> [len(y) for _, y, _ in rebatch(parts, 2)], [len(y) for _, y, _ in rebatch(parts, 5, limit=6)]
        ([2, 2, 2, 1], [5, 1])
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    if limit is not None and limit <= 0:
        return  # nothing asked: not even one batch is pulled
    pending: list[Batch] = []
    n, left = 0, limit
    for batch in batches:
        if left is not None:
            batch = tuple(v[:left] for v in batch)
            left -= len(batch[1])
        pending.append(batch)
        n += len(batch[1])
        while n >= size:
            x, y, t = _cat(pending)
            yield x[:size], y[:size], t[:size]
            pending = [(x[size:], y[size:], t[size:])] if n > size else []
            n -= size
        if left == 0:
            break
    if n:
        yield _cat(pending)


def _cat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(v) for v in zip(*parts))  # type: ignore[return-value]


def iterate(
    data: SplitData,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    limit: int | None = None,
) -> Iterator[Batch]:
    """Mini-batches over ``data``; shuffled with ``generator`` so runs are reproducible.

    ``limit`` stops after that many examples (importance estimation on a sample budget).
    ``data`` without random access (a ``DataLoader``...) is read in its own order, whatever
    ``shuffle`` says, and regrouped into batches of ``batch_size``. (A raw ``Dataset`` or
    ``DataLoader`` is wrapped first by :func:`anpyc.data.user.resolve_data`.)

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> d = TaskData(torch.zeros(5, 2), torch.zeros(5, dtype=torch.long), 0)
        >>> [len(y) for _, y, _ in iterate(d, 2, limit=4)]
        [2, 2]
    """
    if not data.random_access:
        yield from rebatch(data.batches(batch_size, shuffle, generator), batch_size, limit)
        return
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if limit is not None:
        order = order[:limit]
    for start in range(0, len(order), batch_size):
        yield data.get(order[start : start + batch_size])


def epoch_batches(per_epoch: int, epochs: float) -> list[int]:
    """How many batches each epoch of ``epochs`` (which may be fractional) takes, as the loop
    trains them: a whole epoch all ``per_epoch`` batches, a fractional last one its share of
    them (at least one).

    Example:
        >>> epoch_batches(10, 2.3), epoch_batches(10, 0.5), epoch_batches(3, 0.01)
        ([10, 10, 3], [5], [1])
    """
    return [per_epoch if epoch + 1 <= epochs + 1e-9 else max(1, round((epochs - epoch) * per_epoch))
            for epoch in range(math.ceil(epochs - 1e-9))]


def iterate_epochs(
    data: SplitData, epochs: float, batch_size: int, shuffle: bool = True,
    generator: torch.Generator | None = None,
) -> Iterator[Batch]:
    """The batches of ``epochs`` passes over ``data``, a fractional last epoch included (0.5:
    half the batches of one shuffled pass): what a method's ``retrain(n)`` asks of your own
    loop, and exactly what the built-in loop trains (:func:`epoch_batches`).

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> d = TaskData(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long), 0)
        >>> [len(y) for _, y, _ in iterate_epochs(d, 1.5, batch_size=4)]
        [4, 4, 2, 4, 4]
    """
    per_epoch = math.ceil(len(data) / batch_size)
    for count in epoch_batches(per_epoch, epochs):
        yield from itertools.islice(iterate(data, batch_size, shuffle, generator), count)
