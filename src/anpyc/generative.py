"""Continual generation: the training loop and runner for ``--model vae|gan``.

Each task of a split stream (``split-mnist``, ``split-fashion-mnist``; by class with
``classes_per_task: 1`` or by pair) brings new classes to one class-conditional generator.
The continual-learning method is the same object as for classifiers and is called through
the same hooks: ``before_task``, ``training_data`` (joint: every seen task), ``penalty``,
``before_step``/``after_step`` around the optimizer step of the protected network,
``after_task`` with a ``retrain`` callback, and ``eval_context`` around generation for the
classes of each task. The GAN's discriminator is trained by its own optimizer, without hooks.

Outputs follow the classification run-directory contract (``config.yaml``, ``log.jsonl``,
``run.log``, ``metrics.json``, ``acc_matrix.csv``, ``val_acc_matrix.csv``), where
``R[i][j]`` is the *recognition share* of task ``j``'s classes after training task ``i``
(:mod:`anpyc.generative_eval`), plus ``fid_matrix`` (Frechet distance to real test images
on the judging classifier's features; ``val_fid_matrix`` against validation images),
``class_recognition`` (per class) and one sample grid per task in
``samples/task_<t>.png`` (a row per class seen so far).

Example:
    >>> from anpyc.config import RunConfig
    >>> cfg = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "split-mnist",
    ...     "classes_per_task": 1}, "method": "finetune"})
    >>> result = run_generative(cfg, create("finetune"), out=None)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from anpyc.config import RunConfig, TrainConfig
from anpyc.data.streams import Stream, _gen, make_stream
from anpyc.data.taskdata import ConcatData, TaskData, iterate
from anpyc.errors import TrainingError
from anpyc.generative_eval import (
    EvalClassifier,
    dataset_of,
    frechet_distance,
    load_or_train_classifier,
    predict,
    real_features,
)
from anpyc.io import append_jsonl, write_csv, write_json
from anpyc.methods import create  # noqa: F401  (doctest)
from anpyc.methods.base import Method
from anpyc.metrics import summarize
from anpyc.models.generative import GenerativeModel, build_generative
from anpyc.report.images import save_grid
from anpyc.utils import eval_mode, seed_everything

log = logging.getLogger(__name__)


def resolve_train_defaults(cfg: RunConfig) -> RunConfig:
    """Generative models train with Adam. A run that kept the classification defaults
    (``optimizer: sgd``, ``lr: 0.1``) gets Adam at the model's learning rate (VAE 1e-3, GAN
    2e-4); the saved ``config.yaml`` shows what was used. Explicit choices are kept."""
    from anpyc.models.generative import ConditionalGAN, ConditionalVAE

    t = cfg.train
    if t.optimizer == "sgd" and t.lr == TrainConfig().lr:
        lr = (ConditionalGAN if cfg.model.name == "gan" else ConditionalVAE).default_lr
        log.info("generative model: using Adam with lr %g (the classification default is SGD, lr 0.1)", lr)
        return cfg.replace(train=TrainConfig(**{**t.__dict__, "optimizer": "adam", "lr": lr}))
    return cfg


def make_generative_optimizer(params, cfg: TrainConfig, betas: tuple[float, float]) -> torch.optim.Optimizer:
    """Adam with the model family's betas, or SGD when asked for."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


def fit_generative(
    model: GenerativeModel,
    method: Method,
    data: TaskData | ConcatData,
    cfg: TrainConfig,
    epochs: int,
    generator: torch.Generator,
    task_id: int | None = None,
) -> dict:
    """Train ``model`` on ``data`` for ``epochs`` with the method's hooks around each step.

    Per batch: the auxiliary network (the GAN's discriminator) takes one step on its own
    loss, then the protected network takes one step on ``model.loss + method.penalty``.
    Fresh optimizers per call. Returns ``{"loss", "aux_loss", "steps"}`` (last-epoch means).
    """
    device = torch.device(cfg.device)
    optimizer = make_generative_optimizer(model.training_parameters(), cfg, model.adam_betas)
    aux_params = model.auxiliary_parameters()
    aux_opt = make_generative_optimizer(aux_params, cfg, model.adam_betas) if aux_params else None
    model.train()
    steps, last, last_aux = 0, math.nan, math.nan
    for epoch in range(epochs):
        total = total_aux = 0.0
        count = 0
        for x, y, t in iterate(data, cfg.batch_size, shuffle=True, generator=generator):
            x, y, t = x.to(device), y.to(device), t.to(device)
            if aux_opt is not None:
                aux_loss = model.auxiliary_loss(x, y)
                aux_opt.zero_grad(set_to_none=True)
                aux_loss.backward()
                aux_opt.step()
                total_aux += float(aux_loss.detach()) * len(y)
            loss = model.loss(x, y)
            extra = method.penalty(model, x, t)
            if extra is not None:
                loss = loss + extra
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"non-finite loss ({loss.item()}) in task {task_id if task_id is not None else '?'}, "
                    f"epoch {epoch}: lower the learning rate or the method's strength, or set train.grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            method.before_step(model)
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.training_parameters(), cfg.grad_clip)
            optimizer.step()
            method.after_step(model, optimizer)
            total += float(loss.detach()) * len(y)
            count += len(y)
            steps += 1
        last = total / max(count, 1)
        last_aux = total_aux / max(count, 1) if aux_opt is not None else math.nan
    return {"loss": last, "aux_loss": last_aux, "steps": steps}


