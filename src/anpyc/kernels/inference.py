"""Task inference for mask methods: which stored task view should answer a test input
whose task id is hidden (domain- and class-incremental scenarios)?

A mask method (ANPyC, PackNet, HAT) keeps, for every finished task ``k``, a *view*: the
weights task ``k`` could see (its mask, applied by the method) and, here, a snapshot of the
shared head as it was after task ``k`` (in the class scenario restricted to ``k``'s
classes). :class:`TaskInference` runs a test batch through every view, batched, scores how
well each view "owns" each input and answers with the best view's logits (as in SupSup,
Wortsman et al. 2020, which takes the view of lowest predictive entropy). Scores:

* ``entropy``: minus the predictive entropy, standardised by the view's own entropy on its
  task's validation split (so that a view that is always unsure is not always beaten);
* ``input_density``: log-likelihood of the input under the task's density model of inputs:
  a mixture over the task's classes of probabilistic PCA models (Tipping & Bishop 1999; rank
  ``rank``, the rest of the variance isotropic), fitted on the task's training inputs: a
  generative task classifier on inputs (``rank=0``: one diagonal Gaussian per class);
* ``feature_density``: log-likelihood of the view's penultimate features under a diagonal
  Gaussian per class of the task, fitted on the task's training inputs under that view.

Everything is learnt from the task's own training and validation data while the task is the
current one; nothing of an old task is kept but these statistics and the head snapshot.

Example:
    >>> inf = TaskInference("entropy")
    >>> inf.n_views
    0
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.data.batches import iterate
from anpyc.utils import eval_mode

SCORES = ("entropy", "input_density", "feature_density")
View = Callable[[int], ContextManager]  # view(k): the weights task k saw, for the duration


def entropy(logits: Tensor) -> Tensor:
    """Predictive entropy per row (nats)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def _gaussian_loglik(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Log-density per row of a diagonal Gaussian (constant terms kept: comparable across tasks)."""
    return -0.5 * (((x - mean) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(1)


class TaskInference(nn.Module):
    """Per-task views of a mask method and the scores that pick one per input.

    State (buffers and extra state): per view a head snapshot, the statistics its score
    needs, its task's classes and the calibration of its entropy. :meth:`record` adds the
    view of the task just finished; :meth:`predict` answers a batch and remembers which view
    answered each row (:attr:`last_views`, for the task-inference accuracy the loop records).
    """

    def __init__(self, score: str = "entropy", samples: int = 2000, rank: int = 20, var_floor: float = 1e-2) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown task-inference score {score!r}; known: {', '.join(SCORES)}")
        self.score, self.samples, self.rank, self.var_floor = score, samples, rank, var_floor
        self.history: dict = {"classes": [], "calibration": []}
        self.last_views: Tensor | None = None

    def get_extra_state(self) -> dict:
        return copy.deepcopy(self.history)

    def set_extra_state(self, state: dict) -> None:
        self.history = copy.deepcopy(state)

    @property
    def n_views(self) -> int:
        return len(self.history["classes"])

    def _put(self, name: str, value: Tensor) -> None:
        if hasattr(self, name):
            getattr(self, name).copy_(value)
        else:
            self.register_buffer(name, value.detach().clone())

    def cost(self) -> dict:
        """What inferring the task costs: the memory it keeps (head snapshots and score
        statistics: the counterpart of a replay buffer), and the forward passes per test input
        (one per stored view). Evaluation time is in ``metrics.json`` beside fine-tune's."""
        memory = sum(b.numel() * b.element_size() for b in self.buffers())
        return {"score": self.score, "memory_mb": memory / 2**20, "forward_passes_per_input": self.n_views}

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def record(self, model, task, k: int, view: View, class_scenario: bool) -> None:
        """Task ``k`` is finished: keep its view's head, its classes and score statistics."""
        for name, t in model.heads[0].state_dict().items():
            self._put(f"head__{k}__{name}", t)
        self.history["classes"].append(list(task.classes) if class_scenario else None)
        # every rank computes the same statistics from the same examples: no collective needed
        with eval_mode(model):
            if self.score == "input_density":
                self._fit_inputs(task, k, _device(model))
            if self.score == "feature_density":
                self._fit_features(model, task, k, view)
            with view(k), self._head(model, k):
                h = torch.cat([entropy(self._logits(model, x.to(_device(model)), k))
                               for x, _, _ in iterate(task.val, 500, limit=self.samples)])
        self.history["calibration"].append([float(h.mean()), max(float(h.std(unbiased=False)), 1e-4)])

    def _fit_inputs(self, task, k: int, device: torch.device) -> None:
        """One probabilistic PCA per class of the task, on its training inputs."""
        _, fits = fit_class_ppca(task.train, self.samples, self.rank, self.var_floor, device)
        for name, value in fits.items():
            self._put(f"in_{name}__{k}", value)

    def _input_score(self, x: Tensor, k: int) -> Tensor:
        """log p(x | task k): mixture (equal weights) of the task's classes' PPCA densities."""
        per_class = ppca_log_likelihoods(x, {name: getattr(self, f"in_{name}__{k}") for name in PPCA_PARTS})
        return torch.logsumexp(per_class, 1) - math.log(per_class.shape[1])

    def _fit_features(self, model, task, k: int, view: View) -> None:
        feats, labels = [], []
        with view(k):
            for x, y, _ in iterate(task.train, 500, limit=self.samples):
                feats.append(model.features(x.to(_device(model))).flatten(1))
                labels.append(y.to(feats[-1].device))
        f, y = torch.cat(feats), torch.cat(labels)
        classes = sorted(set(y.tolist()))
        means = torch.stack([f[y == c].mean(0) for c in classes])
        var = torch.stack([f[y == c].var(0, unbiased=False) for c in classes]).mean(0).clamp_min(self.var_floor)
        self._put(f"feat_mean__{k}", means)
        self._put(f"feat_var__{k}", var)

    # ------------------------------------------------------------------ answering
    @contextlib.contextmanager
    def _head(self, model, k: int) -> Iterator[None]:
        """The shared head as it was after task ``k``, for the duration."""
        head = model.heads[0]
        saved = {n: t.detach().clone() for n, t in head.state_dict().items()}
        snap = {n: getattr(self, f"head__{k}__{n}") for n in saved}
        with torch.no_grad():
            for n, t in head.state_dict().items():
                t.copy_(snap[n])
        try:
            yield
        finally:
            with torch.no_grad():
                for n, t in head.state_dict().items():
                    t.copy_(saved[n])

    def _logits(self, model, x: Tensor, k: int) -> Tensor:
        logits = model(x, 0)
        classes = self.history["classes"][k]
        if classes is None:
            return logits
        keep = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
        keep[[c for c in classes if c < logits.shape[1]]] = 0.0
        return logits + keep

    def _view_score(self, model, x: Tensor, logits: Tensor, k: int) -> Tensor:
        if self.score == "input_density":
            return self._input_score(x, k)
        if self.score == "feature_density":
            f = model.features(x).flatten(1)
            means, var = getattr(self, f"feat_mean__{k}"), getattr(self, f"feat_var__{k}")
            return torch.stack([_gaussian_loglik(f, m, var) for m in means], 1).max(1).values
        mu, sd = self.history["calibration"][k]
        return -(entropy(logits) - mu) / sd

    @torch.no_grad()
    def predict(self, model, x: Tensor, view: View) -> Tensor:
        """Logits of the best-scoring view for every row of ``x`` (one pass per view)."""
        all_logits, scores = [], []
        for k in range(self.n_views):
            with view(k), self._head(model, k):
                logits = self._logits(model, x, k)
                scores.append(self._view_score(model, x, logits, k))
            all_logits.append(logits)
        best = torch.stack(scores, 1).argmax(1)
        self.last_views = best.cpu()
        stacked = torch.stack(all_logits, 1)  # rows x views x outputs
        return stacked[torch.arange(len(x), device=stacked.device), best.to(stacked.device)]


def inference_cost(inference: TaskInference | None) -> dict:
    """``{"task_inference_cost": ...}`` for a method's summary when it inferred tasks, else ``{}``."""
    return {"task_inference_cost": inference.cost()} if inference is not None and inference.n_views else {}


PPCA_PARTS = ("mean", "basis", "eig", "noise")  # of a stack of PPCA fits, one per class


def fit_class_ppca(data, samples: int, rank: int, floor: float, device: torch.device) -> tuple[list[int], dict[str, Tensor]]:
    """One probabilistic PCA (:func:`_ppca`) per class of ``data`` (a task's split, labels as
    the scenario gives them), fitted on its first ``samples`` inputs, flattened: the classes,
    sorted, and the fits stacked in that order (``mean`` C x D, ``basis`` C x D x rank,
    ``eig`` C x rank, ``noise`` C). The input-density task inference and ``--method density``
    share it.

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> data = TaskData(torch.randn(40, 5), torch.arange(40) % 2, 0)
        >>> classes, fits = fit_class_ppca(data, 2000, rank=2, floor=1e-2, device=torch.device("cpu"))
        >>> classes, fits["basis"].shape
        ([0, 1], torch.Size([2, 5, 2]))
    """
    xs, ys = zip(*[(x.flatten(1), y) for x, y, _ in iterate(data, 500, limit=samples)], strict=True)
    x, y = torch.cat(xs).float().to(device), torch.cat(ys).to(device)
    classes = sorted(set(y.tolist()))
    fits = [_ppca(x[y == c], rank, floor) for c in classes]
    return classes, {name: torch.stack([f[i] for f in fits]).float() for i, name in enumerate(PPCA_PARTS)}


def ppca_log_likelihoods(x: Tensor, fits: dict[str, Tensor]) -> Tensor:
    """``log p(x | class)`` of every row of ``x`` (flattened) under every fit of a stack
    (:func:`fit_class_ppca`; covariance ``U diag(eig) U^T + noise (I - U U^T)``): rows x
    classes. Every class at once, in two matrix products: ``|x - m|^2`` expanded as
    ``|x|^2 - 2 x.m + |m|^2`` and ``(x - m) U`` as ``x U - m U`` (3-4 times faster than a loop
    over the classes; equal to about 1e-6 relative in float32)."""
    x = x.flatten(1)
    mean, basis, eig, noise = (fits[name] for name in PPCA_PARTS)
    k, d, rank = basis.shape
    sq = (x * x).sum(1, keepdim=True) - 2 * x @ mean.T + (mean * mean).sum(1)  # rows x classes: |x - m|^2
    z = (x @ basis.permute(1, 0, 2).reshape(d, k * rank)).view(len(x), k, rank) - torch.einsum("kd,kdr->kr", mean, basis)
    zz = z * z
    outside = (sq - zz.sum(2)).clamp_min(0)  # the residual's part outside the principal directions
    maha = (zz / eig).sum(2) + outside / noise
    logdet = eig.log().sum(1) + (d - rank) * noise.log()
    return -0.5 * (maha + logdet + d * math.log(2 * math.pi))


def _ppca(x: Tensor, rank: int, floor: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Maximum-likelihood probabilistic PCA of the rows of ``x``: mean, top-``rank``
    eigenvectors and eigenvalues of the covariance, and the isotropic noise variance (the mean
    of the other eigenvalues), floored so that a constant pixel does not give infinite
    density."""
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x), 1)
    eig, vec = _eigh(cov)  # ascending
    eig, vec = eig.flip(0).clamp_min(0), vec.flip(1)
    noise = eig[rank:].mean().clamp_min(floor) if rank < len(eig) else torch.tensor(floor, dtype=x.dtype, device=x.device)
    return mean, vec[:, :rank], torch.maximum(eig[:rank], noise), noise


def _eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, redone in float64 when float32 fails: on the low-rank covariance
    of a class with fewer examples than pixels it may not converge, or return NaN."""
    try:
        eig, vec = torch.linalg.eigh(cov)
        if bool(torch.isfinite(eig).all()) and bool(torch.isfinite(vec).all()):
            return eig, vec
    except torch.linalg.LinAlgError:
        pass
    eig, vec = torch.linalg.eigh(cov.double())
    return eig.to(cov.dtype), vec.to(cov.dtype)


def _device(model) -> torch.device:
    return next(model.parameters()).device
