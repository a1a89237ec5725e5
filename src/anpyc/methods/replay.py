"""Replay baselines: experience replay (``er``) and Dark Experience Replay++ (``derpp``).

Both keep a buffer of ``buffer`` training examples (:class:`ReplayBuffer`) with their labels
and task ids. Inputs are stored as the loop hands them to :meth:`penalty` (after the task's
transform, and after augmentation when ``--augment`` is on). Which examples stay is the
``buffer_policy``: ``reservoir`` (a uniform sample of everything offered, old tasks and the
current one; the papers'), ``class_balanced`` or ``task_balanced`` (about equal shares per
class or task, each a uniform sample of its class or task). When they are offered is the
``buffer_update``: ``online`` (each training batch, after its step's replay draw, so it is
never replayed to itself; the papers') or ``task_end`` (the task's training data once the task
is learnt, as Avalanche does: the buffer then holds earlier tasks only and the first task
replays nothing).

* **ER** (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning"): every
  training step also trains on ``replay_batch`` examples drawn from the buffer without
  replacement: ``loss = CE(batch) + CE(replayed)``, each example under its own task's head,
  so it works in the task, domain and class scenarios. The paper (and Avalanche) take one
  mean over the union of both batches; with ``replay_batch`` equal to the batch size the sum
  of the two means used here is twice that mean (the same direction, a learning rate twice
  as large).
* **DER++** (Buzzega et al., NeurIPS 2020, "Dark Experience for General Continual
  Learning"): the buffer also stores logits; ``loss = CE(batch) + alpha * MSE(logits(x'),
  stored logits) + beta * CE(x'', y'')`` with ``x'`` and ``x''`` two independent buffer
  batches (``replay_batches=2``, the paper) or one batch for both terms (``1``, Avalanche's
  DER). The logits are recorded when the example enters the buffer (``logits_at='insert'``,
  the paper) or by the model that finished its task (``'task_end'``, Avalanche; what
  ``buffer_update='task_end'`` gives in any case), in eval mode (no dropout noise, no
  batch-norm statistics update from the extra forward pass). Stored logits are compared on
  every output of the head (``logits='all'``) or on those active when stored (``'seen'``),
  under the example's own head (task scenario).

Defaults: ``buffer=500``; DER++ ``alpha=1.0``, ``beta=0.5``, the values Buzzega et al. report
for sequential MNIST with a 500-example buffer; the buffer options were chosen on validation
across the class and domain protocols and the peer's matched setting
(docs/benchmarks/baselines-defaults).

**Budget.** Replayed examples count as training passes (:meth:`Method.count_extra_examples`).
A step trains on ``batch_size`` current plus ``k * replay_batch`` replayed examples (``k``: 1
for ER, 2 for DER++ with ``replay_batches=2``), so under ``--budget passes`` the main phase
runs ``passes / (1 + k * replay_batch / batch_size)`` epochs. The first steps of the first
task replay fewer (the buffer holds fewer than ``replay_batch`` examples), so that task
spends slightly less than the budget; with ``buffer_update='task_end'`` the first task
replays nothing and spends ``1 / (1 + k * replay_batch / batch_size)`` of it. Offering a
task's data at its end (and recording logits) is a forward pass, not counted as training. **Memory**: the buffer is registered buffers of the method, counted in
``method_state_mb`` at its full capacity.

**Resume and seeds.** Everything is a registered buffer: the stored examples, the count of
examples seen and the state of the buffer's random generator, which ``before_task`` seeds
from ``ctx.generator`` (run seed, task); every later draw continues from the saved state, so
a run resumed mid-task continues bit for bit. Under ``--nproc N`` each process keeps a
buffer of its own shard of the batches (rank 0's is kept at task boundaries), so a
multi-process run is not equivalent to a one-process one, and the replay counts are rank 0's.

Example:
    >>> from anpyc.methods import create
    >>> er = create("er", {"buffer": 200})
    >>> er.config.buffer, er.epochs_for_budget(1.0, batch_size=128)
    (200, 0.5)
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from anpyc.data.batches import iterate
from anpyc.methods.base import Method
from anpyc.methods.registry import register
from anpyc.models.heads import grouped_logits
from anpyc.utils import eval_mode

if TYPE_CHECKING:
    from anpyc.data.streams import Task
    from anpyc.methods.base import Retrain
    from anpyc.models.heads import ContinualModel
    from anpyc.scenario import HookContext

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the buffer
POLICIES = ("reservoir", "class_balanced", "task_balanced")


class ReplayBuffer(nn.Module):
    """A fixed-capacity sample of a stream of examples, all in registered buffers.

    ``policy`` decides which examples stay:

    * ``reservoir`` (Vitter's algorithm R): the ``n``-th example offered is kept with
      probability ``capacity / n`` in a uniformly chosen slot: a uniform sample of the stream;
    * ``class_balanced`` / ``task_balanced``: once full, an example whose class (task) holds
      fewer slots than the largest class (task) replaces a random example of a largest one;
      one of a largest class is kept with probability ``m_c / n_c`` (``m_c`` stored, ``n_c``
      seen of its class) in place of a random example of its own class. The buffer tends to
      ``capacity / groups`` examples per class (task), each a uniform sample of its group
      (the class-balancing reservoir of Chrysakis & Moens, ICML 2020; Avalanche's
      class- and experience-balanced buffers reach the same split at task ends).

    ``x``, ``y``, ``t`` (and with ``logits=True`` the ``logits`` and their valid ``width``)
    are created at the first :meth:`add`, shaped from the data. ``seen`` counts the examples
    offered so far, ``group_seen`` (balanced policies) those of each class or task; ``rng`` is
    the state of the generator every draw comes from (seed it with :meth:`reseed`).

    Example:
        >>> buf = ReplayBuffer(3)
        >>> buf.reseed(torch.Generator().manual_seed(0))
        >>> buf.add(torch.zeros(5, 2), torch.arange(5), torch.zeros(5, dtype=torch.long))
        >>> len(buf), int(buf.seen)
        (3, 5)
        >>> len(buf.sample(2))
        2
    """

    _ROWS = ("x", "y", "t", "logits", "width")  # one row per slot
    _LAZY = (*_ROWS, "group_seen")

    def __init__(self, capacity: int, logits: bool = False, policy: str = "reservoir") -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        if policy not in POLICIES:
            raise ValueError(f"unknown buffer policy {policy!r}; known: {', '.join(POLICIES)}")
        self.capacity = int(capacity)
        self.with_logits = bool(logits)
        self.policy = policy
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        # a valid state until before_task seeds it from the run seed (ctx.generator)
        self.register_buffer("rng", torch.Generator().manual_seed(0).get_state())

    def __len__(self) -> int:
        return min(int(self.seen), self.capacity)

    def reseed(self, generator: torch.Generator) -> None:
        """Continue every later draw from ``generator``'s current state."""
        self.rng.copy_(generator.get_state().to(self.rng.device))

    def _generator(self) -> torch.Generator:
        g = torch.Generator()
        g.set_state(self.rng.cpu())
        return g

    def _save(self, g: torch.Generator) -> None:
        self.rng.copy_(g.get_state().to(self.rng.device))

    def _allocate(self, x: Tensor, logits: Tensor | None) -> None:
        n = self.capacity
        self.register_buffer("x", x.new_zeros((n, *x.shape[1:])))
        self.register_buffer("y", torch.zeros(n, dtype=torch.long, device=x.device))
        self.register_buffer("t", torch.zeros(n, dtype=torch.long, device=x.device))
        if self.policy != "reservoir":
            self.register_buffer("group_seen", torch.zeros(0, dtype=torch.long, device=x.device))
        if self.with_logits:
            assert logits is not None
            self.register_buffer("logits", logits.new_zeros((n, logits.shape[1])))
            self.register_buffer("width", torch.zeros(n, dtype=torch.long, device=x.device))

    def _grow_logits(self, width: int) -> None:
        """Pad the stored logits to ``width`` columns (a later task's head is wider)."""
        old = self.logits
        self.register_buffer("logits", F.pad(old, (0, width - old.shape[1])))

    def slots(self, n_new: int) -> tuple[list[int], list[int]]:
        """Algorithm R for the next ``n_new`` examples: (rows of the batch, slots) to write,
        one row per slot (a later row that drew the same slot wins, as one at a time would)."""
        g, cap, start = self._generator(), self.capacity, int(self.seen)
        pos = torch.arange(start, start + n_new, dtype=torch.float64)
        drawn = (torch.rand(n_new, generator=g, dtype=torch.float64) * (pos + 1)).floor().long()
        slot = torch.where(pos < cap, pos.long(), drawn)
        self._save(g)
        last = {s: r for r, s in enumerate(slot.tolist()) if s < cap}
        return list(last.values()), list(last.keys())

    def groups(self, y: Tensor, t: Tensor) -> Tensor:
        """The group each example is balanced over: its class or its task."""
        return y if self.policy == "class_balanced" else t

    def balanced_slots(self, groups: list[int]) -> tuple[list[int], list[int]]:
        """The balanced policies for the next examples of ``groups`` (one group id each):
        (rows, slots) to write, as :meth:`slots`. Two uniform draws per example."""
        g, cap, filled = self._generator(), self.capacity, len(self)
        u = torch.rand(2 * len(groups), generator=g, dtype=torch.float64).tolist()
        self._save(g)
        if len(self.group_seen) <= max(groups):
            self.group_seen = F.pad(self.group_seen, (0, max(groups) + 1 - len(self.group_seen)))
        seen = self.group_seen.tolist()
        stored = self.groups(self.y, self.t)[:filled].tolist()
        members: dict[int, list[int]] = {}
        for slot, grp in enumerate(stored):
            members.setdefault(grp, []).append(slot)
        writes: dict[int, int] = {}
        for r, grp in enumerate(groups):
            seen[grp] += 1
            own = members.setdefault(grp, [])
            if filled < cap:
                slot, filled = filled, filled + 1
            else:
                largest = max(len(v) for v in members.values())
                if len(own) < largest:  # not a largest group: evict from one of them
                    big = [k for k, v in members.items() if len(v) == largest]
                    victims = members[big[int(u[2 * r] * len(big))]]
                elif u[2 * r] * seen[grp] < len(own):  # a largest group: reservoir within it
                    victims = own
                else:
                    continue
                slot = victims.pop(int(u[2 * r + 1] * len(victims)))
            own.append(slot)
            writes[slot] = r
        self.group_seen.copy_(torch.tensor(seen, dtype=torch.long, device=self.group_seen.device))
        return list(writes.values()), list(writes.keys())

    @torch.no_grad()
    def add(self, x: Tensor, y: Tensor, t: Tensor, logits: Tensor | None = None, width: Tensor | None = None) -> None:
        """Offer a batch to the reservoir (``logits``/``width`` when it stores logits)."""
        if not hasattr(self, "x"):
            self._allocate(x, logits)
        if self.with_logits and logits.shape[1] > self.logits.shape[1]:
            self._grow_logits(logits.shape[1])
        if self.policy == "reservoir":
            rows, slots = self.slots(len(y))
        else:
            rows, slots = self.balanced_slots(self.groups(y, t).tolist())
        self.seen.add_(len(y))
        if not rows:
            return
        r = torch.tensor(rows, device=x.device)
        s = torch.tensor(slots, device=self.x.device)
        self.x[s], self.y[s], self.t[s] = x[r].to(self.x.dtype), y[r], t[r]
        if self.with_logits:
            self.logits[s] = 0.0
            self.logits[s, : logits.shape[1]] = logits[r].to(self.logits.dtype)
            self.width[s] = width[r]

    def sample(self, k: int) -> Tensor:
        """Indices of ``min(k, len(self))`` stored examples, drawn without replacement."""
        g = self._generator()
        idx = torch.randperm(len(self), generator=g)[:k]
        self._save(g)
        return idx.to(self.seen.device)

    def get(self, idx: Tensor) -> dict[str, Tensor]:
        """The stored tensors at ``idx``: ``x``, ``y``, ``t`` (and ``logits``, ``width``)."""
        return {k: getattr(self, k)[idx] for k in self._ROWS if hasattr(self, k)}

    def task_counts(self) -> dict[str, int]:
        """Examples in the buffer per task id."""
        return {str(k): v for k, v in sorted(Counter(self.t[: len(self)].tolist()).items())} if len(self) else {}

    def class_counts(self) -> dict[str, int]:
        """Examples in the buffer per label."""
        return {str(k): v for k, v in sorted(Counter(self.y[: len(self)].tolist()).items())} if len(self) else {}

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args, **kwargs) -> None:
        # the lazily shaped tensors take the saved shapes (created, or grown since)
        for name in self._LAZY:
            saved = state_dict.get(prefix + name)
            if saved is not None and (not hasattr(self, name) or getattr(self, name).shape != saved.shape):
                self.register_buffer(name, torch.empty_like(saved, device=self.seen.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# ----------------------------------------------------------------------------- losses
def replay_ce(model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor:
    """Mean cross-entropy of each example under its own task's head (``anpyc.loop.train.task_loss``,
    which a method may not import)."""
    parts = grouped_logits(model, x, t)
    total = sum(F.cross_entropy(logits, y[rows], reduction="sum") for rows, logits, _ in parts)
    return total / len(y)


def head_logits(model: ContinualModel, x: Tensor, t: Tensor,
                outputs: str = "all") -> list[tuple[Tensor, Tensor]]:
    """``[(rows, logits), ...]``: each row's logits under its own task's head, the body run
    once. ``outputs='all'``: every output of the head, classes not seen yet included (a
    class-incremental head computes them even while they are inactive); ``'seen'``: the
    active outputs only (what training and evaluation use)."""
    if outputs == "seen":
        return [(rows, logits) for rows, logits, _ in grouped_logits(model, x, t)]
    feats = model.features(x)
    if model.head_mode == "single":
        return [(torch.arange(len(x), device=x.device), model.heads[0](feats))]
    out = []
    for task in t.unique().tolist():
        rows = (t == task).nonzero(as_tuple=True)[0]
        out.append((rows, model.heads[model.head_index(task)](feats[rows])))
    return out


def logit_mse(model: ContinualModel, x: Tensor, t: Tensor, stored: Tensor, width: Tensor,
              outputs: str = "all") -> Tensor:
    """Mean squared error between the model's logits on ``x`` (each under its own head) and
    ``stored``, over the first ``width[i]`` outputs of each row (those stored)."""
    total, count = x.new_zeros(()), 0
    for rows, logits in head_logits(model, x, t, outputs):
        n_out = logits.shape[1]
        mask = torch.arange(n_out, device=x.device) < width[rows].clamp(max=n_out).unsqueeze(1)
        diff = (logits - stored[rows, :n_out].to(logits.dtype)).pow(2)
        total = total + (diff * mask).sum()
        count += int(mask.sum())
    return total / max(count, 1)


@torch.no_grad()
def logits_now(model: ContinualModel, x: Tensor, t: Tensor,
               outputs: str = "all") -> tuple[Tensor, Tensor]:
    """The model's logits on ``x`` in eval mode (see :func:`head_logits`), padded to the
    widest head, with each row's number of stored outputs."""
    wide = max(model.head_sizes)
    out = x.new_zeros((len(x), wide))
    width = torch.zeros(len(x), dtype=torch.long, device=x.device)
    with eval_mode(model):
        for rows, logits in head_logits(model, x, t, outputs):
            out[rows, : logits.shape[1]] = logits
            width[rows] = logits.shape[1]
    return out, width


# ----------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class ERConfig:
    """``buffer``: examples kept; ``replay_batch``: examples replayed per step (``None``:
    the training batch size); ``buffer_policy``: which examples the buffer keeps,
    ``reservoir`` (a uniform sample of the stream), ``class_balanced`` or ``task_balanced``
    (about equal shares per class or task; :class:`ReplayBuffer`); ``buffer_update``: when
    examples are offered to the buffer, ``online`` (each training batch after its step's
    replay draw, as in the papers: the current task is in the buffer while it trains) or
    ``task_end`` (the task's training data, shuffled, once it is learnt, as Avalanche's
    buffers: the buffer holds earlier tasks only, and the first task replays nothing)."""

    buffer: int = 500
    replay_batch: int | None = None
    buffer_policy: Literal["reservoir", "class_balanced", "task_balanced"] = "class_balanced"
    buffer_update: Literal["online", "task_end"] = "task_end"

    def __post_init__(self) -> None:
        if self.buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {self.buffer}")
        if self.replay_batch is not None and self.replay_batch < 1:
            raise ValueError(f"replay_batch must be >= 1 or null, got {self.replay_batch}")
        if self.buffer_policy not in POLICIES:
            raise ValueError(f"buffer_policy must be one of {', '.join(POLICIES)}, got {self.buffer_policy!r}")
        if self.buffer_update not in ("online", "task_end"):
            raise ValueError(f"buffer_update must be 'online' or 'task_end', got {self.buffer_update!r}")


@dataclasses.dataclass(frozen=True)
class DERPPConfig(ERConfig):
    """ER's options plus ``alpha`` (weight of the logit MSE), ``beta`` (weight of the
    cross-entropy on replayed labels), ``logits``: which outputs are stored and matched,
    ``all`` of the head's (as in the paper, whose class-incremental head computes every class
    from the start) or only those ``seen`` (active) when stored; ``logits_at``: when an
    example's logits are recorded, ``insert`` (when it enters the buffer, as in the paper)
    or ``task_end`` (by the model that finished its task, as Avalanche's DER; until then
    the example is replayed for its label only); ``replay_batches``: ``2`` draws independent
    buffer batches for the two terms (the paper), ``1`` one batch for both (Avalanche)."""

    alpha: float = 1.0
    beta: float = 0.5
    logits: Literal["all", "seen"] = "all"
    logits_at: Literal["insert", "task_end"] = "insert"
    replay_batches: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.alpha >= 0 and self.beta >= 0):
            raise ValueError(f"need alpha >= 0 and beta >= 0, got alpha={self.alpha}, beta={self.beta}")
        if self.logits not in ("all", "seen"):
            raise ValueError(f"logits must be 'all' or 'seen', got {self.logits!r}")
        if self.logits_at not in ("insert", "task_end"):
            raise ValueError(f"logits_at must be 'insert' or 'task_end', got {self.logits_at!r}")
        if self.replay_batches not in (1, 2):
            raise ValueError(f"replay_batches must be 1 or 2, got {self.replay_batches}")


# ----------------------------------------------------------------------------- methods
@register
class ER(Method):
    """Experience replay (Chaudhry et al. 2019) from a :class:`ReplayBuffer`.

    Example:
        >>> ER(ERConfig(buffer=100)).memory.capacity
        100
    """

    name = "er"
    config_cls = ERConfig
    tags = frozenset({"classifier-only"})  # replays labelled examples (and DER++ logits) through the heads
    stores_logits = False

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.memory = ReplayBuffer(self.config.buffer, logits=self.stores_logits, policy=self.config.buffer_policy)
        self.register_buffer("replay_size", torch.zeros((), dtype=torch.long))  # per buffer batch
        self.register_buffer("current_task", torch.zeros((), dtype=torch.long))

    def replay_batches(self) -> int:
        """Buffer batches drawn per training step."""
        return 1

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """Main-phase epochs so that current plus replayed examples spend ``passes`` per task:
        ``passes / (1 + batches * replay_batch / batch_size)``."""
        replay = self.config.replay_batch
        if replay is not None and batch_size is None:
            raise ValueError(f"{self.name}: replay_batch={replay} needs the training batch size")
        per_example = 1.0 if replay is None else replay / batch_size
        return passes / (1.0 + self.replay_batches() * per_example)

    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.memory.reseed(ctx.generator(0xE5))
        self.replay_size.fill_(self.config.replay_batch or ctx.batch_size)
        self.current_task.fill_(ctx.task)

    def _draw(self) -> dict[str, Tensor] | None:
        """One replay batch from the buffer, counted in the task's passes (``None``: empty)."""
        if int(self.replay_size) == 0:
            raise RuntimeError(f"{self.name}: penalty() before before_task(): the replay batch size is unset")
        if len(self.memory) == 0:
            return None
        batch = self.memory.get(self.memory.sample(int(self.replay_size)))
        self.count_extra_examples(int(self.current_task), len(batch["y"]))
        return batch

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        replay = self._draw()
        loss = None if replay is None else replay_ce(model, replay["x"], replay["y"], replay["t"])
        if self.config.buffer_update == "online":
            self.offer(model, x, y, t, task_end=False)
        return loss

    def offer(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor, task_end: bool) -> None:
        """Offer examples to the buffer (``task_end``: by :meth:`after_task`)."""
        self.memory.add(x, y, t)

    @torch.no_grad()
    def offer_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        """``buffer_update='task_end'``: offer the task's training data, in an order drawn
        from the run seed, in chunks of the training batch size."""
        device = next(model.parameters()).device
        for x, y, t in iterate(task.train, ctx.batch_size, shuffle=True, generator=ctx.generator(0xE6)):
            self.offer(model, x.to(device), y.to(device), t.to(device), task_end=True)

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        if self.config.buffer_update == "task_end":
            self.offer_task(model, task, ctx)
        per_task = self.history.setdefault("buffer_per_task", {})
        per_task[str(ctx.task)] = self.memory.task_counts()
        log.info("%s after task %d: buffer %d/%d, per task %s", self.name, ctx.task, len(self.memory),
                 self.memory.capacity, per_task[str(ctx.task)])

    def summary(self) -> dict:
        return {"replay": {
            "buffer": self.memory.capacity,
            "stored": len(self.memory),
            "seen": int(self.memory.seen),
            "per_task": self.memory.task_counts(),
            "per_class": self.memory.class_counts(),
            "per_task_after_each_task": dict(self.history.get("buffer_per_task", {})),
            "replayed": dict(self.history.get("extra_examples", {})),
        }}


@register
class DERPP(ER):
    """Dark Experience Replay++ (Buzzega et al. 2020): logit matching plus label replay.

    Example:
        >>> DERPP().config.alpha, DERPP().config.beta
        (1.0, 0.5)
    """

    name = "derpp"
    config_cls = DERPPConfig
    stores_logits = True

    def replay_batches(self) -> int:
        terms = int(self.config.alpha > 0) + int(self.config.beta > 0)
        return min(terms, self.config.replay_batches)

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        c, loss = self.config, None
        first = self._draw() if c.alpha > 0 else None
        if first is not None:
            loss = c.alpha * logit_mse(model, first["x"], first["t"], first["logits"], first["width"], c.logits)
        if c.beta > 0:
            second = first if (c.replay_batches == 1 and first is not None) else self._draw()
            if second is not None:
                term = c.beta * replay_ce(model, second["x"], second["y"], second["t"])
                loss = term if loss is None else loss + term
        if c.buffer_update == "online":
            self.offer(model, x, y, t, task_end=False)
        return loss

    def offer(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor, task_end: bool) -> None:
        """Offer examples with their logits now (``logits_at='task_end'`` during the task:
        none yet, :meth:`after_task` records them)."""
        if task_end or self.config.logits_at == "insert":
            logits, width = logits_now(model, x, t, self.config.logits)
            self.count_decision_examples(int(self.current_task), len(x))  # a forward pass to store targets
        else:
            logits = x.new_zeros((len(x), max(model.head_sizes)))
            width = torch.zeros(len(x), dtype=torch.long, device=x.device)
        self.memory.add(x, y, t, logits, width)

    @torch.no_grad()
    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext,
                   retrain: Retrain | None = None) -> None:
        """With ``logits_at='task_end'``: record the logits of the task's stored examples."""
        if self.config.logits_at == "task_end" and self.config.buffer_update == "online" and len(self.memory):
            rows = (self.memory.t[: len(self.memory)] == ctx.task).nonzero(as_tuple=True)[0]
            for chunk in rows.split(256):
                logits, width = logits_now(model, self.memory.x[chunk], self.memory.t[chunk], self.config.logits)
                self.count_decision_examples(ctx.task, len(chunk))
                if logits.shape[1] > self.memory.logits.shape[1]:
                    self.memory._grow_logits(logits.shape[1])
                self.memory.logits[chunk] = 0.0
                self.memory.logits[chunk, : logits.shape[1]] = logits
                self.memory.width[chunk] = width
        super().after_task(model, task, ctx, retrain)
