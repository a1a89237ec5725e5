"""The training loop: the one caller of the method hooks in the library.

:func:`train_stream` walks a stream task by task: it gives the model its head, calls the
method's hooks with a :class:`~anpyc.scenario.HookContext`, trains with :func:`fit`, lets
the method prune or consolidate, then evaluates every task seen so far. Everything else a run
does (checkpoints, logs, progress bars, TensorBoard, distributed synchronisation) is a
callback: an object with any of the methods of :class:`Callback`, called in list order.
What the loop has produced so far is a :class:`LoopState`, which a checkpoint saves and a
resumed run starts from.

The scenario (:class:`~anpyc.scenario.Scenario`) decides what evaluation may see: where it
hides the task id (``domain``, ``class``) :meth:`~anpyc.methods.base.Method.eval_context` and
:meth:`~anpyc.methods.base.Method.predict` get ``task_id=None`` and the test rows of every
task seen so far are shuffled together into batches that cross tasks (:func:`mixed_accuracy`,
fixed per run seed and task): the method never learns which task a batch or a row is from,
while the loop keeps each row's task to itself to fill the accuracy matrix.

Example:
    >>> from anpyc.config import StreamConfig, ModelConfig, TrainConfig
    >>> from anpyc.data import make_stream
    >>> from anpyc.models import build_model
    >>> from anpyc.methods import create
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
    >>> model, method = build_model(ModelConfig(hidden=(16,)), stream.input_shape), create("finetune")
    >>> state = train_stream(model, method, stream, LoopConfig(TrainConfig()))
    >>> state.progress["R"].shape
    (2, 2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from anpyc.config import TrainConfig
from anpyc.data.batches import epoch_batches
from anpyc.data.taskdata import ConcatData
from anpyc.errors import TrainingError
from anpyc.models.heads import ContinualModel, grouped_logits
from anpyc.parallel.collectives import (
    rank_batches,
    rank_shuffled_batches,
    shard_batches,
    sum_scalars,
    sync_gradients_,
)
from anpyc.scenario import TASK, HookContext, Scenario, get_scenario
from anpyc.utils import eval_mode, seeded_generator

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anpyc.data.batches import Batch, SplitData
    from anpyc.data.streams import Stream, Task
    from anpyc.methods.base import Method
    from anpyc.models.generative import GenerativeModel

Predict = Callable[[Tensor], Tensor]


def trainable(model: ContinualModel | GenerativeModel, method: Method) -> list[torch.nn.Parameter]:
    """What the optimizer trains: the model's parameters, then the method's own (HAT's task
    embeddings, say; most methods have none).

    Example:
        >>> from anpyc.loop.own import ModelConfig, build_model, create
        >>> model = build_model(ModelConfig(hidden=(8,)), input_shape=(1, 8, 8))
        >>> optimizer = torch.optim.SGD(trainable(model, create("ewc")), lr=0.1)
        >>> len(optimizer.param_groups[0]["params"])  # the body's weight and bias
        2
    """
    return [*model.parameters(), *method.parameters()]


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with optional momentum) or Adam, with the run's learning rate and weight decay."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def task_loss(model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Mean cross-entropy of each example under its own task's head.

    Example:
        >>> from anpyc.loop.own import ModelConfig, build_model
        >>> model = build_model(ModelConfig(hidden=(8,)), input_shape=(1, 8, 8))
        >>> model.add_head(3), model.add_head(3)
        (0, 1)
        >>> y, t = torch.tensor([0, 2, 1, 0]), torch.tensor([0, 0, 1, 1])  # rows 2-3: task 1's
        >>> task_loss(model, torch.zeros(4, 1, 8, 8), y, t).shape  # one scalar, over both heads
        torch.Size([])
    """
    parts = grouped_logits(model, x, t)
    if len(parts) == 1:
        return F.cross_entropy(parts[0][1], y)
    total = sum(F.cross_entropy(logits, y[rows], reduction="sum") for rows, logits, _ in parts)
    return total / len(y)


