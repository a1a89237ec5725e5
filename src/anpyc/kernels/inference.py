"""Task inference: which task should answer a test input whose task id is hidden (domain-
and class-incremental scenarios)?

A method trained task-aware (one head per task: :mod:`anpyc.methods.task_inference` wraps any
method so) keeps, for every finished task ``k``, a *view*: the weights task ``k`` sees (its
mask, for a mask method; every weight otherwise) and its own head. :class:`TaskInference`
learns, from each task's own training and validation data while the task is the current one,
the statistics of a score, and at test time picks a task for every input (as SupSup,
Wortsman et al. 2020, picks a mask). The views are reached through :class:`Views` (the method
behind them is not known here). Scores:

* ``input_density``: log-likelihood of the input under the task's density model of inputs, a
  mixture (equal weights) over the task's classes of probabilistic PCA models (Tipping &
  Bishop 1999; rank ``rank``, the rest of the variance isotropic), fitted on the task's
  training inputs. The task is inferred before any forward pass; then every input goes
  through its task's view once (the batch grouped by view): one forward pass per input.
* ``pooled_density``: the same, with one probabilistic PCA per task, its classes pooled: for
  streams whose tasks differ in the input as a whole (permutations of one image set, domains)
  rather than in their classes, at a fraction of the cost (on a 10-class task a tenth of the
  memory and of the scoring's matrix product). The per-class mixture is the one a generative
  classifier needs (``combined``, ``--method density``).
* ``mixture_density``: ``input_density`` with each class a mixture of ``MIXTURE["components"]``
  PPCA models of the square root of the inputs' intensities (:func:`fit_class_mixtures`,
  :func:`sqrt_inputs`): the form ``--method density`` chose on the class-incremental
  protocols' validation splits (``presets/density-split-*-class.yaml``; a test keeps them
  equal), the score of those protocols' ``+inference`` rows. One forward pass per input, as
  ``input_density``.
* ``combined``: a (task, class) pair is scored by the input's log-likelihood under that class's
  PPCA plus ``w`` times the log-softmax the task's head gives that class: the density's
  evidence and the network's. ``w`` (a fixed grid, 0 included) is chosen on validation data:
  after each task, the pairs of every task so far are scored on the task's validation inputs;
  the weight with the most right answers summed over the tasks so far is used. Every view
  answers every input (one forward pass per view and input; one in all when the views share
  the body).
* ``mixture_combined``: ``combined`` with ``mixture_density``'s model of a class (its
  components' likelihoods summed), its weight chosen on validation data as ``combined``'s.
* ``mixture_evidence``: ``mixture_combined`` plus ``v`` times the log-likelihood of the view's
  penultimate features under a PPCA model (rank ``FEATURE_RANK``) of the pair's class, fitted
  on the task's training inputs under its view when the task ends: what the network makes of
  the input, as evidence beside its head's. ``w`` and ``v`` (``FEATURE_WEIGHTS``) are chosen
  together on validation data, as ``combined``'s ``w``.
* ``entropy``: minus the predictive entropy of the task's head, standardised by its entropy on
  the task's validation split (so that a view that is always unsure is not always beaten);
  every view answers every input.
* ``feature_density``: log-likelihood of the view's penultimate features under a diagonal
  Gaussian per class of the task, fitted on the task's training inputs under that view.

Nothing of an old task is kept but these statistics (their memory is in ``cost()``).

Example:
    >>> inf = TaskInference("entropy")
    >>> inf.n_views
    0
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.data.batches import iterate

if TYPE_CHECKING:
    from anpyc.data.batches import SplitData

SCORES = ("input_density", "pooled_density", "mixture_density", "combined", "mixture_combined", "mixture_evidence",
          "entropy", "feature_density")
#: scores that pick the task from the input alone, before any forward pass
INPUT_SCORES = ("input_density", "pooled_density", "mixture_density")
#: scores that weigh every (task, class) pair's input log-likelihood against its head's log-softmax
COMBINED_SCORES = ("combined", "mixture_combined", "mixture_evidence")
#: scores whose classes are mixtures of PPCA models of the inputs' square roots
MIXTURE_SCORES = ("mixture_density", "mixture_combined", "mixture_evidence")
#: the class model of ``mixture_density``: PPCA models per class and what they model
MIXTURE = {"components": 8, "transform": "sqrt"}
#: weights of the head's log-softmax against the input log-likelihood (``combined``): the input
#: log-likelihoods of images differ by hundreds of nats, so the grid spans several decades
COMBINED_WEIGHTS = (0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
#: weights of the view's feature log-likelihood (``mixture_evidence``), chosen with the head's
FEATURE_WEIGHTS = (0.0, 0.3, 1.0, 3.0)
#: rank of ``mixture_evidence``'s PPCA model of a class's penultimate features under its view
FEATURE_RANK = 10


class Views(Protocol):
    """What task inference needs of a method's per-task views. ``logits(k, x)``: task ``k``'s
    head on ``x`` under task ``k``'s view (its own outputs, ``0..n_k-1``); ``features(k, x)``:
    the penultimate features under that view; ``shared_body``: every view computes the same
    features (no masks), so one pass of the body serves them all."""

    shared_body: bool

    def logits(self, k: int, x: Tensor) -> Tensor: ...

    def features(self, k: int, x: Tensor) -> Tensor: ...

    def features_and_logits(self, k: int, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def head_logits(self, k: int, features: Tensor) -> Tensor: ...


def entropy(logits: Tensor) -> Tensor:
    """Predictive entropy per row (nats)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def _gaussian_loglik(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Log-density per row of a diagonal Gaussian (constant terms kept: comparable across tasks)."""
    return -0.5 * (((x - mean) ** 2) / var + var.log() + math.log(2 * math.pi)).sum(1)


def all_evidence(views: Views, ks: Sequence[int], x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Every task ``k`` in ``ks``'s penultimate features and logits of ``x`` under its view
    (the body run once when the views share it)."""
    if views.shared_body:
        feats = views.features(ks[0], x) if ks else None
        return [feats] * len(ks), [views.head_logits(k, feats) for k in ks]
    pairs = [views.features_and_logits(k, x) for k in ks]
    return [f for f, _ in pairs], [z for _, z in pairs]


def all_logits(views: Views, ks: Sequence[int], x: Tensor) -> list[Tensor]:
    """Every task ``k`` in ``ks``'s logits of ``x`` under its view (the body run once when the
    views share it)."""
    if views.shared_body:
        feats = views.features(ks[0], x) if ks else None
        return [views.head_logits(k, feats) for k in ks]
    return [views.logits(k, x) for k in ks]


class TaskInference(nn.Module):
    """Per-task statistics of a score, and the task it picks for each input.

    State (buffers and extra state): per view its labels (the stream's label of each of its
    outputs), the statistics its score needs and the calibration of its entropy; for
    ``combined`` the validation hits of every weight. :meth:`record` adds the view of the task
    just finished; :meth:`predict` answers a batch with logits over the stream's labels and
    remembers the task each row was given (:attr:`last_views`, for the task-inference
    accuracy the loop records).
    """

    def __init__(self, score: str = "input_density", samples: int = 2000, rank: int = 20, var_floor: float = 1e-2) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown task-inference score {score!r}; known: {', '.join(SCORES)}")
        self.score, self.samples, self.rank, self.var_floor = score, samples, rank, var_floor
        self.history: dict = {"labels": [], "calibration": [], "weight_hits": [0] * len(self.weight_grid),
                              "decision_passes": [], "fit_examples": []}
        self.last_views: Tensor | None = None
        self._stacked: tuple[int, dict[str, Tensor], Tensor, Tensor] | None = None  # derived, never saved

    def get_extra_state(self) -> dict:
        return copy.deepcopy(self.history)

    def set_extra_state(self, state: dict) -> None:
        self.history = copy.deepcopy(state)
        self._stacked = None

    @property
    def n_views(self) -> int:
        return len(self.history["labels"])

    @property
    def weight_grid(self) -> list[tuple[float, float]]:
        """The (head, features) weights a combined score chooses from."""
        features = FEATURE_WEIGHTS if self.score == "mixture_evidence" else (0.0,)
        return [(w, v) for w in COMBINED_WEIGHTS for v in features]

    @property
    def weights(self) -> tuple[float, float]:
        """The head's and the features' weights of a combined score (the first of the most
        validation hits)."""
        hits = self.history["weight_hits"]
        return self.weight_grid[max(range(len(hits)), key=lambda i: (hits[i], -i))]

    @property
    def weight(self) -> float:
        """The head's weight in ``combined`` (the first of the most validation hits)."""
        return self.weights[0]

    def _put(self, name: str, value: Tensor) -> None:
        if hasattr(self, name):
            getattr(self, name).copy_(value)
        else:
            self.register_buffer(name, value.detach().clone())

    def cost(self) -> dict:
        """What inferring the task costs: the memory its statistics keep (the counterpart of
        a replay buffer), the forward passes per test input (through views), those spent on
        decisions (choosing ``combined``'s weight on validation inputs) and the training inputs
        read to fit the statistics, per task."""
        memory = sum(b.numel() * b.element_size() for b in self.buffers())
        per_input = 1 if self.score in INPUT_SCORES else self.n_views
        return {"score": self.score, "memory_mb": memory / 2**20, "forward_passes_per_input": per_input,
                "decision_forward_passes": list(self.history["decision_passes"]),
                "fit_examples": list(self.history["fit_examples"]),
                **(self._weight_record() if self.score in COMBINED_SCORES else {})}

    def _weight_record(self) -> dict:
        if self.score != "mixture_evidence":
            return {"weight": self.weight, "weight_hits": dict(zip(map(str, COMBINED_WEIGHTS), self.history["weight_hits"],
                                                                strict=True))}
        keys = [f"{w:g},{v:g}" for w, v in self.weight_grid]
        return {"weight": self.weights[0], "feature_weight": self.weights[1],
                "weight_hits": dict(zip(keys, self.history["weight_hits"], strict=True))}

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def record(self, k: int, train: SplitData, val: SplitData, labels: Sequence[int], views: Views,
               device: torch.device, generator: torch.Generator | None = None) -> None:
        """Task ``k`` is finished: keep what its score needs, from its ``train`` and ``val``
        splits (labelled ``0..n-1`` as its head's outputs); ``labels``: the stream's label of
        each output; ``generator``: the random draws of ``mixture_density``'s fits."""
        if k != self.n_views:
            raise ValueError(f"task inference: views are recorded in order; expected task {self.n_views}, got {k}")
        self.history["labels"].append([int(c) for c in labels])
        fitted = 0
        if self.score in ("input_density", "pooled_density", "combined"):
            _, fits = fit_class_ppca(train, self.samples, self.rank, self.var_floor, device,
                                     pooled=self.score == "pooled_density")
            for name, value in fits.items():
                self._put(f"in_{name}__{k}", value)
            fitted = min(len(train), self.samples)
            self._stacked = None
        if self.score in MIXTURE_SCORES:
            fitted = self._fit_mixtures(train, k, device, generator)
        passes, calibration = 0, None
        if self.score == "feature_density":
            self._fit_features(train, k, views, device)
            fitted = min(len(train), self.samples)
        if self.score == "mixture_evidence":
            passes += self._fit_feature_ppca(train, k, views, device)
        self.history["fit_examples"].append(fitted)
        if self.score == "entropy":
            h = torch.cat([entropy(views.logits(k, x.to(device))) for x, _, _ in iterate(val, 500, limit=self.samples)]
                          or [torch.zeros(1)])
            calibration = [float(h.mean()), max(float(h.std(unbiased=False)), 1e-4)]
            passes = min(len(val), self.samples)
        self.history["calibration"].append(calibration)
        if self.score in COMBINED_SCORES:
            passes += self._choose_weight(val, k, views, device)
        self.history["decision_passes"].append(passes)

    def _fit_mixtures(self, train: SplitData, k: int, device: torch.device,
                      generator: torch.Generator | None) -> int:
        """``mixture_density``'s fits of task ``k`` (the black level from the first task's
        inputs); returns the training inputs read."""
        x, y = read_inputs(train, self.samples, device)
        if k == 0:
            self._put("in_shift", x.min())
        outputs, fits = fit_class_mixtures(sqrt_inputs(x, self.in_shift), y, self.rank, self.var_floor,
                                           MIXTURE["components"], generator)
        for name, value in fits.items():
            self._put(f"in_{name}__{k}", value)
        self._put(f"in_output__{k}", torch.tensor(outputs, dtype=torch.long, device=device))
        self._stacked = None
        return len(x)

    def _view_features(self, train: SplitData, k: int, views: Views,
                       device: torch.device) -> tuple[Tensor, Tensor]:
        """The penultimate features under task ``k``'s view of the first ``samples`` inputs of
        ``train``, flattened, and their labels."""
        feats, labels = [], []
        for x, y, _ in iterate(train, 500, limit=self.samples):
            feats.append(views.features(k, x.to(device)).flatten(1))
            labels.append(y.to(feats[-1].device))
        return torch.cat(feats), torch.cat(labels)

    def _fit_features(self, train: SplitData, k: int, views: Views, device: torch.device) -> None:
        f, y = self._view_features(train, k, views, device)
        classes = range(len(self.history["labels"][k]))
        means = torch.stack([f[y == c].mean(0) if bool((y == c).any()) else f.mean(0) for c in classes])
        var = torch.stack([f[y == c].var(0, unbiased=False) for c in classes if int((y == c).sum()) > 1] or [f.var(0)])
        self._put(f"feat_mean__{k}", means)
        self._put(f"feat_var__{k}", var.mean(0).clamp_min(self.var_floor))

    def _fit_feature_ppca(self, train: SplitData, k: int, views: Views,
                          device: torch.device) -> int:
        """``mixture_evidence``'s model of task ``k``'s classes in its view's features; returns
        the forward passes spent (through the view)."""
        f, y = self._view_features(train, k, views, device)
        _, fits = class_ppca(f.float(), y, FEATURE_RANK, self.var_floor)
        for name, value in fits.items():
            self._put(f"ft_{name}__{k}", value)
        return len(f)

    def _choose_weight(self, val: SplitData, k: int, views: Views, device: torch.device) -> int:
        """Add, for every weight of the grid, how many of task ``k``'s validation inputs the
        ``combined`` pairs of tasks ``0..k`` give their own task and class; returns the forward
        passes spent (through views)."""
        hits, passes = self.history["weight_hits"], 0
        for x, y, _ in iterate(val, 500, limit=self.samples):
            x, y = x.to(device), y.to(device)
            parts, task, label = self._pair_parts(x, views)
            passes += len(x) * (1 if views.shared_body else self.n_views)
            own = (task == k) & (label == torch.as_tensor(self.history["labels"][k], device=device)[y].unsqueeze(1))
            for i, weights in enumerate(self.weight_grid):
                best = _pair_scores(parts, weights).argmax(1)
                hits[i] += int(own.gather(1, best.unsqueeze(1)).sum())
        return passes

    # ------------------------------------------------------------------ answering
    def _stack(self) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """Every view's PPCA fits stacked (one row per (task, class), per task when pooled, per
        mixture component for ``mixture_density``), with each row's task and its index within
        the task (for a class: its output in the task's head); rebuilt when a view is added."""
        if self._stacked is None or self._stacked[0] != self.n_views:
            parts = (*PPCA_PARTS, "log_weight", "output") if self.score in MIXTURE_SCORES else PPCA_PARTS
            fits = prepare_ppca({name: torch.cat([getattr(self, f"in_{name}__{k}") for k in range(self.n_views)])
                                 for name in parts})
            sizes = [len(getattr(self, f"in_mean__{k}")) for k in range(self.n_views)]  # fits per task
            device = fits["mean"].device
            task = torch.cat([torch.full((n,), k, dtype=torch.long, device=device) for k, n in enumerate(sizes)])
            output = fits.pop("output", None)
            output = torch.cat([torch.arange(n, device=device) for n in sizes]) if output is None else output
            self._stacked = (self.n_views, fits, task, output)
        return self._stacked[1:]

    def _pair_parts(self, x: Tensor, views: Views) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        """A combined score's parts for every (task, output) pair (rows x pairs each): the
        input log-likelihood, the head's log-softmax and (``mixture_evidence``) the view's
        features' log-likelihood; and each pair's task and stream label."""
        if self.score == "mixture_evidence":
            feats, logits = all_evidence(views, range(self.n_views), x)
            evidence = torch.cat([ppca_log_likelihoods(f.flatten(1).float(), self._feature_fits(k))
                                  for k, f in enumerate(feats)], 1)
        else:
            logits, evidence = all_logits(views, range(self.n_views), x), None
        head = torch.cat([F.log_softmax(z, 1) for z in logits], 1)
        label = torch.cat([torch.as_tensor(ls, device=x.device) for ls in self.history["labels"]])
        task = torch.cat([torch.full((len(ls),), k, dtype=torch.long, device=x.device)
                          for k, ls in enumerate(self.history["labels"])])
        return (self._pair_density(x), head, *([] if evidence is None else [evidence])), task, label

    def _feature_fits(self, k: int) -> dict[str, Tensor]:
        return {name: getattr(self, f"ft_{name}__{k}") for name in PPCA_PARTS}

    def _pair_density(self, x: Tensor) -> Tensor:
        """``log p(x | class)`` of every (task, output) pair, in the order of the views' labels
        (a mixture's components' likelihoods, each weighted by its share, summed)."""
        fits, task, output = self._stack()
        per_row = self._fit_log_likelihoods(x, fits)
        if self.score not in MIXTURE_SCORES:
            return per_row
        sizes = [len(ls) for ls in self.history["labels"]]
        offsets = torch.tensor([0, *sizes[:-1]], device=output.device).cumsum(0)
        pair = offsets[task] + output
        return torch.stack([torch.logsumexp(per_row[:, pair == i], 1) for i in range(sum(sizes))], 1)

    def width(self) -> int:
        """Logits over the stream's labels: one more than the largest label of any view."""
        return max(max(labels) for labels in self.history["labels"]) + 1

    @torch.no_grad()
    def predict(self, x: Tensor, views: Views) -> Tensor:
        """Logits over the stream's labels for every row of ``x`` (``-inf`` for labels of the
        tasks not picked; ``combined``: every label's best pair score)."""
        if self.score in COMBINED_SCORES:
            return self._predict_pairs(x, views)
        if self.score in INPUT_SCORES:
            scores = self._input_scores(x)
            best = scores.argmax(1)
            chosen = {k: views.logits(k, x[best == k]) for k in best.unique().tolist()}
        else:
            logits = all_logits(views, range(self.n_views), x)
            best = torch.stack([self._view_score(views, x, z, k) for k, z in enumerate(logits)], 1).argmax(1)
            chosen = {k: logits[k][best == k] for k in best.unique().tolist()}
        self.last_views = best.cpu()
        out = torch.full((len(x), self.width()), -math.inf, device=x.device)
        for k, z in chosen.items():
            rows = (best == k).nonzero(as_tuple=True)[0]
            cols = torch.as_tensor(self.history["labels"][k], device=x.device)
            out[rows.unsqueeze(1), cols.unsqueeze(0)] = z.to(out.dtype)
        return out

    def _input_scores(self, x: Tensor) -> Tensor:
        """``log p(x | task)`` of every row of ``x`` and every task: its fits' likelihoods (a
        component's weighted by its share of its class) summed over the task's classes, equal
        weights (rows x tasks)."""
        fits, task, output = self._stack()
        per_row = self._fit_log_likelihoods(x, fits)
        return torch.stack([torch.logsumexp(per_row[:, task == k], 1) - math.log(len(output[task == k].unique()))
                            for k in range(self.n_views)], 1)

    def _fit_log_likelihoods(self, x: Tensor, fits: dict[str, Tensor]) -> Tensor:
        """``x``'s log-likelihood under every stacked fit (rows x fits): per (task, class), or
        for a mixture score per component, on the square roots, weighted by its class share."""
        if self.score in MIXTURE_SCORES:
            return ppca_log_likelihoods(sqrt_inputs(x, self.in_shift), fits) + fits["log_weight"]
        return ppca_log_likelihoods(x, fits)

    def _predict_pairs(self, x: Tensor, views: Views) -> Tensor:
        parts, task, label = self._pair_parts(x, views)
        pairs = _pair_scores(parts, self.weights)
        self.last_views = task[pairs.argmax(1)].cpu()
        out = torch.full((len(x), self.width()), -math.inf, device=x.device)
        return out.scatter_reduce(1, label.unsqueeze(0).expand_as(pairs), pairs, reduce="amax")

    def _view_score(self, views: Views, x: Tensor, logits: Tensor, k: int) -> Tensor:
        if self.score == "feature_density":
            f = views.features(k, x).flatten(1)
            means, var = getattr(self, f"feat_mean__{k}"), getattr(self, f"feat_var__{k}")
            return torch.stack([_gaussian_loglik(f, m, var) for m in means], 1).max(1).values
        mu, sd = self.history["calibration"][k]
        return -(entropy(logits) - mu) / sd


def _pair_scores(parts: tuple[Tensor, ...], weights: tuple[float, float]) -> Tensor:
    """The pairs' scores: the input log-likelihood, plus the head's log-softmax and the features'
    log-likelihood (when there are features and their weight is not 0) weighted."""
    density, head, *evidence = parts
    scores = density + weights[0] * head
    return scores + weights[1] * evidence[0] if evidence and weights[1] else scores


PPCA_PARTS = ("mean", "basis", "eig", "noise")  # of a stack of PPCA fits, one per class


def fit_class_ppca(data: SplitData, samples: int, rank: int, floor: float, device: torch.device,
                   pooled: bool = False) -> tuple[list[int], dict[str, Tensor]]:
    """One probabilistic PCA (:func:`_ppca`) per class of ``data`` (a task's split, labels as
    the scenario gives them), fitted on its first ``samples`` inputs, flattened: the classes,
    sorted, and the fits stacked in that order (``mean`` C x D, ``basis`` C x D x rank,
    ``eig`` C x rank, ``noise`` C). ``pooled``: one fit of all the inputs, as if of one class
    ``0`` (the ``pooled_density`` score). The input-density task inference and ``--method density``
    share it.

    Example:
        >>> from anpyc.data.taskdata import TaskData
        >>> data = TaskData(torch.randn(40, 5), torch.arange(40) % 2, 0)
        >>> classes, fits = fit_class_ppca(data, 2000, rank=2, floor=1e-2, device=torch.device("cpu"))
        >>> classes, fits["basis"].shape
        ([0, 1], torch.Size([2, 5, 2]))
    """
    x, y = read_inputs(data, samples, device)
    return class_ppca(x, torch.zeros_like(y) if pooled else y, rank, floor)


def class_ppca(x: Tensor, y: Tensor, rank: int, floor: float) -> tuple[list[int], dict[str, Tensor]]:
    """One probabilistic PCA per class of ``y`` of its rows of ``x`` (flattened): the classes,
    sorted, and the fits stacked in that order (as :func:`fit_class_ppca`'s)."""
    x = x.flatten(1)
    classes = sorted(set(y.tolist()))
    fits = [_ppca(x[y == c], rank, floor) for c in classes]
    return classes, {name: torch.stack([f[i] for f in fits]).float() for i, name in enumerate(PPCA_PARTS)}


def read_inputs(data: SplitData, samples: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first ``samples`` inputs of ``data`` (a task's split), flattened, in float32, and
    their labels."""
    xs, ys = zip(*[(x.flatten(1), y) for x, y, _ in iterate(data, 500, limit=samples)], strict=True)
    return torch.cat(xs).float().to(device), torch.cat(ys).to(device)


def sqrt_inputs(x: Tensor, shift: Tensor | float) -> Tensor:
    """``sqrt(x - shift)`` (clamped at 0), flattened: the square root of pixel intensities
    (``shift`` the value of a black pixel, for standardised inputs), which spreads the dark
    values a Gaussian fits badly and squeezes the bright ones (a variance-stabilising
    transform of counts, Anscombe 1948)."""
    return (x.flatten(1) - shift).clamp_min(0).sqrt()


def fit_class_mixtures(x: Tensor, y: Tensor, rank: int, floor: float, components: int,
                       generator: torch.Generator | None = None) -> tuple[list[int], dict[str, Tensor]]:
    """Per class of ``y`` (sorted), a mixture of ``components`` probabilistic PCA models of its
    rows of ``x`` (Tipping & Bishop 1999, "Mixtures of probabilistic principal component
    analyzers"), each rank ``rank``: the class's rows split by k-means (centres drawn with
    ``generator``), then hard EM (each row to the component that explains it best, the
    components refitted) while no component falls under ``rank + 2`` rows. A class with too
    few rows for that gets fewer components (one, at least). Returns the class of every fitted
    component and their stack (``PPCA_PARTS`` as :func:`fit_class_ppca`'s, plus
    ``log_weight``: the log of the component's share of its class's rows).

    Example:
        >>> x, y = torch.randn(400, 6), torch.arange(400) % 2
        >>> labels, fits = fit_class_mixtures(x, y, rank=2, floor=1e-2, components=3)
        >>> labels, fits["log_weight"].shape
        ([0, 0, 0, 1, 1, 1], torch.Size([6]))
    """
    labels, fits, weights = [], [], []
    for c in sorted(set(y.tolist())):
        rows = x[y == c]
        parts = _mixture_parts(rows, min(components, max(len(rows) // (rank + 2), 1)), rank, floor, generator)
        for part in parts:
            labels.append(c)
            fits.append(_ppca(rows[part], rank, floor))
            weights.append(math.log(len(part) / len(rows)))
    stack = {name: torch.stack([f[i] for f in fits]).float() for i, name in enumerate(PPCA_PARTS)}
    return labels, {**stack, "log_weight": torch.tensor(weights, device=x.device)}


def _mixture_parts(x: Tensor, k: int, rank: int, floor: float, generator: torch.Generator | None,
                   iterations: int = 10) -> list[Tensor]:
    """The row indices of each of (at most) ``k`` components of ``x``: k-means from ``k`` rows
    drawn at random (a cluster of fewer than ``rank + 2`` rows is dropped, its rows given to
    the nearest other centre), then hard EM under rank-``rank`` PPCA models while assignments
    change and every component keeps ``rank + 2`` rows or more."""
    if k == 1:
        return [torch.arange(len(x), device=x.device)]
    centres = x[torch.randperm(len(x), generator=generator)[:k].to(x.device)]
    for _ in range(iterations):
        assign = torch.cdist(x, centres).argmin(1)
        centres = torch.stack([x[assign == j].mean(0) if bool((assign == j).any()) else centres[j] for j in range(k)])
    centres = centres[torch.bincount(torch.cdist(x, centres).argmin(1), minlength=k) >= rank + 2]
    if len(centres) <= 1:
        return [torch.arange(len(x), device=x.device)]
    assign = torch.cdist(x, centres).argmin(1)
    for _ in range(iterations):
        counts = torch.bincount(assign, minlength=len(centres))
        fits = [_ppca(x[assign == j], rank, floor) for j in range(len(centres))]
        stack = {name: torch.stack([f[i] for f in fits]) for i, name in enumerate(PPCA_PARTS)}
        new = (ppca_log_likelihoods(x, stack) + (counts.float() / len(x)).log()).argmax(1)
        if bool((new == assign).all()) or int(torch.bincount(new, minlength=len(centres)).min()) < rank + 2:
            break
        assign = new
    return [(assign == j).nonzero(as_tuple=True)[0] for j in range(len(centres))]


def sample_ppca(fits: dict[str, Tensor], rows: Tensor, generator: torch.Generator) -> Tensor:
    """One draw from each fit ``rows[i]`` of a stack (:func:`fit_class_ppca`): ``m + U (z *
    sqrt(eig - noise))``, ``z`` standard normal drawn with ``generator`` (on the CPU, so a
    draw does not depend on the device). Tipping & Bishop's generative model without its
    isotropic noise: the principal directions' variation only (the noise would add
    ``noise`` per pixel of static, not an input's shape).

    Example:
        >>> fits = {"mean": torch.zeros(2, 4), "basis": torch.eye(4)[:, :1].expand(2, 4, 1),
        ...         "eig": torch.ones(2, 1), "noise": torch.zeros(2)}
        >>> sample_ppca(fits, torch.tensor([0, 1, 1]), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4])
    """
    mean, basis, eig, noise = (fits[name] for name in PPCA_PARTS)
    z = torch.randn(len(rows), eig.shape[1], generator=generator).to(mean.device)
    scale = (eig[rows] - noise[rows].unsqueeze(1)).clamp_min(0).sqrt()
    return mean[rows] + torch.einsum("ndr,nr->nd", basis[rows], z * scale)


def ppca_log_likelihoods(x: Tensor, fits: dict[str, Tensor]) -> Tensor:
    """``log p(x | class)`` of every row of ``x`` (flattened) under every fit of a stack
    (:func:`fit_class_ppca`; covariance ``U diag(eig) U^T + noise (I - U U^T)``): rows x
    classes. Every class at once, in two matrix products: ``|x - m|^2`` expanded as
    ``|x|^2 - 2 x.m + |m|^2`` and ``(x - m) U`` as ``x U - m U`` (3-4 times faster than a loop
    over the classes; equal to about 1e-6 relative in float32)."""
    x = x.flatten(1)
    fits = fits if "flat_basis" in fits else prepare_ppca(fits)
    eig, noise = fits["eig"], fits["noise"]
    k, rank = eig.shape
    sq = (x * x).sum(1, keepdim=True) - 2 * x @ fits["mean"].T + fits["mean_sq"]  # rows x classes: |x - m|^2
    z = (x @ fits["flat_basis"]).view(len(x), k, rank) - fits["mean_basis"]
    zz = z * z
    outside = (sq - zz.sum(2)).clamp_min(0)  # the residual's part outside the principal directions
    maha = (zz / eig).sum(2) + outside / noise
    return -0.5 * (maha + fits["logdet"] + x.shape[1] * math.log(2 * math.pi))


def prepare_ppca(fits: dict[str, Tensor]) -> dict[str, Tensor]:
    """A stack of PPCA fits with what :func:`ppca_log_likelihoods` derives from them and not
    from the inputs (the bases side by side, ``m U``, ``|m|^2``, the log-determinants),
    computed once: pass the result to answer many batches."""
    mean, basis, eig, noise = (fits[name] for name in PPCA_PARTS)
    k, d, rank = basis.shape
    return {**fits, "flat_basis": basis.permute(1, 0, 2).reshape(d, k * rank), "mean_sq": (mean * mean).sum(1),
            "mean_basis": torch.einsum("kd,kdr->kr", mean, basis), "logdet": eig.log().sum(1) + (d - rank) * noise.log()}


def _ppca(x: Tensor, rank: int, floor: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Maximum-likelihood probabilistic PCA of the rows of ``x``: mean, top-``rank``
    eigenvectors and eigenvalues of the covariance, and the isotropic noise variance (the mean
    of the other eigenvalues), floored so that a constant pixel does not give infinite
    density. With fewer rows than dimensions (and more than ``rank``) the eigenvectors come
    from the rows' Gram matrix (:func:`_top_eigen_from_rows`): the same decomposition at a
    fraction of the cost (200 rows of 784 pixels: about 20x less)."""
    mean = x.mean(0)
    centred = x - mean
    n, d = centred.shape
    top = _top_eigen_from_rows(centred, rank) if rank < n < d else None
    if top is not None:
        eig, vec = top
        rest = ((centred * centred).sum() / n - eig.sum()).clamp_min(0)  # trace minus the top eigenvalues
        noise = (rest / (d - rank)).clamp_min(floor)
        return mean, vec, torch.maximum(eig, noise), noise
    cov = centred.T @ centred / max(n, 1)
    eig, vec = _eigh(cov)  # ascending
    eig, vec = eig.flip(0).clamp_min(0), vec.flip(1)
    noise = eig[rank:].mean().clamp_min(floor) if rank < len(eig) else torch.tensor(floor, dtype=x.dtype, device=x.device)
    return mean, vec[:, :rank], torch.maximum(eig[:rank], noise), noise


def _top_eigen_from_rows(centred: Tensor, rank: int) -> tuple[Tensor, Tensor] | None:
    """The top ``rank`` eigenvalues (descending) and eigenvectors (columns) of the covariance
    ``C^T C / n`` of ``n`` centred rows, from the ``n x n`` Gram matrix ``C C^T / n``: same
    non-zero eigenvalues, eigenvectors ``C^T u / sqrt(n lambda)``. ``None`` when an eigenvalue
    among the top ones is too small for that (duplicate rows): the caller decomposes the
    covariance instead."""
    n = len(centred)
    eig, u = _eigh(centred @ centred.T / n)  # ascending
    eig, u = eig.flip(0)[:rank], u.flip(1)[:, :rank]
    if not bool((eig > 1e-6 * eig[0].clamp_min(1e-30)).all()):
        return None
    vec = centred.T @ u / (n * eig).sqrt()
    return eig, vec


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

