"""HAT: hard attention to the task (Serra, Suris, Miron & Karatzoglou, ICML 2018).

Every task ``t`` learns, for every layer ``l`` of the body, an embedding ``e_t^l`` with one
value per unit (a Linear layer's output, a Conv2d layer's output channel). The layer's
output is gated by the attention ``a_t^l = sigmoid(s * e_t^l)``:

* **Where the gate sits.** A forward hook on each Linear / Conv2d of the body multiplies its
  output by the mask (after the batch norm that follows a conv, when there is one: gating
  before it would be normalised away). The reference code gates after ReLU, dropout and max
  pooling; a positive per-unit factor commutes with all three, so the outputs are the same.
  The heads are not gated. Only chains of Linear / Conv2d layers are supported (``mlp``,
  ``cnn``); ``resnet18``'s residual connections are refused with a :class:`ConfigError`.
* **Annealing.** In training, ``s`` goes from ``1/s_max`` to ``s_max`` over the batches of
  every epoch: ``s = 1/s_max + (s_max - 1/s_max) (b - 1) / (B - 1)`` for batch ``b`` of ``B``
  (the paper's formula; ``B = ceil(len(task.train) / batch_size)``; the batch counter is a
  buffer, so a resumed run continues the schedule). ``anneal_cycles=k`` anneals over each of
  ``k`` equal runs of the epoch's batches instead (``k=1``: the paper). Why: once ``|s e|``
  passes ``thres_cosh`` an embedding's (compensated) gradient vanishes, so the units a task
  takes are settled in the first ~15% of each annealing; the paper trains up to 200 epochs
  and re-anneals every epoch, but with one pass per task a single annealing settles the units
  before the task is learnt (docs/baselines.md). At evaluation the mask is binary,
  ``e > 0`` (``s -> infinity``; the paper evaluates with ``s = s_max``, which is binary up
  to units with ``|e| < ~0.01``), so the weights an old task uses are exactly the frozen ones.
* **Attention regulariser** (the ``penalty``): ``c * sum a_t (1 - a_<t) / sum (1 - a_<t)``
  over every unit of every layer, ``a_<t`` the element-wise max of the earlier tasks' binary
  masks. Units earlier tasks use are free to reuse; the first task pays for every unit it
  attends to (a sparsity term), as in the paper.
* **Gradients** (``before_step``): a weight from unit ``j`` (layer ``l-1``) to unit ``i``
  (layer ``l``) is frozen when ``min(a_<t,i^l, a_<t,j^(l-1)) = 1`` (the first layer's inputs
  are not gated: ``a_<t,i`` alone; a conv layer per output/input channel; a Linear layer
  after convs per channel of its flattened input). Biases and batch-norm scale and shift
  follow their unit. The *update* is masked too (:class:`anpyc.kernels.masking.FrozenEntries`) so
  momentum and weight decay cannot move frozen weights: old tasks' outputs stay
  bit-identical. Embedding gradients are compensated as in the paper and its code:
  ``g *= s_max / s * (cosh(clamp(s e, -thres_cosh, thres_cosh)) + 1) / (cosh(e) + 1)``; after
  the step embeddings are clamped to ``[-thres_emb, thres_emb]`` (reference code: 6). The
  paper's gradient clipping (norm 10000) is the run's ``train.grad_clip``.
* **Embeddings** are the method's own ``nn.Parameter`` (``embeddings.t<k>_l<l>``), drawn
  from N(0, 1) (``nn.Embedding``'s initialisation in the reference code) with
  ``ctx.generator`` in ``before_task``; the loop's optimizer trains them. A finished task's
  embeddings stop learning (``requires_grad`` off) and its binary masks are kept as buffers.
  Loading a ``state_dict`` creates the embeddings it holds.

Without a task id at test time (domain and class scenarios) the current task's masks answer,
unless the task is inferred (``task_inference``, any method: :mod:`anpyc.methods.task_inference`,
which picks each input's task and its masks). Defaults: the paper's
``s_max=400``, ``thres_cosh=50`` and ``thres_emb=6``; ``c=4`` and ``anneal_cycles=8`` chosen
on validation on the two 10-task permuted-MNIST protocols at one pass per task (docs/benchmarks/baselines-defaults; the
paper's ``c=0.75`` and one annealing per epoch are for long training).

Example:
    >>> from anpyc.methods import create
    >>> hat = create("hat", {"c": 1.5})
    >>> hat.config.s_max, hat.config.c
    (400.0, 1.5)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from anpyc.errors import ConfigError
from anpyc.kernels.masking import FrozenEntries
from anpyc.methods.base import Method
from anpyc.methods.registry import register
from anpyc.models.cnn import ConvNet

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from torch.nn.modules.module import _IncompatibleKeys

    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HATConfig:
    """``s_max``: the largest slope of the gates (annealed to in training, the limit used at
    test); ``c``: strength of the attention regulariser (paper: 0.75, 1.5 for some streams);
    ``thres_cosh``: clamp of ``s e`` inside the gradient compensation; ``thres_emb``: embeddings
    are clamped to ``[-thres_emb, thres_emb]`` after every step (reference code: 6);
    ``anneal_cycles``: ``s`` is annealed from ``1/s_max``
    to ``s_max`` this many times per epoch, over equal runs of its batches (1: the paper's
    once per epoch)."""

    s_max: float = 400.0
    c: float = 4.0
    thres_cosh: float = 50.0
    thres_emb: float = 6.0
    anneal_cycles: int = 8

    def __post_init__(self) -> None:
        if not (self.s_max >= 1 and self.c >= 0 and self.thres_cosh > 0 and self.thres_emb > 0 and self.anneal_cycles >= 1):
            raise ValueError("need s_max >= 1, c >= 0, thres_cosh > 0, thres_emb > 0 and anneal_cycles >= 1")


def anneal_cycle(batch: int, batches: int, cycles: int) -> tuple[int, int]:
    """(first batch, number of batches) of the annealing cycle holding ``batch`` when the
    ``batches`` of an epoch are cut into ``cycles`` runs as equal as whole batches allow.

    Example:
        >>> [anneal_cycle(b, 10, 3) for b in (0, 3, 4, 9)]
        [(0, 4), (0, 4), (4, 3), (7, 3)]
    """
    cycles = max(1, min(cycles, batches))
    i = batch * cycles // batches
    while math.ceil(i * batches / cycles) > batch:  # integer rounding at a boundary
        i -= 1
    start = math.ceil(i * batches / cycles)
    return start, math.ceil((i + 1) * batches / cycles) - start


# ----------------------------------------------------------------------------- layers
_CHAIN = (nn.Sequential, ConvNet, nn.Flatten, nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.ReLU,
          nn.Dropout, nn.MaxPool2d, nn.Identity)


@dataclasses.dataclass(frozen=True)
class GatedLayer:
    """One gated layer of the body: its Linear / Conv2d, the module whose output is gated
    (the conv itself, or the batch norm right after it), its units, and the names of its
    weight and of the parameters that follow one unit each (bias, batch-norm affine)."""

    name: str
    module: nn.Module
    gate: nn.Module
    units: int
    weight: str
    unit_params: tuple[str, ...]


def gated_layers(model: nn.Module) -> list[GatedLayer]:
    """The body's Linear / Conv2d layers in forward order; raises :class:`ConfigError` for a
    body that is not a chain of them (residual connections, generative models).

    Example:
        >>> from anpyc.config import ModelConfig
        >>> from anpyc.models import build_model
        >>> [(g.name, g.units) for g in gated_layers(build_model(ModelConfig(hidden=(8, 4)), (1, 2, 2)))]
        [('body.1', 8), ('body.3', 4)]
    """
    body = getattr(model, "body", None)
    mods = list(body.named_modules()) if isinstance(body, nn.Module) else []
    odd = sorted({type(m).__name__ for _, m in mods if not isinstance(m, _CHAIN)})
    if odd or not isinstance(body, (nn.Sequential, ConvNet)):
        raise ConfigError(f"hat gates chains of Linear/Conv2d layers (models mlp and cnn); this model has {', '.join(odd) or type(body or model).__name__}")
    leaves = [(n, m) for n, m in mods if not list(m.children())]
    layers = []
    for i, (name, m) in enumerate(leaves):
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ConfigError(f"hat: grouped convolution {name} is not supported")
        gate, gname = m, name
        if isinstance(m, nn.Conv2d) and i + 1 < len(leaves) and isinstance(leaves[i + 1][1], nn.BatchNorm2d):
            gname, gate = leaves[i + 1]
        units = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        unit_params = [f"body.{name}.bias"] if m.bias is not None else []
        if gate is not m:
            unit_params += [f"body.{gname}.{p}" for p, _ in gate.named_parameters()]
        layers.append(GatedLayer(f"body.{name}", m, gate, units, f"body.{name}.weight", tuple(unit_params)))
    if not layers:
        raise ConfigError("hat: the body has no Linear or Conv2d layer to gate")
    return layers


def _expand_inputs(layer: GatedLayer, prev: Tensor) -> Tensor:
    """A previous layer's unit mask over this layer's inputs (a Linear after convs sees each
    channel ``H*W`` times in a row: the flattening is channel-major)."""
    n_in = layer.module.in_features if isinstance(layer.module, nn.Linear) else layer.module.in_channels
    if n_in % len(prev):
        raise ConfigError(f"hat: {layer.name} has {n_in} inputs, not a multiple of the {len(prev)} units before it")
    return prev.repeat_interleave(n_in // len(prev))


def frozen_masks(layers: list[GatedLayer], used: list[Tensor]) -> dict[str, Tensor]:
    """Per body parameter, the entries earlier tasks use (bool): a weight is used when its
    output unit and its input unit are (first layer: its output unit), a per-unit parameter
    when its unit is."""
    out: dict[str, Tensor] = {}
    for i, (layer, post) in enumerate(zip(layers, used, strict=True)):
        post = post.bool()
        w = layer.module.weight
        rows = post.view(-1, *([1] * (w.dim() - 1)))
        if i == 0:
            out[layer.weight] = rows.expand(w.shape).clone()
        else:
            pre = _expand_inputs(layer, used[i - 1].bool())
            out[layer.weight] = rows & pre.view(1, -1, *([1] * (w.dim() - 2)))
        for name in layer.unit_params:
            out[name] = post.clone()
    return out


class _Gate:
    """Forward hook multiplying one layer's output by its HAT mask. It holds the method, so
    a deep copy or a pickle of the model carries a copy of the method in the same state."""

    def __init__(self, method: HAT, layer: int) -> None:
        self.method, self.layer = method, layer

    def __call__(self, module: nn.Module, inputs: tuple[Tensor, ...],
                 output: Tensor) -> Tensor | None:
        mask = self.method.unit_mask(self.layer, module.training)
        if mask is None:
            return None
        return output * mask.view(1, -1, *([1] * (output.dim() - 2)))


# ----------------------------------------------------------------------------- the method
@register
class HAT(Method):
    """Task embeddings gate every unit of the body; units earlier tasks use are frozen.

    State: the embeddings (parameters ``embeddings.t<k>_l<l>``), per finished task and layer
    its binary mask (``mask__t<k>__l<l>``), the cumulative mask of the finished tasks
    (``used__l<l>``), the current task, the batch counter of the annealing and the number of
    batches per epoch (buffers) and the capacity history.
    The gates are forward hooks, installed by :meth:`attach` (the loop calls it before every
    task, a resumed one too; every hook that gets the model calls it as well).

    Example:
        >>> from anpyc.config import ModelConfig, StreamConfig
        >>> from anpyc.data import make_stream
        >>> from anpyc.models import build_model
        >>> from anpyc.scenario import HookContext
        >>> stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=64), seed=0)
        >>> model = build_model(ModelConfig(hidden=(8, 4)), stream.input_shape)
        >>> _ = model.add_head(stream[0].n_outputs)
        >>> hat = HAT(HATConfig(s_max=10, anneal_cycles=1))  # the paper's: one annealing per epoch
        >>> hat.before_task(model, stream[0], HookContext(0, 1, batch_size=16))
        >>> [tuple(e.shape) for e in hat.embeddings.values()], int(hat.batches), hat.s()
        ([(8,), (4,)], 4, 0.1)
    """

    name = "hat"
    tags = frozenset({"classifier-only"})  # gates the units of a chain of Linear / Conv2d layers
    config_cls = HATConfig

    def __init__(self, config: HATConfig | None = None) -> None:
        super().__init__(config)
        self.embeddings = nn.ParameterDict()
        for name in ("task", "tasks_done", "batch", "batches"):
            self.register_buffer(name, torch.full((), -1 if name == "task" else 0, dtype=torch.long))
        self.history = {"free_fraction": {}, "free_fraction_total": [], "units_used": {}}
        self._layers: list[GatedLayer] = []
        self._attached_to: list = []  # the model the gates are on (a plain list: not a submodule)
        self._handles: list = []
        self._view: int | None = None  # the task whose binary mask the gates apply (eval)
        self._frozen: FrozenEntries | None = None  # derived per task, never saved

    # -------------------------------------------------------------- the gates
    def attach(self, model: ContinualModel) -> None:
        """Install the gates (forward hooks) on ``model``'s body; idempotent."""
        if self._attached_to and self._attached_to[0] is model:
            return
        for h in self._handles:
            h.remove()
        self._layers = gated_layers(model)
        self._handles = [layer.gate.register_forward_hook(_Gate(self, i)) for i, layer in enumerate(self._layers)]
        self._attached_to = [model]

    def s(self) -> float:
        """The gates' slope for the current training batch: the paper's annealing over the
        epoch's batches, or over each of the ``anneal_cycles`` equal runs of them."""
        s_max, b, n = self.config.s_max, int(self.batch), int(self.batches)
        start, length = anneal_cycle(min(b, n - 1), n, self.config.anneal_cycles)
        if length <= 1:
            return s_max
        return 1.0 / s_max + (s_max - 1.0 / s_max) * (b - start) / (length - 1)

    def embedding(self, task: int, layer: int) -> nn.Parameter | None:
        return self.embeddings[f"t{task}_l{layer}"] if f"t{task}_l{layer}" in self.embeddings else None

    def train_masks(self) -> list[Tensor]:
        """``sigmoid(s e)`` of the current task for every layer (with gradients)."""
        s, t = self.s(), int(self.task)
        return [torch.sigmoid(s * self.embedding(t, i)) for i in range(len(self._layers))]

    def task_mask(self, task: int, layer: int) -> Tensor | None:
        """Task ``task``'s binary mask of a layer (kept when it finished; ``e > 0`` while it
        trains); ``None`` for a task without embeddings yet."""
        kept = getattr(self, f"mask__t{task}__l{layer}", None)
        if kept is not None:
            return kept
        e = self.embedding(task, layer)
        return None if e is None else (e.detach() > 0).to(e.dtype)

    def unit_mask(self, layer: int, training: bool) -> Tensor | None:
        """What gate ``layer`` multiplies by now: the viewed task's binary mask, else the
        current task's annealed mask in training or binary one in evaluation."""
        if self._view is not None:
            return self.task_mask(self._view, layer)
        t = int(self.task)
        if t < 0:
            return None
        if training:
            return torch.sigmoid(self.s() * self.embedding(t, layer))
        return self.task_mask(t, layer)

    @contextlib.contextmanager
    def view(self, model: ContinualModel, task: int) -> Iterator[None]:
        """The model as task ``task`` sees it (its binary masks), for the duration."""
        self.attach(model)
        previous, self._view = self._view, int(task)
        try:
            yield
        finally:
            self._view = previous

    def used(self, layer: int) -> Tensor:
        """Units any finished task uses (0/1), i.e. ``a_<t`` for the task in training."""
        return getattr(self, f"used__l{layer}")

    # -------------------------------------------------------------- hooks
    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.attach(model)
        device = next(model.parameters()).device
        gen = ctx.generator(0xE)
        for i, layer in enumerate(self._layers):
            if not hasattr(self, f"used__l{i}"):
                self.register_buffer(f"used__l{i}", torch.zeros(layer.units, device=device))
            if self.embedding(ctx.task, i) is None:
                self.embeddings[f"t{ctx.task}_l{i}"] = nn.Parameter(torch.randn(layer.units, generator=gen).to(device))
        self.task.fill_(ctx.task)
        self.batch.zero_()
        self.batches.fill_(math.ceil(len(task.train) / ctx.batch_size))
        self._frozen = None

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        """``c * sum a_t (1 - a_<t) / sum (1 - a_<t)`` over every unit of the body."""
        if self.config.c == 0 or int(self.task) < 0:
            return None
        self.attach(model)
        num = den = 0.0
        for i, a in enumerate(self.train_masks()):
            free = 1.0 - self.used(i)
            num = num + (a * free).sum()
            den = den + free.sum()
        return self.config.c * num / torch.clamp(torch.as_tensor(den), min=1.0)

    def _phase(self, model: ContinualModel) -> FrozenEntries:
        """The entries of the body frozen this task and the values they keep (derived from the
        cumulative masks at the task's first step, and after a resume)."""
        if self._frozen is None:
            frozen = frozen_masks(self._layers, [self.used(i) for i in range(len(self._layers))])
            self._frozen = FrozenEntries(model, {n: ~m for n, m in frozen.items() if bool(m.any())})
        return self._frozen

    @torch.no_grad()
    def before_step(self, model: ContinualModel) -> None:
        """Freeze what earlier tasks use; compensate the embeddings' gradients."""
        if int(self.task) < 0:
            return
        self.attach(model)
        self._phase(model).gate_grads_(model)
        s, s_max, thres = self.s(), self.config.s_max, self.config.thres_cosh
        for i in range(len(self._layers)):
            e = self.embedding(int(self.task), i)
            if e.grad is not None:
                num = torch.cosh(torch.clamp(s * e, -thres, thres)) + 1
                e.grad.mul_(s_max / s * num / (torch.cosh(e) + 1))

    @torch.no_grad()
    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        """Undo any update of frozen entries (momentum, weight decay), clamp the embeddings,
        count the batch."""
        if int(self.task) < 0:
            return
        self.attach(model)
        self._phase(model).restore_(model, optimizer)  # the phase is set on the task's first step
        for i in range(len(self._layers)):
            self.embedding(int(self.task), i).clamp_(-self.config.thres_emb, self.config.thres_emb)
        self.batch.add_(1)
        if int(self.batch) >= int(self.batches):
            self.batch.zero_()

    @torch.no_grad()
    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """Keep the task's binary masks, add them to the cumulative ones, record capacity."""
        self.attach(model)
        t = ctx.task
        if self.embedding(t, 0) is None:  # your own loop skipped before_task
            raise RuntimeError(f"hat: after_task() before before_task(): task {t} has no embeddings")
        closed = []
        for i in range(len(self._layers)):
            e = self.embedding(t, i)
            mask = (e.detach() > 0).to(e.dtype)
            self.register_buffer(f"mask__t{t}__l{i}", mask)
            self.used(i).copy_(torch.maximum(self.used(i), mask))
            e.requires_grad_(False)
            if not bool(mask.any()):
                closed.append(self._layers[i].name)
        if closed:  # few training steps against the sparsity pressure: a silent chance-level task otherwise
            log.warning("hat: task %d opens no unit of %s (every gate closed, so it answers at chance): "
                        "lower c (now %g) or train the task longer", t + 1, ", ".join(closed), self.config.c)
        self.tasks_done.fill_(t + 1)
        self.batch.zero_()
        self._frozen = None
        self._record_capacity(model)
        log.debug("hat: after task %d the layers use %s of their units", t,
                  {k: round(v[-1], 3) for k, v in self.history["units_used"].items()})

    def _record_capacity(self, model: ContinualModel) -> None:
        used = [self.used(i) for i in range(len(self._layers))]
        frozen = frozen_masks(self._layers, used)
        total = free = 0
        for name, p in model.shared_parameters():
            f = int(frozen[name].sum()) if name in frozen else 0
            self.history["free_fraction"].setdefault(name, []).append(1.0 - f / p.numel())
            total, free = total + p.numel(), free + p.numel() - f
        self.history["free_fraction_total"].append(free / max(total, 1))
        for layer, u in zip(self._layers, used, strict=True):
            self.history["units_used"].setdefault(layer.name, []).append(float(u.mean()))

    # -------------------------------------------------------------- evaluation
    def eval_context(self, model: ContinualModel,
                     task_id: int | None) -> contextlib.AbstractContextManager[None]:
        """Gate with task ``task_id``'s binary masks (``None``: the current task's)."""
        self.attach(model)
        return contextlib.nullcontext() if task_id is None else self.view(model, task_id)

    def summary(self) -> dict:
        """Capacity in the shape every mask method reports (``free_fraction``: per body
        parameter, the share of entries later tasks may still train, after each task;
        ``free_fraction_total[_curve]``: of the whole body), plus ``units_used``: per layer,
        the share of units the finished tasks attend to."""
        curve = list(self.history["free_fraction_total"])
        return {
            "free_fraction": {k: list(v) for k, v in self.history["free_fraction"].items()},
            "free_fraction_total_curve": curve,
            "free_fraction_total": curve[-1] if curve else 1.0,
            "units_used": {k: list(v) for k, v in self.history["units_used"].items()},
        }

    # -------------------------------------------------------------- state
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Create the embeddings the state holds (finished tasks' ones frozen), then load."""
        done = int(state_dict.get("tasks_done", torch.zeros(())))
        for key, value in state_dict.items():
            if key.startswith("embeddings.") and key.split(".", 1)[1] not in self.embeddings:
                name = key.split(".", 1)[1]
                task = int(name[1:].split("_")[0])
                self.embeddings[name] = nn.Parameter(torch.empty_like(value), requires_grad=task >= done)
        self._frozen = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
