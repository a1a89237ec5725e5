"""Your own data: a ``torch.utils.data.Dataset``, a ``DataLoader`` or any re-iterable of
``(x, y)`` batches as task data, and :func:`stream_from_datasets` to build a stream of them.

* A map-style ``Dataset`` of ``(x, y)`` items becomes a :class:`DatasetData`: lazy random
  access (``get`` reads only the rows asked for), so the run's generator shuffles it, ranks
  shard it and sample budgets cut it exactly as an in-memory :class:`TaskData`.
* A ``DataLoader``, a list of batches or a function returning a fresh iterator of batches
  becomes a :class:`BatchIterable`: read in its own order (it shuffles itself), regrouped
  into the batch size the loop asks for (:func:`anpyc.data.taskdata.rebatch`).

Inputs are tensors or numpy arrays (``uint8`` is scaled to [0, 1], everything else cast to
float32, as for the built-in streams); labels are ints, numpy ints or integer tensors, in the
label space the model predicts (used as given).

Example:
    >>> from torch.utils.data import TensorDataset
    >>> data = as_task_data(TensorDataset(torch.randn(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])), task_id=2)
    >>> x, y, t = data.get(torch.tensor([4, 1]))
    >>> tuple(x.shape), y.tolist(), t.tolist()
    ((2, 2), [0, 1], [2, 2])
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset

from anpyc.data.streams import Stream, Task
from anpyc.data.taskdata import Batch, ConcatData, TaskData
from anpyc.errors import AnpycError, ConfigError, DataError, one_line
from anpyc.utils import seeded_generator

if TYPE_CHECKING:
    from anpyc.data.batches import SplitData

log = logging.getLogger(__name__)

#: batch size of the ``DataLoader`` an ``IterableDataset`` of single items is wrapped in
ITERABLE_DATASET_BATCH = 256


def _inputs(x: Any, where: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise ConfigError(
            f"{where}: inputs must be tensors or numpy arrays, got {type(x).__name__} (add a transform such as ToTensor)"
        )
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def _label(y: Any, where: str) -> int:
    if isinstance(y, np.generic):
        y = y.item()
    elif isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if isinstance(y, Tensor) and y.numel() == 1 and not (y.is_floating_point() or y.is_complex()):
        y = y.reshape(()).item()
    if isinstance(y, int):
        return int(y)
    raise ConfigError(f"{where}: a label must be an integer (int or 0-d integer tensor), got {y!r:.60}")


def _pair(item: Any, where: str) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"a {type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) else type(item).__name__
        raise ConfigError(f"{where} must be an (inputs, labels) pair, got {got}")
    return item[0], item[1]


def _task_ids(n: int, task_id: int) -> Tensor:
    return torch.full((n,), task_id, dtype=torch.long)


class DatasetData:
    """A map-style ``Dataset`` of ``(x, y)`` items as task data: lazy, with random access.

    ``get(idx)`` reads ``dataset[i]`` for the requested rows only and stacks them, so a
    shuffled epoch reads each example once, and a sample budget reads only that many.
    ``labels()`` must read every item once (unless the dataset has a torchvision-style
    ``targets`` attribute and no ``target_transform``); the answer is cached and shared with
    subsets.

    Args:
        dataset: ``dataset[i] -> (x, y)``, with ``len(dataset)``.
        task_id: id attached to every example.
        index: optional subset of the dataset's rows (kept as indices).
        where: how errors name this split (default ``"task <id>"``).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> d = DatasetData(TensorDataset(torch.zeros(4, 3), torch.tensor([2, 0, 1, 2])), 1)
        >>> len(d), d.input_shape, d.subset(torch.tensor([0, 3])).labels().tolist()
        (4, (3,), [2, 2])
    """

    random_access = True

    def __init__(self, dataset: Dataset, task_id: int, index: Tensor | None = None, where: str | None = None) -> None:
        if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise ConfigError(f"{where or f'task {task_id}'}: DatasetData needs a map-style dataset (__getitem__ and __len__)")
        self.dataset = dataset
        self.task_id = int(task_id)
        self.index = index
        self.where = where or f"task {self.task_id}"
        # shared with subsets: the input shape and, per dataset row, its label (-1: not read yet)
        self._shared: dict[str, Any] = {"shape": None, "labels": None}

    def __len__(self) -> int:
        return int(self.index.numel()) if self.index is not None else len(self.dataset)

    def _rows(self, idx: Tensor) -> Tensor:
        return idx if self.index is None else self.index[idx]

    def _item(self, row: int) -> tuple[Tensor, int]:
        where = f"{self.where}, item {row}"
        x, y = _pair(self.dataset[row], where)
        return _inputs(x, where), _label(y, where)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (reads the first item once)."""
        if self._shared["shape"] is None:
            if len(self) == 0:
                raise ConfigError(f"{self.where} is empty")
            self._shared["shape"] = tuple(self._item(int(self._rows(torch.tensor([0]))[0]))[0].shape)
        return self._shared["shape"]

    def get(self, idx: Tensor) -> Batch:
        rows = self._rows(torch.as_tensor(idx, dtype=torch.long)).tolist()
        items = [self._item(r) for r in rows]
        if not items:
            x0, _ = self._item(int(self._rows(torch.tensor([0]))[0]))  # shapes of an example, then none of it
            return x0.unsqueeze(0)[:0], torch.zeros(0, dtype=torch.long), _task_ids(0, self.task_id)
        try:
            x = torch.stack([x for x, _ in items])
        except RuntimeError as exc:
            shapes = sorted({tuple(x.shape) for x, _ in items})
            raise ConfigError(f"{self.where}: items have different input shapes {shapes[:3]}") from exc
        y = torch.tensor([y for _, y in items], dtype=torch.long)
        return x, y, _task_ids(len(rows), self.task_id)

    def labels(self) -> Tensor:
        """Labels of every row, in order (cost: reading every item not yet read; cached)."""
        cache = self._shared["labels"]
        if cache is None:
            targets = getattr(self.dataset, "targets", None)  # torchvision's, unless a target_transform changes them
            if targets is not None and getattr(self.dataset, "target_transform", None) is None and len(targets) == len(self.dataset):
                cache = torch.as_tensor(np.asarray(targets), dtype=torch.long).clone()
            else:
                cache = torch.full((len(self.dataset),), -1, dtype=torch.long)
            self._shared["labels"] = cache
        rows = self._rows(torch.arange(len(self)))
        missing = rows[cache[rows] < 0]
        if len(missing):
            log.debug("%s: reading %d items for their labels", self.where, len(missing))
            for r in missing.tolist():
                where = f"{self.where}, item {r}"
                cache[r] = _label(_pair(self.dataset[r], where)[1], where)
        return cache[rows]

    def subset(self, idx: Tensor, where: str | None = None) -> DatasetData:
        """The rows ``idx`` of this data (indices kept, nothing read); shares the caches."""
        out = DatasetData(self.dataset, self.task_id, self._rows(torch.as_tensor(idx, dtype=torch.long)), where or self.where)
        out._shared = self._shared
        return out

    def __repr__(self) -> str:
        return f"DatasetData({type(self.dataset).__name__}, task_id={self.task_id}, n={len(self)})"


