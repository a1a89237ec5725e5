"""Replay drawn from the density model, for any method that trains a network:
``density_replay=K`` (every method accepts it among its parameters, with ``density_weight``;
``RunConfig.density_replay``).

:class:`DensityReplayed` wraps a method and gives it the ``density`` method's model of the
inputs (:class:`anpyc.methods.density.Density`: per class a mixture of probabilistic PCAs,
here of the square roots of the intensities, 8 components, rank 20, fitted on 2000 training
inputs per task: the form ``anpyc tune --method density`` chose on validation on both
class-incremental protocols). It does two things with it, and stores no example:

* **Training.** From the second task on, every training step also trains the network on ``K``
  inputs drawn from the models of the classes seen in earlier tasks: a (task, label) drawn
  uniformly, one of its components by its weight, then ``m + U (z * sqrt(eig - noise))``
  mapped back from the square roots (:func:`anpyc.kernels.inference.sample_ppca`) and clipped
  to the range of the inputs the fits read (a Gaussian's tails would give pixels several times
  brighter than white), each labelled with its class and task and trained on under its own head (cross-entropy, added
  to the method's own penalty). So a one-head network sees the old classes beside the new
  ones, which its own evidence needs to tell them apart (a head trained on one task never
  sees another's classes). The drawn inputs count as training passes, as a replay buffer's
  do: the method gets ``passes / (1 + K / batch_size)`` of the budget for its own epochs
  (its retraining included: a retraining step draws too; the first task, with nothing to
  replay, spends that share of its budget only, as ER with ``buffer_update: task_end``).
* **Answering.** ``argmax_c log p(x | c) + density_weight * log p_net(c | x)``: the density
  model's label log-likelihood (:meth:`Density.predict`, the components of a label summed)
  plus the network's log-probabilities, weighted. ``density_weight`` is chosen on validation
  (a protocol's choice, ``anpyc.experiments.protocols.Protocol.density_replay``).

The density model's fits read inputs without training on them: they are recorded as
``decision_passes``, not as training passes. A ``<method>+density-replay`` row differs from
the ``<method>`` row by this module alone, and the ``density`` row is the same model without
the network: the credit rule's rows. Methods that train no network refuse it, and so does task
inference (one of the two per run).

Example:
    >>> from anpyc.methods import create
    >>> m = DensityReplayed(create("ewc"), 10, 100.0)
    >>> m.name, m.density.config.components, m.epochs_for_budget(1.0, batch_size=10)
    ('ewc', 8, 0.5)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from anpyc.errors import ConfigError
from anpyc.kernels.inference import PPCA_PARTS, read_inputs, sample_ppca
from anpyc.methods.base import Method, MethodWrapper
from anpyc.methods.density import Density, DensityConfig
from anpyc.methods.replay import replay_ce
from anpyc.scenario import HookContext

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel

_REPLAY_SALT = 0xD5  # the drawn inputs: a stream of random draws of their own, apart from the method's
#: the density model replayed from and answering with (see the module's docstring)
REPLAY_DENSITY = DensityConfig(components=8, transform="sqrt")


class DensityReplayed(MethodWrapper):
    """``inner`` trained with ``samples_per_step`` inputs per step drawn from the class
    density model, answering with the model's and the network's evidence together.

    State: ``inner.*``, ``density.*`` (the fits), ``rng`` (the draws' generator: a run
    resumed mid-task draws the same inputs), ``input_range`` and ``current_task``."""

    def __init__(self, inner: Method, samples_per_step: int, weight: float) -> None:
        if not inner.trains_network:
            raise ConfigError(f"density_replay: {inner.name} trains no network (it is a model of the inputs "
                              "already); replay from the density model is for methods that train one")
        if samples_per_step < 1 or weight < 0:
            raise ConfigError(f"density_replay must be >= 1 and density_weight >= 0, got {samples_per_step} "
                              f"and {weight}")
        super().__init__(inner)
        self.density = Density(REPLAY_DENSITY)
        self.samples_per_step, self.weight = int(samples_per_step), float(weight)
        self.register_buffer("rng", torch.Generator().manual_seed(0).get_state())
        self.register_buffer("current_task", torch.zeros((), dtype=torch.long))
        # the smallest and largest input value the fits read: a drawn input is clipped to them
        self.register_buffer("input_range", torch.tensor([math.inf, -math.inf]))

    # ------------------------------------------------------------------ hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.rng.copy_(ctx.generator(_REPLAY_SALT).get_state())
        self.current_task.fill_(ctx.task)
        self.inner.before_task(model, task, ctx)

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        """The method's own penalty plus the cross-entropy of inputs drawn from the density
        model of the earlier tasks' classes (none during the first task)."""
        own = self.inner.penalty(model, x, y, t)
        drawn = self.draw(self.samples_per_step)
        if drawn is None:
            return own
        xs, ys, ts = drawn
        self.count_extra_examples(int(self.current_task), len(ys))
        loss = replay_ce(model, xs.view(len(xs), *x.shape[1:]).to(x.dtype), ys, ts)
        return loss if own is None else own + loss

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """The method's own end of task, then the task's classes are modelled."""
        self.inner.after_task(model, task, ctx, retrain)
        x, y = read_inputs(task.train, self.density.config.samples, next(model.parameters()).device)
        self.density.fit(x, y, ctx)
        self.count_decision_examples(ctx.task, len(x))  # inputs read, not trained on
        self.input_range.copy_(torch.stack([torch.minimum(self.input_range[0], x.min()),
                                            torch.maximum(self.input_range[1], x.max())]).to(self.input_range))

    def predict(self, model: ContinualModel, x: Tensor, task_id: int | None) -> Tensor:
        """``log p(x | label) + weight * log p_net(label | x)`` over the labels the density
        model has; the network's logits alone where it has none of the head's labels yet."""
        logits = self.inner.predict(model, x, task_id)
        if not self.density.n_components:
            return logits
        evidence = self.density.predict(model, x, task_id)
        if evidence.shape[1] != logits.shape[1]:  # the head has labels not modelled yet (mid-task)
            return logits
        return evidence + self.weight * F.log_softmax(logits.float(), 1)

    def summary(self) -> dict:
        return {**self.inner.summary(), "density_replay_model": {
            "samples_per_step": self.samples_per_step, "weight": self.weight,
            "components": self.density.n_components, "replayed": dict(self.history.get("extra_examples", {}))}}

    # ------------------------------------------------------------------ the draws
    @torch.no_grad()
    def draw(self, n: int) -> tuple[Tensor, Tensor, Tensor] | None:
        """``n`` inputs drawn from the models of the earlier tasks' classes, with their
        labels and tasks (``None`` before any earlier task)."""
        d = self.density
        if not d.n_components:
            return None
        earlier = d.component_task < int(self.current_task)
        if not bool(earlier.any()):
            return None
        rows = earlier.nonzero(as_tuple=True)[0]
        tasks, labels = d.component_task[rows], d.component_label[rows]
        group = (tasks * (int(labels.max()) + 1) + labels).cpu()  # a (task, label) pair
        groups = group.unique()
        g = torch.Generator()
        g.set_state(self.rng.cpu())
        picked = groups[torch.randint(len(groups), (n,), generator=g)]
        weight = d.ppca_log_weight[rows].cpu().exp()
        probs = (group.unsqueeze(0) == picked.unsqueeze(1)).float() * weight  # each draw: its pair's components
        chosen = rows[torch.multinomial(probs, 1, generator=g).squeeze(1).to(rows.device)]
        fits = {part: getattr(d, f"ppca_{part}") for part in PPCA_PARTS}
        xs = sample_ppca(fits, chosen, g)
        self.rng.copy_(g.get_state())
        if d.config.transform == "sqrt":  # back from the square roots of the intensities
            xs = xs.clamp_min(0).square() + d.input_shift
        # a Gaussian's tails go past what an input can be (pixels 5 times brighter than white): clipped
        xs = xs.clamp(self.input_range[0].item(), self.input_range[1].item())
        return xs, d.component_label[chosen], d.component_task[chosen]

    # ------------------------------------------------------------------ budget
    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """The method's own main-phase epochs for ``passes / (1 + samples_per_step /
        batch_size)``: every step it takes, a retraining one too, also trains on the drawn
        inputs. Exact for a method whose steps train on the batch alone; one that replays
        examples of its own (ER, DER++) spends less than the budget (the two shares multiply)."""
        if batch_size is None:
            raise ValueError(f"{self.name}: density_replay needs the training batch size")
        return self.inner.epochs_for_budget(passes / (1.0 + self.samples_per_step / batch_size), batch_size)

    def extra_repr(self) -> str:
        return f"density_replay={self.samples_per_step}, density_weight={self.weight}"
