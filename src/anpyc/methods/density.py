"""Classifiers of the inputs alone, no network: ``density`` and ``slda``.

Both keep, for every class of every task seen (a *component*: the task, the class's label
in the scenario's label space), statistics of that class's training inputs, and answer a
test input with the label whose components explain it best. They train no network: the
loop skips every training pass for them (``trains_network = False``), the model it builds
is never used, and ``passes`` in ``metrics.json`` counts the training inputs their
statistics read. They are the rows that tell what a network adds over a model of the
inputs, and a memory of the inputs (class means, principal directions, a covariance) that
``method_state_mb`` shows beside a replay buffer's.

* ``density``: the per-class probabilistic-PCA generative classifier (Tipping & Bishop 1999):
  one PPCA model per component (rank ``rank``, the rest of the variance isotropic), fitted on
  the task's first ``samples`` training inputs, by default the same model and code as the
  ``input_density`` task inference (:func:`anpyc.kernels.inference.fit_class_mixtures`).
  Options: ``components`` > 1 makes each class a mixture of that many PPCA models (Tipping &
  Bishop's mixtures of PPCA, fitted by k-means and hard EM from the run's seed), and
  ``transform: sqrt`` models the square root of the pixel intensities
  (:func:`anpyc.kernels.inference.sqrt_inputs`; the black level is the first task's smallest
  input). Both default to off; the class-incremental protocols' presets set them, chosen on
  validation (``presets/grids.yaml``), and their task inference (``mixture_density``; on split
  MNIST ``mixture_combined``, the heads' evidence added) uses the same form.
* ``slda``: streaming linear discriminant analysis (Hayes & Kanan 2020, "Lifelong Machine
  Learning with Deep Streaming Linear Discriminant Analysis"): one mean per component and one
  covariance shared by all, updated batch by batch in one pass over each task's training
  inputs, and the linear discriminant of the shrunk covariance
  ``Lambda = ((1 - shrinkage) Sigma + shrinkage I)^-1``: score ``mu_k Lambda x - mu_k Lambda
  mu_k / 2``. Here on the raw (standardised) inputs: there is no network to give features.
  The pass keeps sufficient statistics (per-class sums and counts, the sum of ``x x^T``, in
  float64) and adds the task's within-class scatter to the shared one at its end: the exact
  pooled within-class covariance, which the paper's per-example update approximates (it
  weighs each new example's scatter by the count of all examples, not of its class).

A component's score is ``log p(x | component)`` up to a constant shared by all components
(exactly, for ``density``; for ``slda`` the shared covariance's terms cancel). The logit of a
label is the log of the sum of its components' likelihoods, equal weights (priors) for all:
the posterior of the label with the task it belongs to marginalised. In the class scenario
every label has one component; in the domain scenario a label has one per task (its
permutation, say). With a task id (task scenario) only that task's components answer. Equal
priors, not the training frequencies: the benchmarks' classes are balanced to a few per cent
(log-prior differences of a few hundredths of a nat, against log-likelihood gaps of tens of
nats on images), and the task inference this mirrors uses equal weights too. Neither method
has a tuning grid by default: ``rank``, ``samples`` and ``shrinkage`` are fixed at the task
inference's and the paper's values, chosen before any run, like fine-tune and joint; where a
protocol gives ``density`` a grid (``components`` x ``transform``), its preset is chosen on
validation like every other method's.

Without a task id, the task of the best component is the inferred task
(:meth:`inferred_tasks`; the loop records ``task_inference_acc``).

Example:
    >>> from anpyc.methods import create
    >>> create("density").config.rank, create("slda").config.shrinkage, create("slda").trains_network
    (20, 0.0001, False)
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from anpyc.data.batches import iterate
from anpyc.kernels.inference import (
    PPCA_PARTS,
    fit_class_mixtures,
    ppca_log_likelihoods,
    read_inputs,
    sqrt_inputs,
)
from anpyc.methods.base import Method
from anpyc.methods.registry import register

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext


class InputClassifier(Method):
    """Base of ``density`` and ``slda``: components (task, label) scored on the inputs,
    fitted in :meth:`after_task`, which the loop calls with no training before it.

    State: ``component_task`` and ``component_label`` (one entry per component, in the order
    they were fitted) and the subclass's statistics, all buffers, created by the first task
    (their sizes grow with the tasks; :meth:`load_state_dict` creates them)."""

    trains_network = False
    tags = frozenset({"no-network"})

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.last_tasks: Tensor | None = None  # of the last predict without a task id (not state)

    @property
    def n_components(self) -> int:
        tasks = getattr(self, "component_task", None)
        return 0 if tasks is None else len(tasks)

    def component_scores(self, x: Tensor) -> Tensor:
        """``log p(x | component)`` up to a constant shared by all components: rows x components."""
        raise NotImplementedError

    def _append(self, name: str, value: Tensor) -> None:
        """Grow buffer ``name`` along its first dimension (create it the first time)."""
        old = getattr(self, name, None)
        if old is None:
            self.register_buffer(name, value.detach().clone())
        else:
            setattr(self, name, torch.cat([old, value.to(old)]))

    def _add_components(self, task: int, labels: list[int], device: torch.device) -> None:
        self._append("component_task", torch.full((len(labels),), task, dtype=torch.long, device=device))
        self._append("component_label", torch.tensor(labels, dtype=torch.long, device=device))

    @torch.no_grad()
    def predict(self, model: ContinualModel, x: Tensor, task_id: int | None) -> Tensor:
        """Label logits (every label seen; ``-inf`` for labels with no eligible component):
        the log of the summed likelihoods of the label's components, of task ``task_id``'s
        only when given. The model is not used."""
        self.last_tasks = None
        if not self.n_components:  # nothing fitted yet: no preference
            return torch.zeros(len(x), 1, device=x.device)
        labels, tasks = self.component_label, self.component_task
        width = int(labels.max()) + 1
        eligible = torch.ones_like(tasks, dtype=torch.bool) if task_id is None else tasks == task_id
        if not bool(eligible.any()):  # nothing fitted yet for this task: no preference
            return torch.zeros(len(x), width, device=x.device)
        scores = self.component_scores(x.flatten(1).float())[:, eligible]
        labels, tasks = labels[eligible], tasks[eligible]
        if task_id is None:
            self.last_tasks = tasks[scores.argmax(1)].cpu()
        logits = torch.full((len(x), width), -math.inf, device=scores.device)
        for label in labels.unique().tolist():
            logits[:, label] = torch.logsumexp(scores[:, labels == label], 1)
        return logits

    def inferred_tasks(self) -> Tensor | None:
        return self.last_tasks

    def summary(self) -> dict:
        # the network the runner builds is never used: it holds none of the method's parameters
        # (they are statistics, in method_state_mb), so its sizes are not reported as the method's
        return {"trains_network": False, "components": self.n_components, "n_params": 0, "n_shared_params": 0}

    def _device(self, model: ContinualModel) -> torch.device:
        return next(model.parameters()).device


#: what the density model sees of an input: the input itself, or the square root of its intensities
TRANSFORMS = ("none", "sqrt")


@dataclasses.dataclass(frozen=True)
class DensityConfig:
    """``rank``: principal directions per class (the rest of the variance is isotropic);
    ``samples``: training inputs per task the fits read (the first ones of its shuffled
    training split); ``var_floor``: smallest noise variance (a constant pixel must not give
    an infinite density); ``components``: PPCA models per class (a mixture, equal to one
    model at 1); ``transform``: ``none`` (the inputs) or ``sqrt`` (the square root of their
    intensities above the black level). The defaults are those of the ``input_density`` task
    inference."""

    rank: int = 20
    samples: int = 2000
    var_floor: float = 1e-2
    components: int = 1
    transform: str = "none"

    def __post_init__(self) -> None:
        if self.rank < 0 or self.samples < 1 or self.var_floor <= 0 or self.components < 1:
            raise ValueError("need rank >= 0, samples >= 1, var_floor > 0, components >= 1")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {self.transform!r}")


@register
class Density(InputClassifier):
    """The per-class probabilistic-PCA generative classifier of the inputs, no network.

    State (buffers, one row per component): ``ppca_mean``, ``ppca_basis`` (principal
    directions), ``ppca_eig`` (their variances), ``ppca_noise`` (the isotropic variance),
    ``ppca_log_weight`` (the component's share of its class, log); with ``transform: sqrt``
    also ``input_shift`` (the black level)."""

    name = "density"
    config_cls = DensityConfig

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        x, y = read_inputs(task.train, self.config.samples, self._device(model))
        self.fit(x, y, ctx)
        # the inputs the fits read: the task's "passes" (no example is trained on)
        self.count_extra_examples(ctx.task, len(x))

    def fit(self, x: Tensor, y: Tensor, ctx: HookContext) -> None:
        """Add the components of task ``ctx.task``'s classes, fitted on its inputs ``x``
        (flattened, as :func:`anpyc.kernels.inference.read_inputs` gives them) labelled ``y``."""
        cfg = self.config
        if cfg.transform == "sqrt" and getattr(self, "input_shift", None) is None:
            self.register_buffer("input_shift", x.min())  # a black pixel, as the first task's inputs show it
        labels, fits = fit_class_mixtures(self._transformed(x), y, cfg.rank, cfg.var_floor, cfg.components,
                                          ctx.generator(0))
        for part in (*PPCA_PARTS, "log_weight"):
            self._append(f"ppca_{part}", fits[part])
        self._add_components(ctx.task, labels, self.ppca_mean.device)

    def _transformed(self, x: Tensor) -> Tensor:
        return sqrt_inputs(x, self.input_shift) if self.config.transform == "sqrt" else x

    def component_scores(self, x: Tensor) -> Tensor:
        fits = {part: getattr(self, f"ppca_{part}") for part in PPCA_PARTS}
        scores = ppca_log_likelihoods(self._transformed(x), fits)
        weight = getattr(self, "ppca_log_weight", None)  # absent from states saved before mixtures
        return scores if weight is None else scores + weight


@dataclasses.dataclass(frozen=True)
class SLDAConfig:
    """``shrinkage``: the share of the identity in the covariance that is inverted (the
    paper's default, 1e-4); ``batch_size``: inputs per streaming update (the result does not
    depend on it)."""

    shrinkage: float = 1e-4
    batch_size: int = 500

    def __post_init__(self) -> None:
        if not 0 < self.shrinkage <= 1 or self.batch_size < 1:
            raise ValueError("need 0 < shrinkage <= 1 and batch_size >= 1")


@register
class SLDA(InputClassifier):
    """Streaming linear discriminant analysis on the inputs, no network.

    State (buffers): per component ``slda_mean``; shared ``slda_scatter`` (the within-class
    scatter, D x D) and ``slda_n`` (the examples in it); the discriminant ``slda_weight`` and
    ``slda_bias``, recomputed from them after each task. (A component's sum and count are
    needed only while its task streams: no later task updates it.)"""

    name = "slda"
    config_cls = SLDAConfig

    @torch.no_grad()
    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        device = self._device(model)
        sums: dict[int, Tensor] = {}
        counts: dict[int, int] = {}
        moment: Tensor | None = None  # sum of x x^T over the task's inputs
        for x, y, _ in iterate(task.train, self.config.batch_size):  # one pass, batch by batch
            x, y = x.flatten(1).double().to(device), y.to(device)
            moment = x.T @ x if moment is None else moment.addmm_(x.T, x)
            for c in y.unique().tolist():
                rows = x[y == c]
                sums[c] = sums[c] + rows.sum(0) if c in sums else rows.sum(0)
                counts[c] = counts.get(c, 0) + len(rows)
        classes = sorted(sums)
        means = torch.stack([sums[c] / counts[c] for c in classes])
        # the task's within-class scatter: sum x x^T - sum_c n_c mu_c mu_c^T (float64: no cancellation to fear)
        scatter = moment - (means.T * torch.tensor([counts[c] for c in classes], dtype=means.dtype, device=device)) @ means
        self._append("slda_mean", means.float())
        if getattr(self, "slda_scatter", None) is None:
            self.register_buffer("slda_scatter", torch.zeros_like(scatter, dtype=torch.float32))
            self.register_buffer("slda_n", torch.zeros((), dtype=torch.long, device=device))
        self.slda_scatter += scatter.float()
        self.slda_n += sum(counts.values())
        self._add_components(ctx.task, classes, device)
        self._discriminant()
        self.count_extra_examples(ctx.task, len(task.train))  # one pass over the task's inputs

    def _discriminant(self) -> None:
        """``W = mu Lambda``, ``b = -mu Lambda mu^T / 2`` from the current statistics (float64)."""
        eps = self.config.shrinkage
        cov = self.slda_scatter.double() / max(int(self.slda_n), 1)
        shrunk = (1 - eps) * cov + eps * torch.eye(len(cov), dtype=cov.dtype, device=cov.device)
        mu = self.slda_mean.double()
        weight = torch.linalg.solve(shrunk, mu.T).T  # Lambda is symmetric: mu Lambda
        bias = -0.5 * (weight * mu).sum(1)
        for name, value in (("slda_weight", weight.float()), ("slda_bias", bias.float())):
            if getattr(self, name, None) is None:
                self.register_buffer(name, value)
            else:
                setattr(self, name, value)

    def component_scores(self, x: Tensor) -> Tensor:
        return x @ self.slda_weight.T + self.slda_bias