LossFn = Callable[[Any, Tensor, Tensor, Tensor], Tensor]


def _step(model: ContinualModel | GenerativeModel, method: Method, optimizer: torch.optim.Optimizer,
          loss_fn: LossFn, batch: Batch, cfg: TrainConfig, params: list[torch.nn.Parameter],
          where: str) -> tuple[float, int]:
    """One optimizer step of the protected network with the method's hooks around it;
    returns the global batch's (loss sum, example count)."""
    x, y, t = batch
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    if len(y):  # a rank may get no row of a short last batch
        loss = loss_fn(model, x, y, t)
        extra = method.penalty(model, x, y, t)
        if extra is not None:
            loss = loss + extra
        loss_sum = float(loss.detach()) * len(y)
        if math.isfinite(loss_sum):
            loss.backward()
    # gradients of the global batch mean on every rank; checked after the reduction so that
    # every rank raises together instead of one waiting for the others
    loss_sum, n = sync_gradients_(params, loss_sum, len(y))
    if not math.isfinite(loss_sum):
        raise TrainingError(
            f"non-finite loss ({loss_sum / max(n, 1)}) in {where}: lower the learning rate or the "
            "method's strength, or set train.grad_clip"
        )
    method.before_step(model)
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optimizer.step()
    method.after_step(model, optimizer)
    return loss_sum, n


def fit(
    model: ContinualModel | GenerativeModel,
    method: Method,
    data: SplitData,
    cfg: TrainConfig,
    epochs: float,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    task_id: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    loss_fn: LossFn = task_loss,
    aux_step: Callable[[Tensor, Tensor], float] | None = None,
    params: Sequence[torch.nn.Parameter] | None = None,
    step_offset: int = 0,
    lr_decay: float | None = None,
) -> dict:
    """Train ``model`` on ``data`` for ``epochs`` with the method's hooks around each step.

    ``epochs`` may be fractional (the last epoch then takes that share of the batches). A
    fresh optimizer over the model's and the method's parameters is built unless one is
    passed (``reset_optimizer: false`` keeps one across tasks). ``loss_fn(model, x, y, t)`` is
    the task loss (cross-entropy under each example's head by default; generative models pass
    their own); ``aux_step(x, y)``, if given, first trains an auxiliary network on the batch (a
    GAN's discriminator, no hooks) and returns its loss; ``params`` are the ones trained,
    synchronised and clipped. A non-finite loss raises :class:`TrainingError`. Under
    torch.distributed each rank trains on its share of every global batch and steps with the
    global batch's gradient.

    Resuming: ``start_epoch=k`` skips the first ``k`` epochs (their steps and examples still
    count); ``on_epoch_end(epochs_done, stats)`` is called after each epoch. The learning rate
    follows ``cfg.lr_decay`` (``lr_decay``, if given, instead: a retraining's own decay), counted
    from ``step_offset`` steps of the task already taken. Returns
    ``{"loss": mean loss of the last epoch, "aux_loss", "steps", "examples"}``.
    """
    params = list(params) if params is not None else trainable(model, method)
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    decay = cfg.lr_decay if lr_decay is None else lr_decay
    schedule = None if decay == 1.0 else lr_schedule(cfg.lr, decay, cfg.lr_decay_epochs * per_epoch, step_offset)
    run = _Epochs(model, method, optimizer or make_optimizer(params, cfg), loss_fn, cfg, params, aux_step, on_step,
                  # counted from 1, as run.log's "task k/T" and the resume message count them
                  where=f"task {task_id + 1 if task_id is not None else '?'}", schedule=schedule)
    model.train()
    # every epoch has the same batches, so skipped epochs still count in steps and examples
    run.steps, examples = start_epoch * per_epoch, start_epoch * len(data)
    last = {"loss": math.nan, "aux_loss": math.nan}
    limits = epoch_batches(per_epoch, epochs)  # a fractional last epoch takes its share of the batches
    for epoch in range(start_epoch, len(limits)):
        last, count = run.epoch(data, generator, epoch, limits[epoch])
        examples += count
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, {"loss": last["loss"], "steps": run.steps})
    return {**last, "steps": run.steps, "examples": examples}