def _is_loader_like(obj: Any) -> bool:
    """Re-iterable (a fresh iterator per ``iter``) or a function returning one."""
    if isinstance(obj, Iterator):
        return False
    try:
        iter(obj)
    except TypeError:
        return callable(obj)
    return True


def _loader_examples(source: Any) -> int | None:
    """Examples per pass when the source tells without being read, else None."""
    if isinstance(source, DataLoader):
        bs = source.batch_sampler
        if isinstance(source.dataset, IterableDataset) or type(bs) is not BatchSampler:
            return None
        try:
            n = len(bs.sampler)
        except TypeError:
            return None
        return n - n % bs.batch_size if bs.drop_last else n
    if isinstance(source, (list, tuple)):
        try:
            return sum(len(b[1]) for b in source)
        except (TypeError, IndexError, KeyError):
            return None  # a malformed batch: reading it says what is wrong
    return None


class BatchIterable:
    """A ``DataLoader``, a list of ``(x, y)`` batches or a function returning a fresh
    iterator of them, as task data without random access.

    Every pass (:meth:`batches`) iterates the source anew, in its own order: shuffle in the
    loader (``DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(s))`` for a
    reproducible order). The run's generator and ``shuffle`` flags do not apply. A one-shot
    iterator (a generator object) is refused: the second epoch would find it empty.

    ``len()`` is the number of examples per pass: from the loader's sampler when it is a
    plain ``DataLoader`` over a map-style dataset, from the batches of a list, else counted
    by one pass over the source (then known: every full pass records it).

    Under torch.distributed every rank reads the whole source and keeps its share (see
    :func:`anpyc.parallel.collectives.shard_batches`): every rank must see the same order, so seed a
    shuffling loader's ``generator`` alike on every rank, and do not give it a
    ``DistributedSampler``.

    Example:
        >>> batches = [(torch.zeros(3, 2), torch.tensor([0, 1, 1])), (torch.ones(2, 2), torch.tensor([1, 0]))]
        >>> data = BatchIterable(batches, task_id=1)
        >>> len(data), [tuple(y.tolist()) for _, y, _ in data.batches()]
        (5, [(0, 1, 1), (1, 0)])
    """

    random_access = False

    def __init__(self, source: Any, task_id: int, where: str | None = None) -> None:
        self.where = where or f"task {int(task_id)}"
        if isinstance(source, Iterator):
            raise ConfigError(
                f"{self.where}: a one-shot iterator (a generator object?) would be empty after the first epoch; "
                "pass a DataLoader, a list of batches or a function returning a fresh iterator"
            )
        if not _is_loader_like(source):
            raise ConfigError(f"{self.where}: cannot read batches from a {type(source).__name__}")
        self.source = source
        self.task_id = int(task_id)
        self._count = _loader_examples(source)
        self._shape: tuple[int, ...] | None = None
        self._labels: Tensor | None = None

    def _open(self) -> Iterator:
        try:
            return iter(self.source)
        except TypeError:
            it = self.source()  # a factory
        if not isinstance(it, Iterator):
            it = iter(it)
        return it

    def batches(self, batch_size: int | None = None, shuffle: bool = False, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """One pass over the source's own batches, as ``(x, y, task ids)``; the arguments are
        accepted for the common interface and ignored (regroup with :func:`rebatch`)."""
        n = 0
        for k, batch in enumerate(self._open()):
            where = f"{self.where}, batch {k}"
            x, y = _pair(batch, where)
            x = _inputs(x, where)
            y = _batch_labels(y, where)
            if len(y) != len(x):
                raise ConfigError(f"{where}: {len(x)} inputs but {len(y)} labels")
            n += len(y)
            yield x, y, _task_ids(len(y), self.task_id)
        if n == 0:
            raise ConfigError(f"{self.where} is empty (the source gave no example)")
        self._count = n

    def __len__(self) -> int:
        if self._count is None:
            log.info("%s: counting the examples of the source (one pass)", self.where)
            for _ in self.batches():
                pass
        return int(self._count)  # type: ignore[arg-type]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (reads the first batch)."""
        if self._shape is None:
            x, _, _ = next(iter(self.batches()))
            self._shape = tuple(x.shape[1:])
        return self._shape

    def labels(self) -> Tensor:
        """Every label of one pass, in that pass's order (one pass; cached)."""
        if self._labels is None:
            self._labels = torch.cat([y for _, y, _ in self.batches()])
        return self._labels

    def get(self, idx: Tensor) -> Batch:
        raise TypeError(f"{self.where}: a {type(self.source).__name__} has no random access; iterate it (anpyc.data.iterate)")

    def __repr__(self) -> str:
        return f"BatchIterable({type(self.source).__name__}, task_id={self.task_id})"


def _batch_labels(y: Any, where: str) -> Tensor:
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    elif isinstance(y, (list, tuple)):
        y = torch.tensor([_label(v, where) for v in y], dtype=torch.long)
    if not isinstance(y, Tensor) or y.dim() != 1 or y.is_floating_point() or y.is_complex():
        raise ConfigError(f"{where}: labels must be a 1-D integer tensor, got {y!r:.60}")
    return y.long()


def as_task_data(obj: Any, task_id: int = 0,
                 where: str | None = None) -> TaskData | ConcatData | DatasetData | BatchIterable:
    """The task data for ``obj``:

    * anpyc task data (:class:`TaskData`, :class:`ConcatData`, :class:`DatasetData`,
      :class:`BatchIterable`): itself, untouched (the in-memory fast path);
    * a pair of tensors or arrays ``(x, y)``: an in-memory :class:`TaskData`;
    * a map-style ``torch.utils.data.Dataset`` of ``(x, y)`` items, or any object with
      ``__getitem__`` and ``__len__`` (a list or tuple excepted): a :class:`DatasetData`;
    * an ``IterableDataset`` of items: a :class:`BatchIterable` over a ``DataLoader`` of
      :data:`ITERABLE_DATASET_BATCH` items;
    * a ``DataLoader``, a list of ``(x, y)`` batches, or a function returning a fresh
      iterator of them: a :class:`BatchIterable`.

    A one-shot iterator, or anything else, raises :class:`ConfigError` naming ``where``.

    Example:
        >>> as_task_data((torch.zeros(3, 2), torch.tensor([0, 1, 0])), task_id=1).labels().tolist()
        [0, 1, 0]
        >>> as_task_data(x for x in []).__class__  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        anpyc.errors.ConfigError: task 0: a one-shot iterator ...
    """
    where = where or f"task {int(task_id)}"
    if isinstance(obj, (TaskData, ConcatData, DatasetData, BatchIterable)):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and all(isinstance(v, (Tensor, np.ndarray)) for v in obj):
        x, y = (torch.as_tensor(v) for v in obj)
        if y.is_floating_point() or y.is_complex():
            raise ConfigError(f"{where}: labels must be integers, got {y.dtype} (cast them with y.long())")
        if x.shape[:1] != y.shape[:1] or y.dim() != 1:
            raise ConfigError(f"{where}: (x, y) tensors need 1-D labels, one per input; got {tuple(x.shape)} and {tuple(y.shape)}")
        return TaskData(x, y.long(), task_id)
    if isinstance(obj, IterableDataset):
        return BatchIterable(DataLoader(obj, batch_size=ITERABLE_DATASET_BATCH), task_id, where)
    if isinstance(obj, Dataset) or _map_style(obj):
        return DatasetData(obj, task_id, where=where)
    return BatchIterable(obj, task_id, where)


def _map_style(obj: Any) -> bool:
    """A duck-typed map-style dataset: ``obj[i]`` and ``len(obj)`` without subclassing
    ``Dataset`` (a list or tuple is a list of batches, a ``DataLoader`` is a loader)."""
    return (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
            and not isinstance(obj, (list, tuple, str, bytes, dict, DataLoader)))


def _split_val(data: SplitData, val_fraction: float, seed: int,
               t: int) -> tuple[DatasetData, DatasetData] | tuple[TaskData, TaskData]:
    """(train, val) rows of one task's train set: ``val_fraction`` held out with a generator
    seeded from ``(seed, t)`` (nothing is read)."""
    if not isinstance(data, (DatasetData, TaskData)):
        raise ConfigError(
            f"task {t}: a {type(getattr(data, 'source', data)).__name__} train set cannot be split for validation; "
            "pass val=[...] (one per task)"
        )
    n = len(data)
    n_val = int(round(val_fraction * n))
    if not 1 <= n_val < n:
        raise ConfigError(f"task {t}: val_fraction {val_fraction} of {n} training examples leaves no train or no val example")
    order = torch.randperm(n, generator=seeded_generator(seed, 1_000_001, t))
    if isinstance(data, DatasetData):
        return data.subset(order[n_val:], f"task {t} train"), data.subset(order[:n_val], f"task {t} val")
    return data.subset(order[n_val:]), data.subset(order[:n_val])


def _input_shape(data: SplitData, where: str) -> tuple[int, ...]:
    if data.random_access and len(data) == 0:
        raise ConfigError(f"{where} is empty")
    return tuple(data.input_shape)


def _check_labels_fit(splits: dict[str, list], n_out: int) -> None:
    """Every label of these splits is a head output: a test label beyond the head sized from
    the train labels would count as an error no prediction can mend, and nothing would say so."""
    for split, datas in splits.items():
        for t, data in enumerate(datas):
            if data.random_access and len(data):
                y = data.labels()
                low, high = int(y.min()), int(y.max())
                if low < 0 or high >= n_out:
                    raise ConfigError(f"task {t} {split} labels span {low}..{high}, outside the head's outputs 0..{n_out - 1} "
                                      "(one more than the largest train label): fix the labels or pass n_outputs=")


def _classes_and_outputs(
    train: list, n_outputs: int | None, classes: Sequence[Sequence[int]] | None
) -> tuple[list[tuple[int, ...]], int]:
    """Each task's classes and the head size: given, or read from the train labels."""
    if n_outputs is None:
        for t, d in enumerate(train):
            if not d.random_access:
                raise ConfigError(f"task {t}: pass n_outputs= when a train set is a DataLoader or an iterable of batches")
        found = [tuple(sorted(set(d.labels().tolist()))) for d in train]
        if empty := [t for t, c in enumerate(found) if not c]:
            raise ConfigError(f"task {empty[0]} train is empty")
        lowest = min(c[0] for c in found)
        if lowest < 0:
            raise ConfigError(f"labels must be >= 0, found {lowest}")
        n_outputs = max(c[-1] for c in found) + 1
        classes = classes if classes is not None else found
    elif not isinstance(n_outputs, int) or n_outputs < 1:
        raise ConfigError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    if classes is None:
        classes = [tuple(range(n_outputs))] * len(train)
    if len(classes) != len(train):
        raise ConfigError(f"classes has {len(classes)} entries for {len(train)} tasks")
    return [tuple(int(c) for c in cs) for cs in classes], int(n_outputs)


def stream_from_datasets(
    train: Sequence,
    test: Sequence,
    val: Sequence | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    n_outputs: int | None = None,
    name: str = "custom",
    classes: Sequence[Sequence[int]] | None = None,
    description: str | None = None,
) -> Stream:
    """A :class:`Stream` of your own data: task ``t`` trains on ``train[t]`` and is tested
    on ``test[t]``; each entry is anything :func:`as_task_data` takes (a ``Dataset``, a
    ``DataLoader``, an iterable of ``(x, y)`` batches, a pair of tensors).

    ``val``: one validation set per task; when not given, ``val_fraction`` of each train set
    is held out with a generator seeded from ``(seed, task)`` (as the built-in streams do;
    a ``DataLoader`` train set cannot be split, pass ``val``). ``n_outputs``: the head size
    of every task; when not given, one more than the largest train label (which reads every
    train label once, and every test and given validation label to check that it fits that
    head: pass it to skip both; required for ``DataLoader`` train sets).
    ``classes``: each task's class ids (default: the labels found, or ``range(n_outputs)``).
    Labels are used as given: tasks whose classes do not overlap give a stream with global
    labels (any scenario), tasks that share labels (each task's own 0..k-1) a stream for the
    ``task`` and ``domain`` scenarios only. Every split's first example is read to check it is
    an ``(x, y)`` pair of the stream's input shape. ``name`` and ``description`` (default: one
    made of the data's shape) are recorded with every run on it (``benchmark: custom``).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> def part(k):
        ...     return TensorDataset(torch.randn(40, 1, 4, 4), torch.arange(40) % 2 + 2 * k)
        >>> stream = stream_from_datasets([part(0), part(1)], [part(0), part(1)], seed=0)
        >>> len(stream), stream.input_shape, stream[1].classes, stream[1].n_outputs, len(stream[1].val)
        (2, (1, 4, 4), (2, 3), 4, 4)
    """
    if not all(hasattr(v, "__len__") and hasattr(v, "__getitem__") for v in (train, test, val) if v is not None):
        raise ConfigError("train, test (and val) must be lists with one data set per task")
    if len(train) == 0 or len(test) != len(train) or (val is not None and len(val) != len(train)):
        raise ConfigError(
            f"need one train and one test set per task (and one val set, if given): got {len(train)} train, "
            f"{len(test)} test" + (f", {len(val)} val" if val is not None else "")
        )
    if val is None and not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    trains = [as_task_data(d, t, f"task {t} train") for t, d in enumerate(train)]
    tests = [as_task_data(d, t, f"task {t} test") for t, d in enumerate(test)]
    task_classes, n_out = _classes_and_outputs(trains, n_outputs, classes)
    if val is None:
        trains, vals = map(list, zip(*(_split_val(d, val_fraction, seed, t) for t, d in enumerate(trains))))
    else:
        vals = [as_task_data(d, t, f"task {t} val") for t, d in enumerate(val)]
    if n_outputs is None:  # the head was sized from the train labels: the other splits must fit it
        _check_labels_fit({"test": tests, **({"val": vals} if val is not None else {})}, n_out)
    shape = _input_shape(trains[0], "task 0 train")
    for t in range(len(trains)):
        for split, data in (("train", trains[t]), ("val", vals[t]), ("test", tests[t])):
            got = _input_shape(data, f"task {t} {split}")
            if got != shape:
                raise ConfigError(f"task {t} {split} inputs have shape {got}, task 0 train's {shape}: tasks must share one input shape")
    disjoint = len(task_classes) > 1 and sum(map(len, task_classes)) == len(set().union(*task_classes))
    tasks = [
        Task(t, f"{name}-{t}", task_classes[t], trains[t], vals[t], tests[t], n_out, {"source": type(train[t]).__name__})
        for t in range(len(trains))
    ]
    labels = "global" if disjoint else "local"
    if description is None:
        sources = ", ".join(sorted({type(d).__name__ for d in train}))
        description = (f"{name}: {len(tasks)} tasks of your own data ({sources}), input shape {tuple(shape)}, "
                       f"{n_out} outputs, {labels} labels")
    log.debug("stream %s", description)
    return Stream(name, tasks, shape, n_out, labels=labels, description=description, custom=True)


def stream_from_source(source: str, seed: int = 0) -> Stream:
    """The stream a function of your own builds: ``source`` is ``MODULE:FUNCTION`` (a module
    importable from the working directory, such as ``mydata:make``) or ``FILE.py:FUNCTION``.
    The function returns a stream built by :func:`stream_from_datasets`; it is called with
    ``seed=`` when it takes a ``seed`` argument (so that each seed of a comparison holds out
    its own validation rows), else with no argument. What the command line's ``--stream-from``
    and a config's ``stream.source`` run.

    Example:
        >>> stream_from_source("nosuchmodule:make")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        anpyc.errors.ConfigError: --stream-from nosuchmodule:make: no module named 'nosuchmodule' ...
    """
    import inspect

    fn = load_function(source, "--stream-from")
    try:
        takes_seed = "seed" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_seed = False
    try:
        stream = fn(seed=seed) if takes_seed else fn()
    except AnpycError:
        raise
    except Exception as exc:  # the user's code failed: say what, in the CLI's one line
        raise DataError(f"--stream-from {source} raised {one_line(exc)}") from exc
    if not isinstance(stream, Stream):
        raise ConfigError(f"--stream-from {source}: {getattr(fn, '__name__', 'the function')} returned a "
                          f"{type(stream).__name__}, not a stream (build it with anpyc.data.stream_from_datasets)")
    return stream


def _import_source(module_name: str) -> Any:
    """The module ``MODULE`` or ``FILE.py`` names, imported (the working directory searched as
    ``python -m`` does); a file's module is registered so that pickling (parallel jobs) finds its classes."""
    import importlib
    import importlib.util
    import os
    import sys
    from pathlib import Path

    if not module_name.endswith(".py"):
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)
    path = Path(module_name)
    spec = importlib.util.spec_from_file_location(f"anpyc_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)  # no half-run module left behind
        raise
    return module


def load_function(source: str, flag: str) -> Any:
    """The function ``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` names; a one-line
    :class:`ConfigError` when it is not there or its module cannot be imported."""
    from pathlib import Path

    module_name, sep, attr = str(source).rpartition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise ConfigError(f"{flag} expects MODULE:FUNCTION or FILE.py:FUNCTION, got {source!r}")
    if module_name.endswith(".py") and not Path(module_name).is_file():
        raise ConfigError(f"{flag} {source}: no file {module_name} in {Path.cwd()} (a relative path is read from "
                          "the working directory; run from the folder that holds it)")
    try:
        module = _import_source(module_name)
    except AnpycError:
        raise
    except ModuleNotFoundError as exc:
        if module_name.endswith(".py") or not f"{module_name}.".startswith(f"{exc.name}."):  # one it imports
            raise ConfigError(f"{flag} {source}: cannot import it: {one_line(exc)}") from exc
        raise ConfigError(f"{flag} {source}: no module named {exc.name!r} (run from the folder that holds it, "
                          "or give FILE.py:FUNCTION)") from None
    except Exception as exc:  # SyntaxError, ImportError, anything its top level raises
        raise ConfigError(f"{flag} {source}: cannot import it: {one_line(exc)}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"{flag} {source}: {module_name} has no function {attr!r}")
    return fn


def resolve_data(data: Any) -> SplitData:
    """``data`` if it is anpyc task data; else wrapped by :func:`as_task_data` (a
    ``Dataset``, ``DataLoader`` or iterable of batches, task id 0)."""
    return data if hasattr(data, "random_access") else as_task_data(data)