@torch.no_grad()
def generate(model: GenerativeModel, cls: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images of class ``cls`` in [0, 1], in eval mode."""
    with eval_mode(model):
        return model.sample(torch.full((n,), int(cls), dtype=torch.long), generator).cpu()


class ClassJudge:
    """Scores one class's samples: recognition share and Frechet distances to real images."""

    def __init__(self, clf: EvalClassifier, stream: Stream, seed: int) -> None:
        self.clf = clf
        self.seed = seed
        classes = [c for task in stream for c in task.classes]
        self.test_feats = real_features(clf, ConcatData([t.test for t in stream]), classes)
        self.val_feats = real_features(clf, ConcatData([t.val for t in stream]), classes)

    def draw(self, model: GenerativeModel, cls: int, n: int, draw: int) -> torch.Tensor:
        # the same latent codes after every task and for every method with this seed, so
        # changes between tasks and between methods are paired comparisons
        return generate(model, cls, n, _gen(self.seed, 7, draw, cls))

    def score(self, images: torch.Tensor, cls: int, real: dict[int, np.ndarray]) -> tuple[float, float]:
        pred, feats = predict(self.clf, images)
        share = float((pred == cls).float().mean())
        fid = frechet_distance(real[cls], feats.numpy()) if len(real.get(cls, ())) >= 2 else math.nan
        return share, fid


def run_generative(
    cfg: RunConfig, method: Method, out: Path | None, quiet: bool = False, stream: Stream | None = None
):
    """Train ``cfg.model.name`` (``vae`` or ``gan``) task after task; judge after each task.

    Called by :func:`anpyc.runner.run` (which writes ``config.yaml`` and the logs) when the
    model is generative. Returns a :class:`anpyc.runner.RunResult`.
    """
    from anpyc.runner import RunResult, _finite, _fmt, _progress, cost_metrics, runlog

    cfg = resolve_train_defaults(cfg)  # idempotent; run() applied it before saving the config
    gcfg = cfg.generative
    dataset = dataset_of(cfg.stream.benchmark)
    seed_everything(cfg.seed, cfg.train.device)
    if stream is None or stream.labels != "global":  # the generator is conditioned on class ids
        stream = make_stream(cfg.stream, cfg.seed, labels="global")
    device = torch.device(cfg.train.device)
    clf, clf_info = load_or_train_classifier(
        dataset, cfg.stream.data_dir, gcfg.classifier, gcfg.classifier_epochs, gcfg.classifier_seed, gcfg.classifier_subsample
    )
    judge = ClassJudge(clf, stream, cfg.seed)
    seed_everything(cfg.seed, cfg.train.device)  # the classifier (when trained now) must not shift the run's randomness
    model = build_generative(
        cfg.model.name, stream.input_shape, stream.n_classes, cfg.model.hidden, gcfg.latent_dim, gcfg.vae_protect
    ).to(device)
    method.to(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    T, C = len(stream), stream.n_classes
    R, V = np.full((T, T), np.nan), np.full((T, T), np.nan)
    FID, VFID = np.full((T, T), np.nan), np.full((T, T), np.nan)
    per_class = np.full((T, C), np.nan)
    per_class_fid = np.full((T, C), np.nan)
    task_time, eval_time = [], []
    if out is not None:
        for stale in (out / "samples").glob("task_*.png"):
            stale.unlink()
    progress = _progress(T, quiet, f"{cfg.method} on {stream.name} ({cfg.model.name})")
    t_start = time.perf_counter()
    for t, task in enumerate(stream):
        t0 = time.perf_counter()
        method.before_task(model, task)
        data = method.training_data(task, stream[: t + 1])
        stats = fit_generative(model, method, data, cfg.train, cfg.train.epochs, generator, task_id=t)

        def retrain(epochs: int, _data=data, _t=t) -> dict:
            return fit_generative(model, method, _data, cfg.train, epochs, generator, task_id=_t)

        method.after_task(model, task, retrain)
        e0 = time.perf_counter()
        grid_rows = []
        for j in range(t + 1):
            shares, vshares, fids, vfids = [], [], [], []
            with method.eval_context(model, j):
                for c in stream[j].classes:
                    share, fid = judge.score(judge.draw(model, c, gcfg.samples_per_class, 0), c, judge.test_feats)
                    vshare, vfid = judge.score(judge.draw(model, c, gcfg.samples_per_class, 1), c, judge.val_feats)
                    shares.append(share), vshares.append(vshare), fids.append(fid), vfids.append(vfid)
                    per_class[t, c], per_class_fid[t, c] = share, fid
                    grid_rows.append(judge.draw(model, c, gcfg.grid_columns, 2))
            R[t, j], V[t, j] = float(np.mean(shares)), float(np.mean(vshares))
            FID[t, j], VFID[t, j] = float(np.mean(fids)), float(np.mean(vfids))
        grid_path = None
        if out is not None:
            grid_path = save_grid(out / "samples" / f"task_{t}.png", torch.stack(grid_rows))
        eval_time.append(time.perf_counter() - e0)
        task_time.append(time.perf_counter() - t0)
        record = {
            "task": t,
            "classes": list(task.classes),
            "loss": stats["loss"],
            "aux_loss": stats["aux_loss"],
            "steps": stats["steps"],
            "acc": R[t, : t + 1].tolist(),
            "val_acc": V[t, : t + 1].tolist(),
            "fid": FID[t, : t + 1].tolist(),
            "avg_acc": float(np.mean(R[t, : t + 1])),
            "avg_fid": float(np.mean(FID[t, : t + 1])),
            "time_s": task_time[-1],
            "eval_time_s": eval_time[-1],
            "grid": str(grid_path) if grid_path else None,
        }
        record.update({k: v for k, v in method.summary().items() if k in ("free_fraction_total",)})
        line = (
            f"task {t + 1}/{T}: recognition {record['avg_acc']:.4f}, FD {record['avg_fid']:.2f}, "
            f"loss {stats['loss']:.4f}, {task_time[-1]:.1f}s"
        )
        runlog.info(line)
        if progress is None:
            log.info(line)
        else:
            progress.set_postfix(recog=f"{record['avg_acc']:.3f}")
            progress.update(1)
        if out is not None:
            append_jsonl(out / "log.jsonl", _finite(record))
    if progress is not None:
        progress.close()
    total = time.perf_counter() - t_start
    metrics = summarize(R)
    val_summary = summarize(V)
    metrics.update(
        {
            "method": cfg.method,
            "benchmark": stream.name,
            "model": cfg.model.name,
            "n_tasks": T,
            "seed": cfg.seed,
            "metric": "recognition share of generated samples by the judging classifier",
            "acc_matrix": R.tolist(),
            "val_acc_matrix": V.tolist(),
            "val_avg_acc": val_summary["avg_acc"],
            "val_bwt": val_summary["bwt"],
            "fid_matrix": FID.tolist(),
            "val_fid_matrix": VFID.tolist(),
            "avg_fid": float(np.mean(FID[T - 1])),
            "class_recognition": per_class.tolist(),
            "class_fid": per_class_fid.tolist(),
            "task_classes": [list(task.classes) for task in stream],
            "classifier": {k: v for k, v in clf_info.items()},
            "classifier_test_acc": clf_info["test_acc"],
            "samples_per_class": gcfg.samples_per_class,
            **cost_metrics(model, method, total, task_time, eval_time),
        }
    )
    metrics.update(method.summary())
    if out is not None:
        header = [f"task_{j}" for j in range(T)]
        write_csv(out / "acc_matrix.csv", [[_fmt(v) for v in row] for row in R], header)
        write_csv(out / "val_acc_matrix.csv", [[_fmt(v) for v in row] for row in V], header)
        write_csv(out / "fid_matrix.csv", [["" if not np.isfinite(v) else f"{v:.4f}" for v in row] for row in FID], header)
        write_json(out / "metrics.json", _finite(metrics))
    return RunResult(cfg, R, V, metrics, out, model, method)