def lr_schedule(lr: float, decay: float, period: float, offset: int = 0) -> Callable[[int], float]:
    """The staircase ``lr * decay ** floor((offset + step) / period)`` (``period`` in steps).

    Example:
        >>> [round(lr_schedule(1.0, 0.5, 2)(s), 2) for s in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    return lambda step: lr * decay ** math.floor((offset + step) / max(period, 1e-9) + 1e-9)


@dataclass
class _Epochs:
    """The epochs of one :func:`fit` call: what each step needs, and the steps counted so far."""

    model: Any
    method: Any
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn
    cfg: TrainConfig
    params: list
    aux_step: Callable[[Tensor, Tensor], float] | None
    on_step: Callable[[int, float], None] | None
    where: str
    schedule: Callable[[int], float] | None = None  # the learning rate of each step (None: as is)
    steps: int = 0

    def epoch(self, data: SplitData, generator: torch.Generator, epoch: int,
              limit: int) -> tuple[dict, int]:
        """The first ``limit`` batches of this rank's share of one shuffled pass; returns the
        epoch's mean losses and its example count (over every rank)."""
        device = torch.device(self.cfg.device)
        total = total_aux = 0.0
        count = 0
        for b, (x, y, t) in enumerate(shard_batches(data, self.cfg.batch_size, generator)):  # this rank's share
            if b >= limit:
                break
            x, y, t = x.to(device), y.to(device), t.to(device)
            if self.aux_step is not None:
                total_aux += self.aux_step(x, y) * len(y)
            if self.schedule is not None:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.schedule(self.steps)
            loss_sum, n = _step(self.model, self.method, self.optimizer, self.loss_fn, (x, y, t), self.cfg, self.params,
                                f"{self.where}, epoch {epoch}")
            total += loss_sum
            count += n
            self.steps += 1
            if self.on_step is not None:
                self.on_step(self.steps, loss_sum / max(n, 1))
        aux = total_aux / max(count, 1) if self.aux_step is not None else math.nan
        return {"loss": total / max(count, 1), "aux_loss": aux}, count


@torch.no_grad()
def accuracy(predict: Predict, data: SplitData, cfg: TrainConfig) -> float:
    """Share of ``data`` that ``predict`` (inputs -> logits) gets right. Batches are shared
    out over ranks and counted together (call it on every rank); the task ids of the batches
    never reach ``predict``."""
    if len(data) == 0:
        return math.nan
    device = torch.device(cfg.device)
    correct = 0
    for x, y, _task_ids in rank_batches(data, cfg.eval_batch_size):
        correct += int((predict(x.to(device)).argmax(1) == y.to(device)).sum())
    (correct,) = sum_scalars(correct)
    return correct / len(data)


@torch.no_grad()
def mixed_accuracy(predict: Callable[[Tensor, Tensor], Tensor], splits: Sequence, cfg: TrainConfig,
                   generator: torch.Generator) -> list[float]:
    """Accuracy on each of ``splits`` (one per task) from one shuffled stream of all their
    rows, in batches of ``cfg.eval_batch_size`` that cross tasks. ``predict(x, part)`` gets the
    inputs and, for the caller's own records only, the split each row comes from (the method
    it calls must never see it). Batches are shared out over ranks and counted together.

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> a, b = TaskData(torch.zeros(4, 2), torch.zeros(4).long(), 0), TaskData(torch.ones(2, 2), torch.ones(2).long(), 1)
        >>> mixed_accuracy(lambda x, part: torch.stack([1 - x[:, 0], x[:, 0]], 1), [a, b], TrainConfig(eval_batch_size=4),
        ...                torch.Generator().manual_seed(0))
        [1.0, 1.0]
    """
    data, n, device = ConcatData(list(splits)), len(splits), torch.device(cfg.device)
    position = {int(getattr(s, "task_id", j)): j for j, s in enumerate(splits)}  # data without random access
    correct, count = np.zeros(n), np.zeros(n)
    for (x, y, t), rows in rank_shuffled_batches(data, cfg.eval_batch_size, generator):
        part = (torch.searchsorted(data.offsets, rows, right=True) - 1 if rows is not None
                else torch.tensor([position[int(v)] for v in t], dtype=torch.long))
        hit = (predict(x.to(device), part).argmax(1).cpu() == y).numpy()
        correct += np.bincount(part.numpy()[hit], minlength=n)
        count += np.bincount(part.numpy(), minlength=n)
    sums = sum_scalars(*correct, *count)
    return [c / k if k else math.nan for c, k in zip(sums[:n], sums[n:], strict=True)]


