"""Task streams: permuted / rotated MNIST, split (Fashion-)MNIST, split CIFAR and a synthetic stream.

A :class:`Stream` is a sequence of :class:`Task` (indexable, sliceable, iterable). Each task
has its own ``torch.Generator`` seeded from ``(seed, task id)``, so one seed always gives the
same stream whatever was drawn before (no global RNG).

Example:
    >>> from anpyc.config import StreamConfig
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=3), seed=0)
    >>> len(stream), stream[0].n_outputs
    (3, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from anpyc.config import BENCHMARKS, StreamConfig
from anpyc.data import cifar, sources
from anpyc.data.batches import SplitData
from anpyc.data.taskdata import Permute, Rotate, TaskData
from anpyc.data.transforms import Compose, Normalize, RandomCropFlip, channel_stats
from anpyc.errors import ConfigError
from anpyc.utils import seeded_generator


@dataclass
class Task:
    """One task: its splits, the classes it contains and how many outputs its head needs.

    The splits are in-memory :class:`TaskData` in the built-in streams; your own data
    (:func:`anpyc.data.user.stream_from_datasets`) may be lazy or a loader."""

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
    """An ordered sequence of tasks sharing one input shape."""

    name: str
    tasks: list[Task]
    input_shape: tuple[int, ...]
    n_classes: int  # size of a single shared head (all classes of the stream)
    labels: str  # "local" (per-task labels, multi-head) or "global"

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i):
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


def _then(first, second):
    """``second`` after ``first`` (either may be None)."""
    if first is None or second is None:
        return first if second is None else second
    return Compose([first, second])


def _transformed_stream(
    cfg: StreamConfig, seed: int, name: str, arrays: dict, n_tasks: int,
    make_transform: Callable[[int], object], info: Callable[[int], dict], labels: str = "local",
) -> Stream:
    """Every task sees all classes of the base data set through its own transform.

    ``labels='global'`` (class-incremental) makes each task's classes new ones: task ``t``'s
    labels are offset by ``t * n_classes`` (van de Ven et al.'s class-incremental permuted
    MNIST: 10 tasks give 100 classes)."""
    train_x = torch.from_numpy(np.asarray(arrays["train_x"]))
    train_y = torch.from_numpy(np.asarray(arrays["train_y"]).astype(np.int64))
    test_x = torch.from_numpy(np.asarray(arrays["test_x"]))
    test_y = torch.from_numpy(np.asarray(arrays["test_y"]).astype(np.int64))
    if train_x.dim() == 3:  # (N, H, W) -> (N, 1, H, W)
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    n_classes = int(train_y.max()) + 1
    tr_idx, va_idx = _split_train_val(len(train_y), cfg.val_fraction, seed)
    # blobs are standard Gaussian already; images are standardised after their rotation or
    # permutation (a rotation's zero fill then becomes the background's standardised value)
    norm, stats = _standardizer(cfg, train_x, tr_idx) if name != "blobs" else (None, None)
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
                name=f"{name}-{t}",
                classes=tuple(range(offset, offset + n_classes)),
                train=TaskData(train_x, ytr, t, _take(tr_idx, cfg.subsample, g), transform),
                val=TaskData(train_x, ytr, t, _take(va_idx, _val_budget(cfg), g), transform),
                test=TaskData(test_x, yte, t, _take(torch.arange(len(test_y)), cfg.test_subsample, g), transform),
                n_outputs=n_global,
                info={**info(t), "standardize": stats},
            )
        )
    return Stream(name, tasks, tuple(train_x.shape[1:]), n_global, labels=labels)


def _class_split_stream(
    cfg: StreamConfig, seed: int, name: str, arrays: dict, n_tasks: int, per_task: int, labels: str
) -> Stream:
    """Task t holds classes [t*per_task, (t+1)*per_task); labels local or global."""
    train_x = torch.from_numpy(np.asarray(arrays["train_x"]))
    train_y = torch.from_numpy(np.asarray(arrays["train_y"]).astype(np.int64))
    test_x = torch.from_numpy(np.asarray(arrays["test_x"]))
    test_y = torch.from_numpy(np.asarray(arrays["test_y"]).astype(np.int64))
    if train_x.dim() == 3:
        train_x, test_x = train_x.unsqueeze(1), test_x.unsqueeze(1)
    n_classes = int(train_y.max()) + 1
    max_tasks = n_classes // per_task
    if n_tasks > max_tasks:
        raise ConfigError(f"{name} has at most {max_tasks} tasks of {per_task} classes, asked for {n_tasks}")
    tr_idx, va_idx = _split_train_val(len(train_y), cfg.val_fraction, seed)
    norm, stats = _standardizer(cfg, train_x, tr_idx)  # the whole data set's training rows, as for CIFAR
    local_y_train = train_y % per_task
    local_y_test = test_y % per_task
    tasks = []
    for t in range(n_tasks):
        g = seeded_generator(seed, 3, t)
        classes = tuple(range(t * per_task, (t + 1) * per_task))
        lo, hi = classes[0], classes[-1]

        def pick(idx: Tensor, y: Tensor, lo: int = lo, hi: int = hi) -> Tensor:
            yy = y[idx]
            return idx[(yy >= lo) & (yy <= hi)]

        ytr = local_y_train if labels == "local" else train_y
        yte = local_y_test if labels == "local" else test_y
        tasks.append(
            Task(
                id=t,
                name=f"{name}-{t}",
                classes=classes,
                train=TaskData(train_x, ytr, t, _take(pick(tr_idx, train_y), cfg.subsample, g), norm),
                val=TaskData(train_x, ytr, t, _take(pick(va_idx, train_y), _val_budget(cfg), g), norm),
                test=TaskData(test_x, yte, t, _take(pick(torch.arange(len(test_y)), test_y), cfg.test_subsample, g), norm),
                n_outputs=per_task if labels == "local" else n_classes,
                info={"classes": list(classes), "standardize": stats},
            )
        )
    return Stream(name, tasks, tuple(train_x.shape[1:]), n_classes, labels=labels)


def synthetic_blobs(seed: int = 0, n_per_class: int = 500, n_classes: int = 4, side: int = 8) -> dict:
    """Synthetic data shaped like tiny 1 x side x side images (offline tests and demos).

    Inputs are standard Gaussian; the label is the arg-max of a fixed random two-layer
    "teacher" network, so the classes are not linearly separable and learning one task takes
    real capacity. Permuting pixels then makes tasks interfere in an MLP exactly as permuted
    MNIST does.
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    d = side * side
    w1 = torch.randn(d, 32, generator=g) / d**0.5
    w2 = torch.randn(32, n_classes, generator=g) / 32**0.5

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = torch.randn(n * n_classes, d, generator=g)
        y = (torch.tanh(2.0 * x @ w1) @ w2).argmax(1)
        return x.reshape(-1, 1, side, side).numpy(), y.numpy()

    tx, ty = sample(n_per_class)
    ex, ey = sample(max(50, n_per_class // 3))
    return {"train_x": tx, "train_y": ty, "test_x": ex, "test_y": ey}


# ----------------------------------------------------------------------------- CIFAR

CIFAR_BENCHMARKS = ("split-cifar10", "split-cifar100", "cifar10-100")


def _divisor_tasks(bench: str, n_classes: int, n_tasks: int) -> int:
    """Classes per task of a split stream whose tasks share the classes equally."""
    if n_classes % n_tasks:
        options = ", ".join(str(k) for k in range(1, n_classes + 1) if n_classes % k == 0)
        raise ConfigError(f"{bench}: {n_classes} classes do not split into {n_tasks} equal tasks; --tasks one of {options}")
    return n_classes // n_tasks


def _cifar_tasks(
    cfg: StreamConfig, seed: int, bench: str, arrays: dict, per_task: int, n_tasks: int,
    first_id: int, labels: str, class_offset: int, n_global: int,
) -> list[Task]:
    """Tasks ``first_id..`` holding consecutive groups of ``per_task`` classes of one CIFAR set.

    Inputs are normalised per channel with statistics of this data set's training rows (the
    validation rows held out) unless ``cfg.standardize`` is false; with ``cfg.augment`` the
    training split also gets random crops and flips, each task from its own seeded generator.
    """
    train_x = torch.from_numpy(arrays["train_x"])
    train_y = torch.from_numpy(np.asarray(arrays["train_y"], dtype=np.int64))
    test_x = torch.from_numpy(arrays["test_x"])
    test_y = torch.from_numpy(np.asarray(arrays["test_y"], dtype=np.int64))
    tr_idx, va_idx = _split_train_val(len(train_y), cfg.val_fraction, seed)
    norm, stats = _standardizer(cfg, train_x, tr_idx)
    if labels == "local":
        ytr, yte = train_y % per_task, test_y % per_task
    else:
        ytr, yte = train_y + class_offset, test_y + class_offset
    names = arrays.get("classes")
    tasks = []
    for k in range(n_tasks):
        t = first_id + k
        g = seeded_generator(seed, 6, t)
        lo, hi = k * per_task, (k + 1) * per_task

        def pick(idx: Tensor, y: Tensor, lo: int = lo, hi: int = hi) -> Tensor:
            yy = y[idx]
            return idx[(yy >= lo) & (yy < hi)]

        train_tf = _then(RandomCropFlip(4, generator=seeded_generator(seed, 7, t)), norm) if cfg.augment else norm
        classes = tuple(range(class_offset + lo, class_offset + hi))
        tasks.append(
            Task(
                id=t,
                name=f"{bench}-{t}",
                classes=classes,
                train=TaskData(train_x, ytr, t, _take(pick(tr_idx, train_y), cfg.subsample, g), train_tf),
                val=TaskData(train_x, ytr, t, _take(pick(va_idx, train_y), _val_budget(cfg), g), norm),
                test=TaskData(test_x, yte, t, _take(pick(torch.arange(len(test_y)), test_y), cfg.test_subsample, g), norm),
                n_outputs=per_task if labels == "local" else n_global,
                info={"classes": list(classes), "class_names": list(names[lo:hi]) if names else None, "standardize": stats},
            )
        )
    return tasks


def cifar_stream(cfg: StreamConfig, seed: int, n_tasks: int, labels: str = "local") -> Stream:
    """``split-cifar10`` (default 5 x 2 classes), ``split-cifar100`` (default 10 x 10;
    ``tasks=20`` gives 20 x 5: classes per task = classes / tasks) and ``cifar10-100``
    (task 0 is all of CIFAR-10, then CIFAR-100 in groups of 10 classes: 6 tasks by default as
    in SI, Zenke et al. 2017; 11 is the whole of CIFAR-100 as in HAT, Serra et al. 2018).

    With ``labels='global'``, CIFAR-100 classes of ``cifar10-100`` follow CIFAR-10's (10..).
    """
    bench = cfg.benchmark
    if bench == "cifar10-100":
        if n_tasks > 11:
            raise ConfigError(f"cifar10-100 has at most 11 tasks (CIFAR-10, then 10 x 10 CIFAR-100 classes), asked for {n_tasks}")
        n_global = 10 + 10 * (n_tasks - 1)
        tasks = _cifar_tasks(cfg, seed, bench, cifar.load("cifar10", cfg.data_dir), 10, 1, 0, labels, 0, n_global)
        if n_tasks > 1:
            tasks += _cifar_tasks(
                cfg, seed, bench, cifar.load("cifar100", cfg.data_dir), 10, n_tasks - 1, 1, labels, 10, n_global
            )
        return Stream(bench, tasks, (3, 32, 32), n_global, labels=labels)
    n_classes = 10 if bench == "split-cifar10" else 100
    per_task = _divisor_tasks(bench, n_classes, n_tasks)
    arrays = cifar.load("cifar10" if bench == "split-cifar10" else "cifar100", cfg.data_dir)
    tasks = _cifar_tasks(cfg, seed, bench, arrays, per_task, n_tasks, 0, labels, 0, n_classes)
    return Stream(bench, tasks, (3, 32, 32), n_classes, labels=labels)


DEFAULT_TASKS = {
    "permuted-mnist": 10,
    "permuted-fashion-mnist": 10,
    "rotated-mnist": 10,
    "split-mnist": 5,
    "split-fashion-mnist": 5,
    "blobs": 3,
    "split-cifar10": 5,
    "split-cifar100": 10,
    "cifar10-100": 6,
}


def make_stream(cfg: StreamConfig, seed: int = 0, labels: str = "local") -> Stream:
    """Build the stream named by ``cfg.benchmark``.

    ``labels='local'`` gives per-task labels for one head per task (task-aware);
    ``'global'`` gives the stream's class ids for one shared head (class-incremental).
    """
    if cfg.benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {cfg.benchmark!r}; known: {', '.join(BENCHMARKS)}")
    n_tasks = cfg.tasks or DEFAULT_TASKS[cfg.benchmark]
    bench = cfg.benchmark
    if bench in CIFAR_BENCHMARKS:
        return cifar_stream(cfg, seed, n_tasks, labels)
    if cfg.augment:
        raise ConfigError(f"stream.augment is only available for the CIFAR benchmarks ({', '.join(CIFAR_BENCHMARKS)}), not {bench}")

    def permutation(t: int, d: int) -> Permute | None:
        if t == 0 and cfg.first_task_unpermuted:
            return None
        return Permute(torch.randperm(d, generator=seeded_generator(seed, 4, t)))

    if bench in ("permuted-mnist", "permuted-fashion-mnist", "blobs"):
        arrays = synthetic_blobs(seed) if bench == "blobs" else sources.load(
            "mnist" if bench == "permuted-mnist" else "fashion-mnist", cfg.data_dir
        )
        d = int(np.prod(arrays["train_x"].shape[1:]))
        return _transformed_stream(
            cfg, seed, bench, arrays, n_tasks,
            make_transform=lambda t: permutation(t, d),
            info=lambda t: {"permuted": permutation(t, d) is not None}, labels=labels,
        )
    if bench == "rotated-mnist":
        arrays = sources.load("mnist", cfg.data_dir)
        # evenly spaced angles over half a turn; task 0 unrotated
        angles = [180.0 * t / n_tasks for t in range(n_tasks)]
        return _transformed_stream(
            cfg, seed, bench, arrays, n_tasks,
            make_transform=lambda t: Rotate(angles[t]),
            info=lambda t: {"degrees": angles[t]}, labels=labels,
        )
    dataset = "mnist" if bench == "split-mnist" else "fashion-mnist"
    per_task = cfg.classes_per_task
    n_tasks = cfg.tasks or max(1, 10 // per_task)  # every class once by default
    return _class_split_stream(cfg, seed, bench, sources.load(dataset, cfg.data_dir), n_tasks, per_task, labels)
