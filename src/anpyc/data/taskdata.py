"""In-memory task data with on-the-fly transforms, so N tasks never hold N copies of a data set.

A :class:`TaskData` is one split (train, val or test) of one task: a reference to shared base
inputs, an optional index into them, labels, and a transform (a pixel permutation or a
rotation) applied per batch.

Every kind of task data has ``__len__`` (examples), ``input_shape``, ``labels()`` and a
``random_access`` flag. With random access (:class:`TaskData`, ``anpyc.data.user.DatasetData``)
it has ``get(idx)``, and batches are drawn from a permutation of the run's generator. Without
(``anpyc.data.user.BatchIterable``: a ``DataLoader`` or any re-iterable of batches) it has
``batches()``, which yields the source's own batches in its own order; :func:`iterate` and
:mod:`anpyc.parallel.collectives` regroup them into batches of the size they ask for (:func:`rebatch`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from anpyc.data.batches import Batch, iterate, rebatch  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from collections.abc import Callable

    from anpyc.data.batches import SplitData


class Permute:
    """Fixed permutation of the flattened input (permuted MNIST)."""

    def __init__(self, perm: Tensor) -> None:
        self.perm = perm

    def __call__(self, x: Tensor) -> Tensor:
        shape = x.shape
        return x.reshape(shape[0], -1)[:, self.perm].reshape(shape)

    def __repr__(self) -> str:
        return f"Permute(n={self.perm.numel()})"


class Rotate:
    """Rotation of (N, C, H, W) images by a fixed angle (rotated MNIST), bilinear, zero fill."""

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)
        a = math.radians(self.degrees)
        self.theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]])

    def __call__(self, x: Tensor) -> Tensor:
        if self.degrees % 360 == 0:
            return x
        theta = self.theta.to(x.dtype).expand(x.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __repr__(self) -> str:
        return f"Rotate({self.degrees:g})"


class TaskData:
    """One split of one task.

    Args:
        x: base inputs (uint8 images are scaled to [0, 1] on access), shape (N, ...).
        y: labels for the *base* inputs, already in the label space the model predicts.
        task_id: id attached to every example (multi-head models pick the head from it).
        index: optional subset of base rows (kept as indices, not copies).
        transform: applied to each batch of float inputs.

    Example:
        >>> d = TaskData(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), 3)
        >>> x, y, t = d.get(torch.tensor([0, 1]))
        >>> tuple(x.shape), t.tolist()
        ((2, 1, 2, 2), [3, 3])
    """

    random_access = True

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        task_id: int,
        index: Tensor | None = None,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"inputs ({x.shape[0]}) and labels ({y.shape[0]}) differ in length")
        self.x = x
        self.y = y
        self.task_id = int(task_id)
        self.index = index
        self.transform = transform

    def __len__(self) -> int:
        return int(self.index.numel()) if self.index is not None else int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def labels(self) -> Tensor:
        return self.y if self.index is None else self.y[self.index]

    def get(self, idx: Tensor) -> Batch:
        rows = idx if self.index is None else self.index[idx]
        x = self.x[rows]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self.transform is not None:
            x = self.transform(x)
        y = self.y[rows].long()
        return x, y, torch.full((len(rows),), self.task_id, dtype=torch.long)

    def subset(self, idx: Tensor) -> TaskData:
        rows = idx if self.index is None else self.index[idx]
        return TaskData(self.x, self.y, self.task_id, rows, self.transform)


class ConcatData:
    """Several task data seen as one (joint training, replay).

    With random access in every part, ``get`` indexes the concatenation. Otherwise (a part is
    a ``BatchIterable``) :meth:`batches` deals the parts' batches round-robin, so one epoch
    mixes the tasks batch by batch.

    Example:
        >>> a = TaskData(torch.zeros(2, 3), torch.tensor([0, 1]), 0)
        >>> b = TaskData(torch.ones(3, 3), torch.tensor([1, 0, 1]), 1)
        >>> ConcatData([a, b]).get(torch.tensor([4, 0]))[2].tolist()
        [1, 0]
    """

    def __init__(self, parts: Sequence) -> None:
        if not parts:
            raise ValueError("ConcatData needs at least one part")
        self.parts = list(parts)
        sizes = torch.tensor([len(p) for p in self.parts])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def random_access(self) -> bool:
        return all(p.random_access for p in self.parts)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.parts[0].input_shape

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """The parts' batches dealt round-robin (parts with random access in ``batch_size``
        batches, shuffled with ``generator`` if ``shuffle``; the others in their own)."""
        streams = [
            p.batches(batch_size, shuffle, generator) if not p.random_access else iterate(p, batch_size, shuffle, generator)
            for p in self.parts
        ]
        while streams:
            for s in list(streams):
                batch = next(s, None)
                if batch is None:
                    streams.remove(s)
                else:
                    yield batch

    def labels(self) -> Tensor:
        return torch.cat([p.labels() for p in self.parts])

    def get(self, idx: Tensor) -> Batch:
        which = torch.searchsorted(self.offsets, idx, right=True) - 1
        xs, ys, ts, order = [], [], [], []
        for k in which.unique().tolist():
            sel = (which == k).nonzero(as_tuple=True)[0]
            x, y, t = self.parts[k].get(idx[sel] - self.offsets[k])
            xs.append(x), ys.append(y), ts.append(t), order.append(sel)
        # restore the requested order so shuffling stays meaningful
        inv = torch.empty(len(idx), dtype=torch.long)
        inv[torch.cat(order)] = torch.arange(len(idx))
        return torch.cat(xs)[inv], torch.cat(ys)[inv], torch.cat(ts)[inv]


class Relabelled:
    """``data`` with each label ``c`` replaced by ``lookup[c]`` (any kind of task data: with
    random access or its own batches): a task's split seen with the task's own labels.

    Example:
        >>> d = Relabelled(TaskData(torch.zeros(3, 1), torch.tensor([4, 5, 4]), 2), torch.tensor([-1, -1, -1, -1, 0, 1]))
        >>> d.get(torch.arange(3))[1].tolist(), d.labels().tolist(), len(d)
        ([0, 1, 0], [0, 1, 0], 3)
    """

    def __init__(self, data: SplitData, lookup: Tensor) -> None:
        self.data, self.lookup = data, lookup

    @property
    def random_access(self) -> bool:
        return self.data.random_access

    @property
    def task_id(self) -> int | None:
        return getattr(self.data, "task_id", None)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.data.input_shape

    def labels(self) -> Tensor:
        return self.lookup[self.data.labels()]

    def get(self, idx: Tensor) -> Batch:
        x, y, t = self.data.get(idx)
        return x, self.lookup[y], t

    def batches(self, batch_size: int | None = None, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        for x, y, t in self.data.batches(batch_size, shuffle, generator):
            yield x, self.lookup[y], t


def relabel(data: SplitData, classes: Sequence[int]) -> TaskData | Relabelled:
    """``data`` (one task's split) with labels ``classes[i]`` read as ``i``: the task's own
    labels ``0..k-1``. In-memory data stays :class:`TaskData` (the inputs are shared, not
    copied); other kinds are wrapped in :class:`Relabelled`.

    Example:
        >>> d = relabel(TaskData(torch.zeros(3, 1), torch.tensor([7, 3, 7]), 1), (3, 7))
        >>> type(d).__name__, d.labels().tolist()
        ('TaskData', [1, 0, 1])
    """
    if isinstance(data, TaskData):
        lookup = torch.full((max(int(data.y.max()) if len(data.y) else 0, *classes) + 1,), -1, dtype=torch.long)
        lookup[torch.as_tensor(list(classes), dtype=torch.long)] = torch.arange(len(classes))
        return TaskData(data.x, lookup[data.y.long()], data.task_id, data.index, data.transform)
    lookup = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    lookup[torch.as_tensor(list(classes), dtype=torch.long)] = torch.arange(len(classes))
    return Relabelled(data, lookup)