def evaluate(model: ContinualModel, method: Method, data: SplitData, cfg: TrainConfig,
             task_id: int | None) -> float:
    """Accuracy of ``model`` on ``data`` in eval mode, inside the method's evaluation context
    for ``task_id`` (``None``: the task is not revealed)."""
    with eval_mode(model), method.eval_context(model, task_id):
        return accuracy(lambda x: method.predict(model, x, task_id), data, cfg)


def evaluate_task(model: ContinualModel, predict: Predict, task: Task, after_task: int,
                  cfg: TrainConfig) -> tuple[float, float]:
    """The default evaluation of one task: accuracy on its test and validation splits."""
    return accuracy(predict, task.test, cfg), accuracy(predict, task.val, cfg)


def evaluate_mixed(model: ContinualModel, predict: Callable[[Tensor, Tensor], Tensor],
                   tasks: Sequence[Task], after_task: int, cfg: TrainConfig,
                   generator: torch.Generator) -> list[tuple[float, float]]:
    """The evaluation of every seen task where the scenario hides the task id: their test rows
    shuffled together (:func:`mixed_accuracy`), then their validation rows; ``(test, val)``
    accuracy per task."""
    tests = mixed_accuracy(predict, [task.test for task in tasks], cfg, generator)
    vals = mixed_accuracy(predict, [task.val for task in tasks], cfg, generator)
    return list(zip(tests, vals, strict=True))


def add_task_head(model: ContinualModel, task: Task, seen: Sequence[Task],
                  ctx: HookContext) -> None:
    """The model side of a new task, as the scenario says (:meth:`Scenario.begin_task`): its
    head, or the shared head grown to every class seen so far."""
    ctx.scenario.begin_task(model, task, seen)


