"""The one interface every continual-learning method implements.

The loop (:func:`anpyc.loop.train.train_stream`, or your own) calls, per task ``t``::

    ctx = HookContext(task=t, n_tasks=len(stream), seed=seed, scenario="task")
    method.before_task(model, task, ctx)
    for x, y, t in batches(method.training_data(task, seen_tasks, ctx)):
        loss = task_loss(model, x, y, t) + method.penalty(model, x, y, t)
        optimizer.zero_grad(); loss.backward()
        method.before_step(model)            # gate / scale gradients
        optimizer.step()
        method.after_step(model, optimizer)  # undo any update of frozen weights
    method.after_task(model, task, ctx, retrain)  # importance, pruning (+ retrain), anchors

and evaluates with ``with method.eval_context(model, task_id): method.predict(model, x,
task_id)``, where ``task_id`` is ``None`` whenever the scenario hides it at test time.

Forward hooks are not state: a method that gates the model's forward pass installs them in
``attach(model)``, which the loop calls before every task's training, a resumed one too.

A method's whole state is ``state_dict()``: tensors live in registered buffers (created
lazily are fine: :meth:`Method.load_state_dict` creates them), everything else (histories,
per-task figures) in ``history``, saved as the module's extra state. Nothing a later hook
needs may live only in a plain attribute: a run resumed mid-task restores the state and goes
on without replaying ``before_task``. Every random draw comes from ``ctx.generator(...)``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from anpyc.scenario import HookContext

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch.nn.modules.module import _IncompatibleKeys

    from anpyc.data.batches import SplitData
    from anpyc.data.streams import Task
    from anpyc.models.heads import ContinualModel

Retrain = Callable[[float], Any]  # retrain(epochs): run the loop again on the current task


@dataclasses.dataclass(frozen=True)
class NoConfig:
    """A method without hyper-parameters.

    Example:
        >>> from anpyc.methods import create
        >>> create("finetune").config
        NoConfig()
    """


class Method(nn.Module):
    """Base class: every hook is a no-op, so a subclass overrides only what it needs.

    Example:
        >>> from anpyc.methods import create
        >>> method = create("finetune")
        >>> method.name
        'finetune'
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type] = NoConfig
    #: what comparisons need to know about the method (:func:`anpyc.methods.method_names`
    #: selects by them): ``upper-bound`` (needs the whole history, as joint training: excluded
    #: from fair "same budget" claims), ``lower-bound`` (nothing against forgetting, the
    #: reference row), ``needs-task-id`` (only for scenarios that give the task id at test
    #: time), ``no-network`` (a classifier of the inputs alone), ``classifier-only`` (needs a
    #: classifier's heads, logits or layers: not for a generator, ``--model vae|gan``),
    #: ``internal`` (a test helper, never listed)
    tags: ClassVar[frozenset[str]] = frozenset()
    #: the method's tuning grid (``{param: [values]}``) for protocols whose grid file
    #: (``presets/grids.yaml``) has none for it; ``None``: only the grid file's
    grid: ClassVar[dict[str, list] | None] = None
    #: False for a classifier of the inputs alone (``density``, ``slda``): the loop spends no
    #: training pass on the network and calls ``after_task`` (with ``retrain=None``) only.
    trains_network: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        super().__init__()
        self.config = config if config is not None else self.config_cls()
        self.history: dict[str, Any] = {}  # per-task figures; saved as extra state

    # ------------------------------------------------------------------ hooks
    def attach(self, model: ContinualModel) -> None:
        """Install on ``model`` what is not state, such as forward hooks (HAT's gates). The
        loop calls it before every task's training, also when a run resumes mid-task (where
        :meth:`before_task` is not replayed), so it must be idempotent."""

    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        """Called once the model has the new task's head, before any training step."""

    def training_data(self, task: Task, seen: Sequence[Task], ctx: HookContext) -> SplitData:
        """What to train on for ``task``; ``seen`` is every task so far, ``task`` included."""
        return task.train

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        """Extra loss added to the task loss for this batch (``None``: nothing)."""
        return None

    def before_step(self, model: ContinualModel) -> None:
        """Gradients are computed; gate or scale them before the optimizer step."""

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer has stepped; restore entries that must not move (masks the update,
        not only the gradient, so momentum and weight decay cannot leak into them)."""

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext, retrain: Retrain | None = None) -> None:
        """Training on ``task`` is over: estimate importance, prune, anchor. ``retrain(n)``
        trains the current task for ``n`` more epochs (they count in the task's passes)."""

    @contextlib.contextmanager
    def eval_context(self, model: ContinualModel, task_id: int | None) -> Iterator[None]:
        """Wrap evaluation of one task's data (e.g. apply that task's weight mask);
        ``task_id`` is ``None`` when the scenario hides it."""
        yield

    def predict(self, model: ContinualModel, x: Tensor, task_id: int | None) -> Tensor:
        """Logits for a test batch; ``task_id`` is ``None`` when the scenario hides it (a
        method may then infer the task from ``x``). Runs inside :meth:`eval_context`."""
        return model(x, 0 if task_id is None else task_id)

    def inferred_tasks(self) -> Tensor | None:
        """After :meth:`predict` without a task id: the task each row was attributed to, if
        the method infers tasks (the loop, which knows the truth, records the accuracy)."""
        return None

    def summary(self) -> dict:
        """Extra per-run figures for ``metrics.json`` (free capacity, importance stats...)."""
        return {}

    # ------------------------------------------------------------------ budget
    def extra_examples(self, task: int) -> int:
        """Examples trained on in task ``task`` besides those the loop fed (replayed ones);
        they count in the task's passes. Keep the count in ``history`` (it must survive a
        resume)."""
        return self._count("extra_examples", task)

    def count_extra_examples(self, task: int, n: int) -> None:
        self._add_count("extra_examples", task, n)

    def importance_examples(self, task: int) -> int:
        """Examples run through an importance estimate (Fisher, MAS, Omega: a forward and a
        backward pass each) after task ``task``: a cost apart from the training passes."""
        return self._count("importance_examples", task)

    def count_importance_examples(self, task: int, data: SplitData,
                                  max_samples: int | None) -> None:
        """Record an estimate on ``data``, at most ``max_samples`` of it, after task ``task``."""
        self._add_count("importance_examples", task, len(data) if max_samples is None else min(len(data), int(max_samples)))

    def decision_examples(self, task: int) -> int:
        """Examples run forward (no training) during task ``task`` to decide or store
        something: the pruning guard's validation evaluations, logits stored with replayed
        examples, a task inference's calibration. Recorded as ``decision_passes``, apart from
        the training passes."""
        return self._count("decision_examples", task)

    def count_decision_examples(self, task: int, n: int) -> None:
        self._add_count("decision_examples", task, n)

    def counted_validation(self, validate: Callable[[], float], task: int, n_val: int) -> Callable[[], float]:
        """``validate`` (one pass over a task's ``n_val`` validation examples), each call
        counted in :meth:`decision_examples`: a choice made on labelled validation data."""
        def counted() -> float:
            self.count_decision_examples(task, n_val)
            return validate()
        return counted

    def _count(self, key: str, task: int) -> int:
        """A per-task counter kept in ``history`` (extra state: it survives a resume)."""
        return int(self.history.get(key, {}).get(str(task), 0))

    def _add_count(self, key: str, task: int, n: int) -> None:
        counts = self.history.setdefault(key, {})
        counts[str(task)] = counts.get(str(task), 0) + int(n)

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        """Main-phase epochs that spend ``passes`` training passes per task, this method's
        own extra passes (retraining, replay) included. A method that retrains or replays
        overrides it (``batch_size``, the training batch, sizes a replaying method's extra
        examples per step); raises ``ValueError`` if the budget leaves nothing to train."""
        return passes

    # ------------------------------------------------------------------ state
    def get_extra_state(self) -> dict:
        return copy.deepcopy(self.history)

    def set_extra_state(self, state: dict) -> None:
        self.history = copy.deepcopy(state)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Load state, first creating buffers that appear only after a task (importance...),
        in this module or any submodule."""
        create_missing_buffers(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return repr(self.config)


class MethodWrapper(Method):
    """A run option every method accepts, as a method around another (``inner``): task
    inference, replay drawn from the density model (:mod:`anpyc.methods.wrappers`). It carries
    the inner method's name, tags and config; every hook, count and budget is the inner
    method's unless a subclass changes it, and the counts add the wrapper's own (kept in its
    ``history``). State: ``inner.*`` plus the wrapper's own.

    Example:
        >>> from anpyc.methods import create
        >>> wrapped = MethodWrapper(create("ewc"))
        >>> wrapped.name, wrapped.epochs_for_budget(1.0)
        ('ewc', 1.0)
    """

    def __init__(self, inner: Method) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.name, self.tags = inner.name, inner.tags

    def attach(self, model: ContinualModel) -> None:
        self.inner.attach(model)

    def before_task(self, model: ContinualModel, task: Task, ctx: HookContext) -> None:
        self.inner.before_task(model, task, ctx)

    def training_data(self, task: Task, seen: Sequence[Task], ctx: HookContext) -> SplitData:
        return self.inner.training_data(task, seen, ctx)

    def penalty(self, model: ContinualModel, x: Tensor, y: Tensor, t: Tensor) -> Tensor | None:
        return self.inner.penalty(model, x, y, t)

    def before_step(self, model: ContinualModel) -> None:
        self.inner.before_step(model)

    def after_step(self, model: ContinualModel, optimizer: torch.optim.Optimizer) -> None:
        self.inner.after_step(model, optimizer)

    def after_task(self, model: ContinualModel, task: Task, ctx: HookContext, retrain: Retrain | None = None) -> None:
        self.inner.after_task(model, task, ctx, retrain)

    def eval_context(self, model: ContinualModel,
                     task_id: int | None) -> contextlib.AbstractContextManager[None]:
        return self.inner.eval_context(model, task_id)

    def predict(self, model: ContinualModel, x: Tensor, task_id: int | None) -> Tensor:
        return self.inner.predict(model, x, task_id)

    def summary(self) -> dict:
        return self.inner.summary()

    def extra_examples(self, task: int) -> int:
        return self.inner.extra_examples(task) + super().extra_examples(task)

    def importance_examples(self, task: int) -> int:
        return self.inner.importance_examples(task)

    def decision_examples(self, task: int) -> int:
        return self.inner.decision_examples(task) + super().decision_examples(task)

    def epochs_for_budget(self, passes: float, batch_size: int | None = None) -> float:
        return self.inner.epochs_for_budget(passes, batch_size)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """The inner method's state first (through its own ``load_state_dict``: it may create
        parameters, as HAT's embeddings), then everything."""
        self.inner.load_state_dict({k[len("inner."):]: v for k, v in state_dict.items() if k.startswith("inner.")},
                                   strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def create_missing_buffers(module: nn.Module, state_dict: dict) -> None:
    """Register an empty buffer for every tensor of ``state_dict`` that ``module`` (or the
    submodule its key names) does not have yet, so ``load_state_dict`` can fill it."""
    own = set(module.state_dict())
    for key, value in state_dict.items():
        if key in own or not isinstance(value, Tensor) or key.endswith("_extra_state"):
            continue
        *path, leaf = key.split(".")
        target = module
        for part in path:
            target = getattr(target, part, None)
            if not isinstance(target, nn.Module):
                break
        if isinstance(target, nn.Module):
            target.register_buffer(leaf, torch.empty_like(value))


def shared_params(model: ContinualModel) -> list[tuple[str, nn.Parameter]]:
    """Named shared (body) parameters that methods score and protect.

    Example:
        >>> from anpyc.loop.own import ModelConfig, build_model
        >>> model = build_model(ModelConfig(hidden=(8,)), input_shape=(1, 8, 8))
        >>> model.add_head(4)  # heads are per task: not shared
        0
        >>> [(name, tuple(p.shape)) for name, p in shared_params(model)]
        [('body.1.weight', (8, 64)), ('body.1.bias', (8,))]
    """
    return model.shared_parameters()
