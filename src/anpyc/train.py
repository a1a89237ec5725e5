"""The training loop: the one caller of the method hooks in the library.

Example:
    >>> import torch
    >>> from anpyc.config import StreamConfig, ModelConfig, TrainConfig
    >>> from anpyc.data import make_stream
    >>> from anpyc.models import build_model
    >>> from anpyc.methods import create
    >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=2), seed=0)
    >>> model, method = build_model(ModelConfig(hidden=(16,)), stream.input_shape), create("finetune")
    >>> model.add_head(stream[0].n_outputs)
    0
    >>> stats = fit(model, method, stream[0].train, TrainConfig(), epochs=1, generator=torch.Generator())
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from anpyc.config import TrainConfig
from anpyc.data.taskdata import ConcatData, TaskData
from anpyc.distributed import rank_batches, shard_batches, sum_scalars, sync_gradients_
from anpyc.errors import TrainingError
from anpyc.models.heads import ContinualModel, grouped_logits
from anpyc.utils import eval_mode


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with optional momentum) or Adam, with the run's learning rate and weight decay."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def task_loss(model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Mean cross-entropy of each example under its own task's head."""
    parts = grouped_logits(model, x, t)
    if len(parts) == 1:
        return F.cross_entropy(parts[0][1], y)
    total = sum(F.cross_entropy(logits, y[rows], reduction="sum") for rows, logits, _ in parts)
    return total / len(y)


def fit(
    model: ContinualModel,
    method,
    data: TaskData | ConcatData,
    cfg: TrainConfig,
    epochs: int,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    task_id: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    start_epoch: int = 0,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train ``model`` on ``data`` for ``epochs`` with the method's hooks around each step.

    A fresh optimizer is built unless one is passed (``reset_optimizer: false`` keeps one
    across tasks). A non-finite loss raises :class:`TrainingError` naming task and epoch.
    Under torch.distributed each rank trains on its share of every global batch of
    ``cfg.batch_size`` and steps with the global batch's gradient (see :mod:`anpyc.distributed`).
    Returns ``{"loss": mean loss of the last epoch, "steps": n}``.

    Resuming (see :mod:`anpyc.checkpoint`): ``start_epoch=k`` skips the first ``k`` epochs
    (pass the optimizer and generator state as they were after epoch ``k``; ``steps`` still
    counts them); ``on_epoch_end(epochs_done, stats)`` is called after each epoch.
    """
    device = torch.device(cfg.device)
    optimizer = optimizer or make_optimizer(model.parameters(), cfg)
    model.train()
    # every epoch has the same number of batches, so skipped epochs still count in ``steps``
    steps, last_loss = start_epoch * math.ceil(len(data) / cfg.batch_size), math.nan
    for epoch in range(start_epoch, epochs):
        total, count = 0.0, 0
        # this rank's share of each global batch (the whole batch in one process)
        for x, y, t in shard_batches(data, cfg.batch_size, generator):
            x, y, t = x.to(device), y.to(device), t.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            if len(y):  # a rank may get no row of a short last batch
                loss = task_loss(model, x, y, t)
                extra = method.penalty(model, x, t)
                if extra is not None:
                    loss = loss + extra
                loss_sum = float(loss.detach()) * len(y)
                if math.isfinite(loss_sum):
                    loss.backward()
            # gradients of the global batch mean on every rank; checked after the reduction
            # so that every rank raises together instead of one waiting for the others
            loss_sum, n = sync_gradients_(model.parameters(), loss_sum, len(y))
            if not math.isfinite(loss_sum):
                raise TrainingError(
                    f"non-finite loss ({loss_sum / max(n, 1)}) in task {task_id if task_id is not None else '?'}, "
                    f"epoch {epoch}: lower the learning rate or the method's strength, or set train.grad_clip"
                )
            method.before_step(model)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            method.after_step(model, optimizer)
            total += loss_sum
            count += n
            steps += 1
            if on_step is not None:
                on_step(steps, loss_sum / max(n, 1))
        last_loss = total / max(count, 1)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, {"loss": last_loss, "steps": steps})
    return {"loss": last_loss, "steps": steps}


@torch.no_grad()
def evaluate(model: ContinualModel, method, data: TaskData | ConcatData, cfg: TrainConfig, task_id: int) -> float:
    """Accuracy (0..1) of task ``task_id``'s head on ``data``, in eval mode, inside the
    method's evaluation context (e.g. that task's weight mask). Under torch.distributed the
    batches are shared out and the counts summed: call it on every rank."""
    if len(data) == 0:
        return math.nan
    device = torch.device(cfg.device)
    correct = 0
    with eval_mode(model), method.eval_context(model, task_id):
        for x, y, _ in rank_batches(data, cfg.eval_batch_size):  # every batch in one process
            logits = model(x.to(device), task_id)
            correct += int((logits.argmax(1) == y.to(device)).sum())
    (correct,) = sum_scalars(correct)
    return correct / len(data)