class Training:
    """How the loop trains and scores one kind of model; this one is classification.

    ``begin_task`` prepares the model for a task (a head, as the scenario says),
    ``task_optimizer`` gives the optimizer the method's hooks see (the run's, fresh per task
    unless ``reset_optimizer: false``), ``aux_optimizer`` one for an auxiliary network trained
    beside it (none here; a GAN's discriminator), ``fit`` trains on a task's data (:func:`fit`)
    and ``evaluate(model, predict, task, after_task, cfg) -> (test, val)`` scores one task
    inside the method's evaluation context. Both optimizers live in the :class:`LoopState`, so
    a checkpoint holds them. Where the scenario hides the task id and ``mixes_tasks`` is true,
    the seen tasks are scored together by ``evaluate_mixed`` (their rows shuffled into batches
    that cross tasks; the method never learns which task a batch or a row is from). A problem
    kind brings its own subclass (:mod:`anpyc.problems`).
    """

    mixes_tasks: bool = True

    def begin_task(self, model: ContinualModel, task: Task, seen: Sequence[Task],
                   ctx: HookContext) -> None:
        add_task_head(model, task, seen, ctx)

    def task_optimizer(self, model: ContinualModel, method: Method,
                       kept: torch.optim.Optimizer | None,
                       cfg: TrainConfig) -> torch.optim.Optimizer:
        return _task_optimizer(trainable(model, method), kept, cfg)

    def aux_optimizer(self, model: ContinualModel,
                      cfg: TrainConfig) -> torch.optim.Optimizer | None:
        return None

    def fit(self, model: ContinualModel, method: Method, data: SplitData,
            cfg: TrainConfig, epochs: float, generator: torch.Generator,
            aux_optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> dict:
        return fit(model, method, data, cfg, epochs, generator, **kwargs)

    def evaluate(self, model: ContinualModel, predict: Predict, task: Task, after_task: int,
                 cfg: TrainConfig) -> tuple[float, float]:
        return evaluate_task(model, predict, task, after_task, cfg)

    def evaluate_mixed(self, model: ContinualModel, predict: Callable[[Tensor, Tensor], Tensor],
                       tasks: Sequence[Task], after_task: int, cfg: TrainConfig,
                       generator: torch.Generator) -> list[tuple[float, float]]:
        return evaluate_mixed(model, predict, tasks, after_task, cfg, generator)


# ----------------------------------------------------------------------------- the loop
@dataclass(frozen=True)
class LoopConfig:
    """What the loop needs to know: training settings, run seed, scenario (the object; a name
    is looked up), and whether to measure each task's accuracy before it is trained (forward
    transfer)."""

    train: TrainConfig
    seed: int = 0
    scenario: Scenario = TASK
    forward_transfer: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario", get_scenario(self.scenario))

    def context(self, task: int, n_tasks: int | None) -> HookContext:
        return HookContext(task=task, n_tasks=n_tasks, seed=self.seed, scenario=self.scenario,
                           epochs=self.train.epochs, batch_size=self.train.batch_size)


@dataclass
class LoopState:
    """Where a stream stands: the next task (``task``) and the epochs of its main training
    phase already done (``epoch``), the task's optimizer (kept across tasks when asked) and an
    auxiliary network's (``aux_optimizer``, a GAN's discriminator), the shuffling generator,
    the results so far (``progress``: ``R`` and ``V`` are T x T matrices, the rest per-task
    lists) and elapsed seconds (``clock``). A checkpoint saves it; a resumed run starts from it."""

    n_tasks: int
    generator: torch.Generator
    task: int = 0
    epoch: int = 0
    optimizer: torch.optim.Optimizer | None = None
    aux_optimizer: torch.optim.Optimizer | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    clock: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fresh(cls, n_tasks: int, seed: int) -> LoopState:
        nan = np.full((n_tasks, n_tasks), np.nan)
        progress = {"R": nan.copy(), "V": nan.copy(), "acc_before": [], "task_time": [], "eval_time": [], "passes": []}
        return cls(n_tasks, torch.Generator().manual_seed(seed), progress=progress)


class Callback:
    """The events of the loop; subclass and override what you need (or duck-type them)."""

    def on_task_start(self, loop: Loop, ctx: HookContext) -> None:
        """The model has the task's head and ``before_task`` ran; nothing is trained yet."""

    def on_step(self, loop: Loop, step: int, loss: float) -> None:
        """After each optimizer step of the task's main training."""

    def on_epoch_end(self, loop: Loop, epochs_done: int) -> None:
        """After each epoch of the task's main training (``loop.state.epoch`` is updated)."""

    def on_task_trained(self, loop: Loop, ctx: HookContext) -> None:
        """``after_task`` ran (pruning, importance); nothing is evaluated yet."""

    def on_task_end(self, loop: Loop, record: dict) -> None:
        """Every seen task is evaluated; ``record`` is the task's log line (may be extended)."""

    def on_stream_end(self, loop: Loop) -> None:
        """The last task is done."""


@dataclass
class Loop:
    """The objects of one pass over a stream, handed to every callback."""

    model: Any
    method: Any
    stream: Any
    cfg: LoopConfig
    state: LoopState
    callbacks: Sequence[Any] = ()
    training: Training = field(default_factory=Training)
    start_time: float = 0.0
    task_start: float = 0.0

    def emit(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    def clock(self) -> dict[str, float]:
        """Elapsed seconds of the run and of the current task (for a checkpoint)."""
        now = time.perf_counter()
        return {"elapsed": now - self.start_time, "task_elapsed": now - self.task_start,
                "task_eval": self.state.clock.get("task_eval", 0.0)}


def train_stream(
    model: ContinualModel | GenerativeModel,
    method: Method,
    stream: Stream,
    cfg: LoopConfig,
    *,
    training: Training | None = None,
    callbacks: Sequence[Any] = (),
    state: LoopState | None = None,
) -> LoopState:
    """Learn ``stream`` task after task with ``method``; evaluate every seen task after each.

    ``training`` says how a task is begun, trained and scored (:class:`Training`, classification
    by default; a problem kind brings its own). ``state`` resumes a stream (see
    :class:`LoopState`). Returns the final state.
    """
    state = state or LoopState.fresh(len(stream), cfg.seed)
    loop = Loop(model, method, stream, cfg, state, callbacks, training or Training(),
                start_time=time.perf_counter() - state.clock.get("elapsed", 0.0))
    for t in range(state.task, len(stream)):
        stats = _train_task(loop, t)
        _finish_task(loop, t, stats)
    loop.emit("on_stream_end")
    return state


def _train_task(loop: Loop, t: int) -> dict:
    model, method, state, train_cfg, training = loop.model, loop.method, loop.state, loop.cfg.train, loop.training
    task, seen, ctx = loop.stream[t], loop.stream[: t + 1], loop.cfg.context(t, len(loop.stream))
    resumed = state.epoch > 0  # a checkpoint inside this task's training: its start is done
    method.attach(model)  # forward hooks are not state: (re)install them, resumed or not
    loop.task_start = time.perf_counter() - (state.clock.get("task_elapsed", 0.0) if resumed else 0.0)
    if not resumed:
        state.clock["task_eval"] = 0.0
        training.begin_task(model, task, seen, ctx)
        method.before_task(model, task, ctx)
        state.optimizer = training.task_optimizer(model, method, state.optimizer, train_cfg)
        state.aux_optimizer = training.aux_optimizer(model, train_cfg)
        loop.emit("on_task_start", ctx)
        if loop.cfg.forward_transfer:
            state.progress["acc_before"].append(_timed_eval(loop, t, task)[0])
    data = method.training_data(task, seen, ctx)

    def epoch_end(done: int, _stats: dict) -> None:
        state.epoch = done
        loop.emit("on_epoch_end", done)

    on_step = (lambda step, loss: loop.emit("on_step", step, loss)) if loop.callbacks else None
    trains = method.trains_network
    if trains:
        stats = training.fit(model, method, data, train_cfg, train_cfg.epochs, state.generator, optimizer=state.optimizer,
                             aux_optimizer=state.aux_optimizer, task_id=t, on_step=on_step, start_epoch=state.epoch,
                             on_epoch_end=epoch_end)
    else:  # a classifier of the inputs alone: its after_task reads the data (counted as extra examples)
        stats = {"loss": math.nan, "aux_loss": math.nan, "steps": 0, "examples": 0}
    retrain = Retrainer(loop, t, data, stats["examples"], stats["steps"])
    method.after_task(model, task, ctx, retrain if trains else None)
    loop.emit("on_task_trained", ctx)
    # retraining, replayed or otherwise extra examples the method trained on count as passes too
    stats["passes"] = (retrain.examples + method.extra_examples(t)) / max(len(task.train), 1)
    return stats


class Retrainer:
    """What ``after_task`` gets as ``retrain``: ``retrain(epochs)`` trains the current task
    again (a fresh optimizer; the passes count in the task's budget) and ``retrain.validate()``
    is the task's validation accuracy as the model stands, measured with the task's id (the
    task in training is known at training time, whatever the scenario hides at test time)."""

    def __init__(self, loop: Loop, t: int, data: SplitData, examples: int,
                 steps: int = 0) -> None:
        self.loop, self.t, self.data, self.examples, self.steps = loop, t, data, examples, steps
        # a classifier's validation accuracy; none for models scored otherwise (generators)
        self.validate: Callable[[], float] | None = self._validate if loop.cfg.forward_transfer else None

    def __call__(self, epochs: float, lr_decay: float | None = None) -> dict:
        """Train ``epochs`` more; ``lr_decay``: the retraining's own learning-rate decay (the
        staircase goes on from the task's steps so far; ``None``: the run's ``train.lr_decay``)."""
        loop = self.loop
        decays = lr_decay is not None or loop.cfg.train.lr_decay != 1.0
        schedule = {"step_offset": self.steps, "lr_decay": lr_decay} if decays else {}
        more = loop.training.fit(loop.model, loop.method, self.data, loop.cfg.train, epochs, loop.state.generator,
                                 task_id=self.t, **schedule)
        self.examples += more["examples"]
        self.steps += more["steps"]
        return more

    def _validate(self) -> float:
        model, method, t = self.loop.model, self.loop.method, self.t
        with eval_mode(model), method.eval_context(model, t):
            return accuracy(lambda x: method.predict(model, x, t), self.loop.stream[t].val, self.loop.cfg.train)


def _finish_task(loop: Loop, t: int, stats: dict) -> None:
    state, progress = loop.state, loop.state.progress
    if loop.cfg.scenario.task_id_at_test or not loop.training.mixes_tasks:
        scores = [_timed_eval(loop, j, loop.stream[j], after_task=t) for j in range(t + 1)]
    else:  # no task id: every seen task's rows in one shuffled stream
        scores = _timed_mixed_eval(loop, t)
    for j, (test, val) in enumerate(scores):
        progress["R"][t, j], progress["V"][t, j] = test, val
    progress["passes"].append(stats["passes"])
    progress["eval_time"].append(state.clock["task_eval"])
    progress["task_time"].append(time.perf_counter() - loop.task_start)
    state.task, state.epoch = t + 1, 0
    R, V = progress["R"], progress["V"]
    record = {
        "task": t, "loss": stats["loss"], "steps": stats["steps"], "passes": stats["passes"],
        "acc": R[t, : t + 1].tolist(), "val_acc": V[t, : t + 1].tolist(), "avg_acc": float(np.mean(R[t, : t + 1])),
        "time_s": progress["task_time"][-1], "eval_time_s": progress["eval_time"][-1],
    }
    if not math.isnan(stats.get("aux_loss", math.nan)):
        record["aux_loss"] = stats["aux_loss"]
    record.update({k: v for k, v in loop.method.summary().items() if k == "free_fraction_total"})
    loop.emit("on_task_end", record)


def _timed_eval(loop: Loop, j: int, task: Task,
                after_task: int | None = None) -> tuple[float, float]:
    """Evaluate task ``j`` inside the method's context, revealing ``j`` only if the scenario
    allows; the seconds count as the current task's evaluation time."""
    model, method = loop.model, loop.method
    visible = loop.cfg.scenario.test_task_id(j)
    inferred = [0, 0]  # rows attributed to task j, rows attributed at all

    def predict(x: Tensor) -> Tensor:
        logits = method.predict(model, x, visible)
        views = method.inferred_tasks() if visible is None else None
        if views is not None:
            inferred[0] += int((views == j).sum())
            inferred[1] += len(views)
        return logits

    start = time.perf_counter()
    with eval_mode(model), method.eval_context(model, visible):
        scores = loop.training.evaluate(model, predict, task, j if after_task is None else after_task, loop.cfg.train)
    loop.state.clock["task_eval"] = loop.state.clock.get("task_eval", 0.0) + time.perf_counter() - start
    if after_task is not None and any(sum_scalars(*inferred)):
        right, total = sum_scalars(*inferred)
        T = loop.state.n_tasks
        matrix = loop.state.progress.setdefault("task_inference", np.full((T, T), np.nan))
        matrix[after_task, j] = right / total
    return scores


def _timed_mixed_eval(loop: Loop, t: int) -> list[tuple[float, float]]:
    """Evaluate tasks ``0..t`` together without their ids (:meth:`Training.evaluate_mixed`):
    the loop keeps each row's task to itself, to score it and the method's task inference."""
    model, method = loop.model, loop.method
    inferred = np.zeros((2, t + 1))  # per task: rows attributed to it, rows attributed at all

    def predict(x: Tensor, part: Tensor) -> Tensor:
        logits = method.predict(model, x, None)
        views = method.inferred_tasks()
        if views is not None:
            inferred[0] += np.bincount(part.numpy()[(views.cpu() == part).numpy()], minlength=t + 1)
            inferred[1] += np.bincount(part.numpy(), minlength=t + 1)
        return logits

    start = time.perf_counter()
    with eval_mode(model), method.eval_context(model, None):
        scores = loop.training.evaluate_mixed(model, predict, loop.stream[: t + 1], t, loop.cfg.train,
                                              seeded_generator(loop.cfg.seed, 0x7E57, t))
    loop.state.clock["task_eval"] = loop.state.clock.get("task_eval", 0.0) + time.perf_counter() - start
    sums = np.asarray(sum_scalars(*inferred.ravel())).reshape(2, t + 1)
    if sums[1].any():
        T = loop.state.n_tasks
        matrix = loop.state.progress.setdefault("task_inference", np.full((T, T), np.nan))
        matrix[t, : t + 1] = np.where(sums[1] > 0, sums[0] / np.maximum(sums[1], 1), np.nan)
    return scores


def _task_optimizer(params: list, optimizer: torch.optim.Optimizer | None, cfg: TrainConfig) -> torch.optim.Optimizer:
    """A fresh optimizer per task, or (``reset_optimizer: false``) the kept one with any new
    parameters (a new head) added as a group."""
    if cfg.reset_optimizer or optimizer is None:
        return make_optimizer(params, cfg)
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    new = [p for p in params if p.requires_grad and id(p) not in known]
    if new:
        optimizer.add_param_group({"params": new})
    return optimizer


class RandomInitBaseline:
    """Forward transfer's reference (Lopez-Paz & Ranzato 2017): the accuracy ``b_i`` of the
    randomly initialised model on each task, its body as at the start of the run. With a head
    per task, task ``i``'s head is the model's own, as drawn for it just before training it:
    the "before" accuracy goes through that same untrained head, so FWT compares the bodies
    alone (two independently drawn random heads would differ by chance, by points). A shared
    head is the one at the start of the run (each head drawn from its own seeded generator,
    so the run's random streams are untouched). A callback: pass it to :func:`train_stream`;
    its figures are in ``state.progress``."""

    def __init__(self, model: ContinualModel, seed: int) -> None:
        import copy

        self.model = copy.deepcopy(model)
        self.seed = seed

    def on_task_start(self, loop: Loop, ctx: HookContext) -> None:
        task = loop.stream[ctx.task]
        for k in range(len(self.model.heads) if self.model.head_mode == "multi" else 0, ctx.task + 1):
            # a head per task up to this one (a resumed run starts with none), each as at its start
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seeded_generator(self.seed, 0xB1, k).initial_seed()))
                add_task_head(self.model, loop.stream[k], loop.stream[: k + 1], loop.cfg.context(k, ctx.n_tasks))
        if self.model.head_mode == "multi":  # the head the "before" accuracy goes through, untrained yet
            self.model.heads[ctx.task].load_state_dict(loop.model.heads[ctx.task].state_dict())
        visible = ctx.task if ctx.task_id_at_test else None
        start = time.perf_counter()
        with eval_mode(self.model):
            acc = accuracy(lambda x: self.model(x, 0 if visible is None else visible), task.test, loop.cfg.train)
        loop.state.progress.setdefault("acc_random", []).append(acc)
        loop.state.clock["task_eval"] = loop.state.clock.get("task_eval", 0.0) + time.perf_counter() - start
