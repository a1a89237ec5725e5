"""Task streams, one registry entry each: permuted / rotated MNIST, split (Fashion-)MNIST,
split CIFAR and a synthetic stream.

A stream is a data set and a protocol. :func:`register_stream` names one: its ``loader``
gives the data set's arrays, its ``kind`` (a key of :data:`STREAM_KINDS`) makes the tasks:
``permuted`` (every task sees every class through its own pixel permutation), ``rotated``
(its own rotation), ``split`` (consecutive groups of ``stream.classes_per_task`` classes),
``split-even`` (the classes shared equally among ``stream.tasks`` tasks) or a kind of your
own (:func:`register_kind`). Every split stream is built by one task builder
(:func:`split_tasks`, half-open class ranges). :func:`make_stream` builds a registered
stream by name and rejects any other name.

A :class:`Stream` is a sequence of :class:`Task` (indexable, sliceable, iterable). Each task
has its own ``torch.Generator`` seeded from ``(seed, task id)``, so one seed always gives the
same stream whatever was drawn before (no global RNG).

Example:
    >>> from anpyc.config import StreamConfig
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=3), seed=0)
    >>> len(stream), stream[0].n_outputs
    (3, 4)
    >>> STREAMS["split-mnist"].kind, STREAMS["split-mnist"].dataset
    ('split', 'mnist')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from anpyc.config import StreamConfig
from anpyc.data import cifar, sources
from anpyc.data.batches import SplitData
from anpyc.data.taskdata import Permute, Rotate, TaskData
from anpyc.data.transforms import Compose, Normalize, RandomCropFlip, channel_stats
from anpyc.errors import ConfigError, unknown
from anpyc.utils import seeded_generator


@dataclass
class Task:
    """One task: its splits, the classes it contains and how many outputs its head needs.

    The splits are in-memory :class:`TaskData` in the built-in streams; your own data
    (:func:`anpyc.data.user.stream_from_datasets`) may be lazy or a loader.

    Example:
        >>> task = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)[1]
        >>> task.id, task.name, task.n_outputs, len(task.train), len(task.split("val"))
        (1, 'blobs-1', 4, 1800, 200)
        >>> x, y, t = task.train.get(torch.arange(2))  # inputs, labels, task ids
        >>> tuple(x.shape), t.tolist()
        ((2, 1, 8, 8), [1, 1])
    """

    id: int
    name: str
    classes: tuple[int, ...]
    train: SplitData
    val: SplitData
    test: SplitData
    n_outputs: int
    info: dict = field(default_factory=dict)

    def split(self, name: str) -> SplitData:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)


@dataclass
class Stream:
    """An ordered sequence of tasks sharing one input shape.

    Example:
        >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
        >>> len(stream), stream.input_shape, [task.name for task in stream]
        (2, (1, 8, 8), ['blobs-0', 'blobs-1'])
    """

    name: str
    tasks: list[Task]
    input_shape: tuple[int, ...]
    n_classes: int  # size of a single shared head (all classes of the stream)
    labels: str  # "local" (per-task labels, multi-head) or "global"
    description: str = ""  # what it is, in words (recorded in config.yaml for a stream of your own)
    custom: bool = False  # your own data (stream_from_datasets), not a registered stream

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int | slice):
        return self.tasks[i]

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)


def _split_train_val(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=seeded_generator(seed, 1_000_001))
    n_val = int(round(val_fraction * n))
    return order[n_val:], order[:n_val]


def _take(index: Tensor, k: int | None, gen: torch.Generator) -> Tensor:
    if k is None or k >= index.numel():
        return index
    return index[torch.randperm(index.numel(), generator=gen)[:k]]


def _val_budget(cfg: StreamConfig) -> int | None:
    if cfg.val_subsample is not None:
        return cfg.val_subsample
    if cfg.subsample is None:
        return None
    return max(1, int(round(cfg.subsample * cfg.val_fraction / (1.0 - cfg.val_fraction))))


def _standardizer(cfg: StreamConfig, train_x: Tensor, train_rows: Tensor) -> tuple[Normalize | None, dict | None]:
    """Per-channel standardisation with statistics of the training rows (``cfg.standardize``),
    and the statistics as recorded in each task's ``info`` (``None``: inputs left in [0, 1])."""
    if not cfg.standardize:
        return None, None
    mean, std = channel_stats(train_x, train_rows)
    return Normalize(mean, std), {"mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std]}


def _then(first: Callable[[Tensor], Tensor] | None,
          second: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor] | None:
    """``second`` after ``first`` (either may be None)."""
    if first is None or second is None:
        return first if second is None else second
    return Compose([first, second])


# ----------------------------------------------------------------------------- the registry
#: ``loader(data_dir, seed) -> arrays``: a data set as ``train_x``, ``train_y``, ``test_x``,
#: ``test_y`` (numpy or torch; images as (N, H, W) or (N, C, H, W)) and optionally ``classes``
#: (class names)
Loader = Callable[[Any, int], Any]
#: ``kind(spec, cfg, seed, labels) -> Stream``: how a stream's tasks are made of its data
Kind = Callable[["StreamSpec", StreamConfig, int, str], "Stream"]


@dataclass(frozen=True)
class StreamSpec:
    """One registered stream: its data set (``loader``) and its protocol (``kind``).

    ``default_tasks``: the stream length when ``stream.tasks`` is not set (``None``: the kind's
    own default; a ``split`` stream then has every class once). ``dataset``: the data set it
    draws on (an ``anpyc data`` name), for what needs the raw data set (a generator's judge).
    ``standardize``: whether ``stream.standardize`` applies (``False``: inputs are standard
    already, as the synthetic blobs). ``augment``: whether ``stream.augment`` is available.
    """

    name: str
    loader: Loader
    kind: str
    default_tasks: int | None = None
    dataset: str | None = None
    standardize: bool = True
    augment: bool = False
    description: str = ""


#: every stream by name (:func:`register_stream`); ``StreamConfig.benchmark`` names one
STREAMS: dict[str, StreamSpec] = {}
#: how tasks are made of a data set, by name (:func:`register_kind`)
STREAM_KINDS: dict[str, Kind] = {}


def register_kind(name: str) -> Callable[[Kind], Kind]:
    """Decorator: ``kind(spec, cfg, seed, labels) -> Stream`` under ``name``."""

    def deco(fn: Kind) -> Kind:
        if STREAM_KINDS.get(name, fn) is not fn:
            raise ValueError(f"stream kind {name!r} registered twice")
        STREAM_KINDS[name] = fn
        return fn

    return deco


@overload
def register_stream(
    name: str, *, kind: str, loader: Loader, default_tasks: int | None = None,
    dataset: str | None = None, standardize: bool = True, augment: bool = False, description: str = "",
) -> StreamSpec: ...


@overload
def register_stream(
    name: str, *, kind: str, loader: None = None, default_tasks: int | None = None,
    dataset: str | None = None, standardize: bool = True, augment: bool = False, description: str = "",
) -> Callable[[Loader], Loader]: ...


def register_stream(
    name: str, *, kind: str, loader: Loader | None = None, default_tasks: int | None = None,
    dataset: str | None = None, standardize: bool = True, augment: bool = False, description: str = "",
) -> StreamSpec | Callable[[Loader], Loader]:
    """Register stream ``name``: with ``loader=`` it is registered at once (and its
    :class:`StreamSpec` returned); without, this is a decorator of the loader.

    Example:
        >>> @register_stream("doc-blobs", kind="split", standardize=False)
        ... def doc_blobs(data_dir, seed):
        ...     return synthetic_blobs(seed, n_per_class=20)
        >>> from anpyc.config import StreamConfig
        >>> [t.classes for t in make_stream(StreamConfig(benchmark="doc-blobs"))]
        [(0, 1), (2, 3)]
        >>> del STREAMS["doc-blobs"]
    """

    def add(fn: Loader) -> StreamSpec:
        if kind not in STREAM_KINDS:
            raise ValueError(f"stream {name!r}: unknown kind {kind!r}; known: {', '.join(STREAM_KINDS)}")
        spec = StreamSpec(name, fn, kind, default_tasks, dataset, standardize, augment, description)
        known = STREAMS.get(name)
        if known is not None and known.loader is not fn:
            raise ValueError(f"stream name {name!r} registered twice")
        STREAMS[name] = spec
        return spec

    if loader is not None:
        return add(loader)

    def deco(fn: Loader) -> Loader:
        add(fn)
        return fn

    return deco


def get_stream_spec(name: str) -> StreamSpec:
    """The registered stream ``name``; any other name is a :class:`ConfigError`."""
    try:
        return STREAMS[name]
    except (KeyError, TypeError):
        raise ConfigError(unknown("benchmark", name, STREAMS)) from None


def make_stream(cfg: StreamConfig, seed: int = 0, labels: str = "local") -> Stream:
    """Build the stream named by ``cfg.benchmark`` (a name of :data:`STREAMS`).

    ``labels='local'`` gives per-task labels for one head per task (task-aware);
    ``'global'`` gives the stream's class ids for one shared head (class-incremental).

    Example:
        >>> cfg = StreamConfig(benchmark="blobs", tasks=2)
        >>> make_stream(cfg, seed=0)[1].test.labels().unique().tolist()
        [0, 1, 2, 3]
        >>> make_stream(cfg, seed=0, labels="global")[1].test.labels().unique().tolist()
        [4, 5, 6, 7]
    """
    spec = get_stream_spec(cfg.benchmark)
    if cfg.augment and not spec.augment:
        able = ", ".join(n for n, s in STREAMS.items() if s.augment)
        raise ConfigError(f"stream.augment is only available for the streams that support it ({able}), not {spec.name}")
    return STREAM_KINDS[spec.kind](spec, cfg, seed, labels)


# ----------------------------------------------------------------------------- building blocks
def _tensors(arrays: dict) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``train_x, train_y, test_x, test_y`` as tensors, images with a channel axis."""
    train_x = torch.as_tensor(np.asarray(arrays["train_x"]))
    train_y = torch.as_tensor(np.asarray(arrays["train_y"]).astype(np.int64))
    test_x = torch.as_tensor(np.asarray(arrays["test_x"]))
    test_y = torch.as_tensor(np.asarray(arrays["test_y"]).astype(np.int64))
    if train_x.dim() == 3:  # (N, H, W) -> (N, 1, H, W)
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    return train_x, train_y, test_x, test_y


def _n_classes(arrays: dict, train_y: Tensor) -> int:
    names = arrays.get("classes")
    return len(names) if names else int(train_y.max()) + 1


def _transformed_stream(
    spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str, arrays: dict, n_tasks: int,
    make_transform: Callable[[int], object], info: Callable[[int], dict],
) -> Stream:
    """Every task sees all classes of the base data set through its own transform.

    ``labels='global'`` (class-incremental) makes each task's classes new ones: task ``t``'s
    labels are offset by ``t * n_classes`` (van de Ven et al.'s class-incremental permuted
    MNIST: 10 tasks give 100 classes)."""
    train_x, train_y, test_x, test_y = _tensors(arrays)
    n_classes = int(train_y.max()) + 1
    tr_idx, va_idx = _split_train_val(len(train_y), cfg.val_fraction, seed)
    # images are standardised after their rotation or permutation (a rotation's zero fill then
    # becomes the background's standardised value)
    norm, stats = _standardizer(cfg, train_x, tr_idx) if spec.standardize else (None, None)
    tasks = []
    n_global = n_classes * n_tasks if labels == "global" else n_classes
    for t in range(n_tasks):
        g = seeded_generator(seed, 2, t)
        transform = _then(make_transform(t), norm)
        offset = n_classes * t if labels == "global" else 0
        ytr, yte = (train_y + offset, test_y + offset) if offset else (train_y, test_y)
        tasks.append(
            Task(
                id=t,
                name=f"{spec.name}-{t}",
                classes=tuple(range(offset, offset + n_classes)),
                train=TaskData(train_x, ytr, t, _take(tr_idx, cfg.subsample, g), transform),
                val=TaskData(train_x, ytr, t, _take(va_idx, _val_budget(cfg), g), transform),
                test=TaskData(test_x, yte, t, _take(torch.arange(len(test_y)), cfg.test_subsample, g), transform),
                n_outputs=n_global,
                info={**info(t), "standardize": stats},
            )
        )
    return Stream(spec.name, tasks, tuple(train_x.shape[1:]), n_global, labels=labels)


def split_tasks(
    cfg: StreamConfig, seed: int, name: str, arrays: dict, per_task: int, n_tasks: int, labels: str, *,
    salt: int, first_id: int = 0, class_offset: int = 0, n_global: int | None = None, augment: bool = False,
) -> list[Task]:
    """The one task builder of split streams: tasks ``first_id..`` holding consecutive
    half-open groups ``[k * per_task, (k + 1) * per_task)`` of the data set's classes.

    Labels are each task's own (``labels='local'``: class mod ``per_task``) or the stream's
    (``'global'``: class + ``class_offset``, over ``n_global`` outputs). Inputs are
    standardised per channel with statistics of this data set's training rows (the validation
    rows held out) unless ``cfg.standardize`` is false; with ``augment`` the training split also
    gets random crops and flips, each task from its own seeded generator. ``salt`` seeds each
    task's subsampling (kept per stream, so a seed draws the same examples as it always did).
    """
    train_x, train_y, test_x, test_y = _tensors(arrays)
    n_global = n_global or _n_classes(arrays, train_y)
    tr_idx, va_idx = _split_train_val(len(train_y), cfg.val_fraction, seed)
    norm, stats = _standardizer(cfg, train_x, tr_idx)  # the whole data set's training rows
    if labels == "local":
        ytr, yte = train_y % per_task, test_y % per_task
    else:
        ytr, yte = train_y + class_offset, test_y + class_offset
    names = arrays.get("classes")
    tasks = []
    for k in range(n_tasks):
        t = first_id + k
        g = seeded_generator(seed, salt, t)
        lo, hi = k * per_task, (k + 1) * per_task

        def pick(idx: Tensor, y: Tensor, lo: int = lo, hi: int = hi) -> Tensor:
            yy = y[idx]
            return idx[(yy >= lo) & (yy < hi)]

        train_tf = _then(RandomCropFlip(4, generator=seeded_generator(seed, AUGMENT_SALT, t)), norm) if augment else norm
        classes = tuple(range(class_offset + lo, class_offset + hi))
        info = {"classes": list(classes), **({"class_names": list(names[lo:hi])} if names else {}), "standardize": stats}
        tasks.append(
            Task(
                id=t,
                name=f"{name}-{t}",
                classes=classes,
                train=TaskData(train_x, ytr, t, _take(pick(tr_idx, train_y), cfg.subsample, g), train_tf),
                val=TaskData(train_x, ytr, t, _take(pick(va_idx, train_y), _val_budget(cfg), g), norm),
                test=TaskData(test_x, yte, t, _take(pick(torch.arange(len(test_y)), test_y), cfg.test_subsample, g), norm),
                n_outputs=per_task if labels == "local" else n_global,
                info=info,
            )
        )
    return tasks


#: the augmentation generators' salt (split-even streams)
AUGMENT_SALT = 7


def synthetic_blobs(seed: int = 0, n_per_class: int = 500, n_classes: int = 4, side: int = 8,
                    separation: float = 4.0) -> dict:
    """Synthetic data shaped like tiny 1 x side x side images (offline tests and demos).

    Each class is a Gaussian blob: unit-variance noise around a random centre at distance
    ``separation`` from the origin, so one epoch of a small MLP learns a task to about 90 % (4 classes)
    (the earlier teacher-network labels left one epoch near chance: 32 % with 4 classes).
    Permuting pixels then moves every centre, so tasks interfere in an MLP as permuted
    MNIST's do.

    Example:
        >>> d = synthetic_blobs(0, n_per_class=10)
        >>> d["train_x"].shape, sorted(set(d["train_y"].tolist()))
        ((40, 1, 8, 8), [0, 1, 2, 3])
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    d = side * side
    centres = torch.randn(n_classes, d, generator=g)
    centres = separation * centres / centres.norm(dim=1, keepdim=True)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = torch.arange(n_classes).repeat_interleave(n)[torch.randperm(n * n_classes, generator=g)]
        x = centres[y] + torch.randn(n * n_classes, d, generator=g)
        return x.reshape(-1, 1, side, side).numpy(), y.numpy()

    tx, ty = sample(n_per_class)
    ex, ey = sample(max(50, n_per_class // 3))
    return {"train_x": tx, "train_y": ty, "test_x": ex, "test_y": ey}


# ----------------------------------------------------------------------------- kinds
@register_kind("permuted")
def permuted(spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str) -> Stream:
    """Every task: all classes, the pixels in the task's own fixed random order (task 0 as is
    when ``stream.first_task_unpermuted``)."""
    n_tasks = cfg.tasks or spec.default_tasks or 10
    arrays = spec.loader(cfg.data_dir, seed)
    d = int(np.prod(np.asarray(arrays["train_x"]).shape[1:]))

    def permutation(t: int) -> Permute | None:
        if t == 0 and cfg.first_task_unpermuted:
            return None
        return Permute(torch.randperm(d, generator=seeded_generator(seed, 4, t)))

    return _transformed_stream(spec, cfg, seed, labels, arrays, n_tasks, make_transform=permutation,
                               info=lambda t: {"permuted": permutation(t) is not None})


@register_kind("rotated")
def rotated(spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str) -> Stream:
    """Every task: all classes, rotated by an angle of its own (evenly spaced over half a
    turn; task 0 unrotated)."""
    n_tasks = cfg.tasks or spec.default_tasks or 10
    angles = [180.0 * t / n_tasks for t in range(n_tasks)]
    return _transformed_stream(spec, cfg, seed, labels, spec.loader(cfg.data_dir, seed), n_tasks,
                               make_transform=lambda t: Rotate(angles[t]),
                               info=lambda t: {"degrees": angles[t]})


@register_kind("split")
def split(spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str) -> Stream:
    """Task ``t`` holds classes ``[t * k, (t + 1) * k)`` for ``k = stream.classes_per_task``;
    by default every class once."""
    arrays = spec.loader(cfg.data_dir, seed)
    n_classes = _n_classes(arrays, torch.as_tensor(np.asarray(arrays["train_y"]).astype(np.int64)))
    per_task = cfg.classes_per_task
    n_tasks = cfg.tasks or spec.default_tasks or max(1, n_classes // per_task)
    if n_tasks > n_classes // per_task:
        raise ConfigError(f"{spec.name} has at most {n_classes // per_task} tasks of {per_task} classes, asked for {n_tasks}")
    tasks = split_tasks(cfg, seed, spec.name, arrays, per_task, n_tasks, labels, salt=3, n_global=n_classes)
    return Stream(spec.name, tasks, tuple(tasks[0].train.x.shape[1:]), n_classes, labels=labels)


def _divisor_tasks(name: str, n_classes: int, n_tasks: int) -> int:
    """Classes per task of a split stream whose tasks share the classes equally."""
    if n_classes % n_tasks:
        options = ", ".join(str(k) for k in range(1, n_classes + 1) if n_classes % k == 0)
        raise ConfigError(f"{name}: {n_classes} classes do not split into {n_tasks} equal tasks; --tasks one of {options}")
    return n_classes // n_tasks


@register_kind("split-even")
def split_even(spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str) -> Stream:
    """The data set's classes shared equally among ``stream.tasks`` tasks (CIFAR-100 in 10
    tasks of 10 classes, or 20 of 5), random crops and flips with ``stream.augment``."""
    arrays = spec.loader(cfg.data_dir, seed)
    n_classes = _n_classes(arrays, torch.as_tensor(np.asarray(arrays["train_y"]).astype(np.int64)))
    n_tasks = cfg.tasks or spec.default_tasks or n_classes
    per_task = _divisor_tasks(spec.name, n_classes, n_tasks)
    tasks = split_tasks(cfg, seed, spec.name, arrays, per_task, n_tasks, labels, salt=6, n_global=n_classes,
                        augment=cfg.augment)
    return Stream(spec.name, tasks, tuple(tasks[0].train.x.shape[1:]), n_classes, labels=labels)


@register_kind("cifar10-100")
def cifar10_then_100(spec: StreamSpec, cfg: StreamConfig, seed: int, labels: str) -> Stream:
    """Task 0 is all of CIFAR-10, then CIFAR-100 in groups of 10 classes: 6 tasks by default
    as in SI (Zenke et al. 2017); 11 is the whole of CIFAR-100 as in HAT (Serra et al. 2018).
    With ``labels='global'`` CIFAR-100's classes follow CIFAR-10's (10..)."""
    n_tasks = cfg.tasks or spec.default_tasks or 6
    if n_tasks > 11:
        raise ConfigError(f"{spec.name} has at most 11 tasks (CIFAR-10, then 10 x 10 CIFAR-100 classes), asked for {n_tasks}")
    first, second = spec.loader(cfg.data_dir, seed)
    n_global = 10 + 10 * (n_tasks - 1)
    kw = {"salt": 6, "n_global": n_global, "augment": cfg.augment}
    tasks = split_tasks(cfg, seed, spec.name, first, 10, 1, labels, **kw)
    if n_tasks > 1:
        tasks += split_tasks(cfg, seed, spec.name, second, 10, n_tasks - 1, labels, first_id=1, class_offset=10, **kw)
    return Stream(spec.name, tasks, (3, 32, 32), n_global, labels=labels)


# ----------------------------------------------------------------------------- the streams
def _dataset(name: str) -> Loader:
    """The loader of a fetched data set (``anpyc data fetch NAME``)."""
    if name in cifar.CIFAR_SPECS:
        return lambda data_dir, seed: cifar.load(name, data_dir)
    return lambda data_dir, seed: sources.load(name, data_dir)


register_stream("permuted-mnist", loader=_dataset("mnist"), kind="permuted", default_tasks=10, dataset="mnist")
register_stream("rotated-mnist", loader=_dataset("mnist"), kind="rotated", default_tasks=10, dataset="mnist")
register_stream("split-mnist", loader=_dataset("mnist"), kind="split", dataset="mnist")
register_stream("split-fashion-mnist", loader=_dataset("fashion-mnist"), kind="split", dataset="fashion-mnist")
register_stream("permuted-fashion-mnist", loader=_dataset("fashion-mnist"), kind="permuted", default_tasks=10,
                dataset="fashion-mnist")
register_stream("blobs", loader=lambda data_dir, seed: synthetic_blobs(seed), kind="permuted", default_tasks=3,
                standardize=False, description="synthetic, offline: 4 classes of 8 x 8 Gaussian inputs")
register_stream("split-cifar10", loader=_dataset("cifar10"), kind="split-even", default_tasks=5, dataset="cifar10",
                augment=True)
register_stream("split-cifar100", loader=_dataset("cifar100"), kind="split-even", default_tasks=10, dataset="cifar100",
                augment=True)
register_stream("cifar10-100", loader=lambda data_dir, seed: (cifar.load("cifar10", data_dir), cifar.load("cifar100", data_dir)),
                kind="cifar10-100", default_tasks=6, augment=True)
