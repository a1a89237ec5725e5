"""Typed, frozen run configuration that loads from YAML/TOML/dicts and rejects unknown keys.

Example:
    >>> cfg = RunConfig.from_dict({"method": "ewc", "train": {"epochs": 2}})
    >>> cfg.train.epochs
    2.0
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import yaml

from anpyc.errors import ConfigError, did_you_mean, first_line
from anpyc.scenario import SCENARIOS, Scenario, get_scenario

T = typing.TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert the harmless cases.

    Accepted conversions: int -> float, list -> tuple, strings of numbers and comma
    separated lists (from the command line). Anything else raises :class:`ConfigError`.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(value, typing.get_args(tp), where)
    if origin is Literal:
        return _coerce_literal(value, typing.get_args(tp), where)
    if origin in (tuple, list):
        return _coerce_sequence(value, origin, typing.get_args(tp), where)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    scalar = _SCALARS.get(tp) if isinstance(tp, type) else None
    if scalar is not None:
        return scalar(value, where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _coerce_union(value: Any, args: tuple, where: str) -> Any:
    """The first member of an ``X | Y | None`` that takes ``value`` (``none``/``null`` for None)."""
    if value is None and type(None) in args:
        return None
    if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return coerce(value, arg, where)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")


def _coerce_literal(value: Any, args: tuple, where: str) -> Any:
    if isinstance(value, bool) and str(value).lower() in args:  # YAML's `true` for a choice named "true"
        return str(value).lower()
    if value in args:
        return value
    raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")


def _coerce_sequence(value: Any, origin: type, args: tuple, where: str) -> list | tuple:
    """A list or tuple of the annotated items; a comma-separated string or one number counts."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v != ""]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    inner = args[0] if args else Any
    items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _coerce_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"{where}: expected true/false, got {value!r}")


def _coerce_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected an integer, got {value!r}")


def _coerce_float(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    number = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(number):  # nan passes no range check, inf passes "> 0"
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return number


def _coerce_str(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected a string, got {value!r}")


_SCALARS: dict[Any, Callable[[Any, str], Any]] = {
    bool: _coerce_bool, int: _coerce_int, float: _coerce_float, str: _coerce_str,
}


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are errors."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    strange = sorted(set(data) - names)
    if strange:
        hint = did_you_mean(strange[0], sorted(names)) if len(strange) == 1 else ""
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, strange))}{hint}; "
            + (f"known: {', '.join(sorted(names))}" if names else "it takes none")
        )
    kwargs = {k.replace("-", "_"): coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict of lists/ints/strings (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


#: ``stream.benchmark`` of a run on your own data (a stream built by ``stream_from_datasets``)
CUSTOM = "custom"


@dataclass(frozen=True)
class StreamConfig:
    """Which task stream to build: ``benchmark`` names a registered stream
    (:data:`anpyc.data.streams.STREAMS`; any other name is refused when the stream is built).

    ``subsample`` limits the training examples per task (quick runs); ``val_fraction`` of the
    training set is held out for model selection, test data is only for reporting.
    ``augment`` (CIFAR streams only) adds random crops (padding 4) and horizontal flips to
    the training split. ``standardize`` (image streams: the MNIST family and CIFAR) maps
    inputs to ``(x - mean[c]) / std[c]`` with per-channel statistics of the training rows
    (validation and test rows never shape them), after any rotation or permutation; the
    statistics are in each task's ``info`` and in ``metrics.json``. ``false`` keeps pixels
    in [0, 1]. Generative models always see [0, 1] pixels (their likelihood needs them).

    Example:
        >>> cfg = StreamConfig(benchmark="blobs", tasks=2)  # synthetic: nothing to download
        >>> from anpyc.data import make_stream
        >>> len(make_stream(cfg, seed=0)), cfg.val_fraction
        (2, 0.1)
    """

    benchmark: str = "permuted-mnist"
    tasks: int | None = None
    subsample: int | None = None
    test_subsample: int | None = None
    val_subsample: int | None = None
    val_fraction: float = 0.1
    first_task_unpermuted: bool = True
    data_dir: str | None = None
    augment: bool = False
    classes_per_task: int = 2  # split benchmarks only: 1 gives one task per class
    standardize: bool = True
    source: str | None = None  # benchmark "custom": MODULE:FUNCTION (or FILE.py:FUNCTION) building your stream
    description: str | None = None  # benchmark "custom": what the stream is (recorded)

    #: one sentence per setting: the command line's help (``anpyc run --help``)
    HELP: ClassVar[dict[str, str]] = {
        "benchmark": "The task stream: a registered stream (`anpyc list streams`).",
        "tasks": "Number of tasks in the stream (default: the stream's own, e.g. 10 for permuted-mnist, 5 for split-mnist).",
        "subsample": "Keep this many training examples per task, drawn with the run's seed (default: all; quick runs).",
        "test_subsample": "Keep this many test examples per task (default: all).",
        "val_subsample": "Keep this many validation examples per task (default: all that val-fraction holds out).",
        "val_fraction": "Share of each task's training set held out as its validation split, in (0, 0.5).",
        "first_task_unpermuted": "Permuted and rotated streams: task 1 sees the images as they are (false: permute it too).",
        "data_dir": "Where fetched data sets are (default: $ANPYC_DATA or ~/.cache/anpyc).",
        "augment": "CIFAR streams: random crops (padding 4) and horizontal flips of the training batches.",
        "classes_per_task": "Split streams: classes per task (1 gives one task per class).",
        "standardize": "Image streams: standardise inputs per channel with the training rows' mean and std (false: pixels in [0, 1]).",
        "source": "A stream of your own: MODULE:FUNCTION or FILE.py:FUNCTION returning a stream built by "
                  "anpyc.data.stream_from_datasets (sets --benchmark custom).",
        "description": "A stream of your own: what it is, in words (recorded; default: made from its data).",
    }

    def __post_init__(self) -> None:
        _check(self.tasks is None or self.tasks >= 1, f"stream.tasks must be >= 1, got {self.tasks}")
        _check(self.subsample is None or self.subsample >= 1, "stream.subsample must be >= 1")
        _check(self.test_subsample is None or self.test_subsample >= 1, "stream.test_subsample must be >= 1")
        _check(self.val_subsample is None or self.val_subsample >= 1, "stream.val_subsample must be >= 1")
        _check(0.0 < self.val_fraction < 0.5, f"stream.val_fraction must be in (0, 0.5), got {self.val_fraction}")
        _check(self.classes_per_task >= 1, f"stream.classes_per_task must be >= 1, got {self.classes_per_task}")
        _check(self.source is None or self.benchmark == CUSTOM,
               f"stream.source builds a stream of your own: it needs benchmark {CUSTOM!r}, not {self.benchmark!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Network: a shared body and one head per task (``head='multi'``, task-aware) or one
    shared head (``head='single'``: domain- or class-incremental). The head follows the
    run's scenario (``RunConfig.scenario``); setting it only restates that.

    ``width`` and ``batch_norm`` are for the convolutional bodies (``cnn``, ``resnet18``;
    ``None``: the model's default, see :mod:`anpyc.models.cnn`). ``init``: ``default`` (PyTorch's)
    or ``truncated_normal`` (every linear and convolutional weight of the body and heads from a
    normal of std ``init_std`` cut at two std, biases ``init_bias``: TensorFlow's
    ``truncated_normal`` / ``constant`` as in the ANPyC authors' code).

    Example:
        >>> cfg = ModelConfig(hidden=(8,))  # an MLP with one hidden layer of 8 units
        >>> from anpyc.models import build_model
        >>> build_model(cfg, input_shape=(1, 8, 8)).add_head(4)  # the first task's head
        0
    """

    name: str = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    head: Literal["multi", "single"] | None = None  # None: the scenario's (RunConfig.scenario)
    dropout: float = 0.0
    width: int | None = None
    batch_norm: bool | None = None
    init: Literal["default", "truncated_normal"] = "default"
    init_std: float = 0.1
    init_bias: float = 0.1

    HELP: ClassVar[dict[str, str]] = {
        "name": "The network's body: mlp, cnn (SPP's 3-conv CNN), resnet18 (GEM's reduced ResNet-18), or the "
                "generators vae and gan (continual generation).",
        "hidden": "Widths of the MLP's hidden layers, comma-separated (e.g. 256,256).",
        "head": "The output head; it follows --scenario (multi: one per task; single: shared), so leave it unset.",
        "dropout": "Dropout probability after each hidden layer of the MLP, in [0, 1).",
        "width": "Convolutional bodies: channels of the first layer (cnn: w-2w-4w channels, FC 8w; default: the model's).",
        "batch_norm": "Convolutional bodies: batch normalisation on or off (default: cnn off, resnet18 on).",
        "init": "Weight initialisation: default (PyTorch's) or truncated_normal (TensorFlow's, as the authors' ANPyC code).",
        "init_std": "truncated_normal: standard deviation of the weights (cut at two std).",
        "init_bias": "truncated_normal: the value every bias starts at.",
    }

    def __post_init__(self) -> None:
        _check(self.width is None or self.width >= 1, f"model.width must be >= 1, got {self.width}")
        _check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
               f"model.hidden must be one or more positive widths (the body the tasks share), got {self.hidden}")
        _check(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _check(self.init_std > 0, f"model.init_std must be > 0, got {self.init_std}")


_FLOAT32_MAX = 3.4028234663852886e38
#: the device types torch accepts (``torch.device``), an index optional
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "xla", "meta", "hpu", "mtia", "ipu", "hip", "ve", "fpga", "maia",
                "lazy", "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")
_DEVICE = re.compile(r"[a-z]+(:[0-9]+)?")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, identical for every method in a comparison.

    ``epochs`` of a task's main training phase may be fractional (0.5: half the batches of
    one epoch), so that a comparison can give every method the same training passes (see
    :func:`anpyc.experiments.compare.compare`'s budget). A fresh optimizer (learning rate and momentum
    reset) is built for every task unless ``reset_optimizer`` is false. ``lr_decay``: the learning
    rate is multiplied by it every ``lr_decay_epochs`` epochs of a task (a staircase that
    restarts with every task and goes on through a method's retraining; 1: constant).

    Example:
        >>> cfg = TrainConfig(epochs=0.5, lr=0.01, optimizer="adam")
        >>> cfg.epochs, cfg.batch_size, cfg.device
        (0.5, 128, 'cpu')
        >>> RunConfig.from_dict({"train": {"epochs": 2, "lr": 0.01}}).train.lr
        0.01
    """

    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 0.1
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    reset_optimizer: bool = True
    grad_clip: float | None = None
    eval_batch_size: int = 1000
    device: str = "cpu"
    threads: int | None = None
    checkpoint_every: int | None = None  # epochs; a run dir always gets one after every task
    lr_decay: float = 1.0
    lr_decay_epochs: float = 1.0

    HELP: ClassVar[dict[str, str]] = {
        "epochs": "Training passes per task (--budget passes, the default: retraining and replay included) or "
                  "epochs of each task's main training (--budget epochs); may be fractional.",
        "batch_size": "Training batch size (the global batch when several processes train).",
        "lr": "The optimizer's learning rate.",
        "optimizer": "The optimizer.",
        "momentum": "SGD momentum, in [0, 1).",
        "weight_decay": "L2 weight decay of the optimizer.",
        "reset_optimizer": "A fresh optimizer for every task (false: one optimizer for the whole stream).",
        "grad_clip": "Clip the gradient norm to this value (default: no clipping).",
        "eval_batch_size": "Batch size of evaluation (memory only; results do not change).",
        "device": "Torch device to train on: cpu, cuda, cuda:1, mps, ...",
        "threads": "Torch threads for this run (default: torch's choice; compare --jobs K: cores / K).",
        "checkpoint_every": "Also checkpoint every N epochs inside a task (a checkpoint follows every task anyway).",
        "lr_decay": "Multiply the learning rate by this every lr_decay_epochs epochs of a task (reset for every task; 1: constant).",
        "lr_decay_epochs": "Epochs between two learning-rate decays (staircase).",
    }

    def __post_init__(self) -> None:
        _check(self.epochs > 0, f"train.epochs must be > 0, got {self.epochs}")
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _check(self.lr > 0, f"train.lr must be > 0, got {self.lr}")
        # larger values overflow float32 parameters inside the optimizer step
        _check(self.lr <= _FLOAT32_MAX and self.weight_decay <= _FLOAT32_MAX, "train.lr and train.weight_decay must be <= 3.4e38")
        _check(0 <= self.momentum < 1, f"train.momentum must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip must be > 0")
        _check(self.eval_batch_size >= 1, "train.eval_batch_size must be >= 1")
        _check(self.threads is None or self.threads >= 1, "train.threads must be >= 1")
        _check(self.checkpoint_every is None or self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        _check(0 < self.lr_decay <= 1 and self.lr_decay_epochs > 0, "need 0 < train.lr_decay <= 1 and train.lr_decay_epochs > 0")
        # checked without torch (a mistyped device fails at once); the runner asks torch too
        _check(bool(_DEVICE.fullmatch(self.device)) and self.device.split(":")[0] in DEVICE_TYPES,
               f"train.device: expected a torch device such as cpu, cuda or cuda:1, got {self.device!r}")


@dataclass(frozen=True)
class GenerativeConfig:
    """Settings used only with generative models (``--model vae|gan``).

    The judging classifier (``classifier``, trained once on the data set's full training set
    for ``classifier_epochs`` with ``classifier_seed`` and cached in the data dir) labels
    ``samples_per_class`` generated images per class after each task.
    """

    latent_dim: int = 32
    vae_protect: Literal["decoder", "all"] = "decoder"
    samples_per_class: int = 500
    classifier: Literal["cnn", "mlp"] = "cnn"
    classifier_epochs: int = 2
    classifier_seed: int = 0
    classifier_subsample: int | None = None
    grid_columns: int = 10

    HELP: ClassVar[dict[str, str]] = {
        "latent_dim": "Size of the generator's latent code.",
        "vae_protect": "VAE: what the method protects, the decoder only or the encoder too.",
        "samples_per_class": "Generated samples per class judged after each task (recognition share and FD).",
        "classifier": "The judging classifier's network (trained once per data set and cached in the data dir).",
        "classifier_epochs": "Epochs of the judging classifier's training.",
        "classifier_seed": "Seed of the judging classifier's training.",
        "classifier_subsample": "Train the judging classifier on this many examples (default: the whole training set).",
        "grid_columns": "Columns of the sample grid images (samples/task_<t>.png).",
    }

    def __post_init__(self) -> None:
        _check(self.latent_dim >= 1, f"generative.latent_dim must be >= 1, got {self.latent_dim}")
        _check(self.samples_per_class >= 2, "generative.samples_per_class must be >= 2")
        _check(self.classifier_epochs >= 1, "generative.classifier_epochs must be >= 1")
        _check(self.classifier_subsample is None or self.classifier_subsample >= 10, "generative.classifier_subsample must be >= 10")
        _check(self.grid_columns >= 1, "generative.grid_columns must be >= 1")


#: run options every method accepts among its parameters (``--param KEY=VALUE``), moved from
#: ``method_params`` to the run config's own fields
RUN_OPTIONS = frozenset({"task_inference", "density_replay", "density_weight"})
#: the default weight of the network's evidence beside the density model's (density replay)
DENSITY_WEIGHT = 100.0


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; saved as ``config.yaml`` beside its results.

    ``method_params`` are the method's own hyper-parameters: a mapping as given, or the
    method's config dataclass (every field, defaults filled in) once the method registry has
    typed them (:func:`anpyc.methods.typed`, at the boundary: the command line, ``run``, a
    comparison's jobs). ``scenario`` names what is known at test time, one of
    :data:`anpyc.scenario.SCENARIOS`: ``task`` (task ids, one head per task), ``domain`` (one
    head, same outputs for every task), ``class`` (one head growing over the classes seen) or
    one registered with :func:`anpyc.scenario.register_scenario`; it decides the model's head.

    ``task_inference`` (``none`` by default) trains any method task-aware, one head per task,
    and infers each test input's task with that score (:mod:`anpyc.methods.task_inference`);
    only where the scenario hides the task id. ``density_replay`` (``0``, off, by default)
    trains any method on that many inputs per step drawn from a class density model of the
    earlier tasks, and answers with the model's and the network's evidence, the network's
    weighted by ``density_weight`` (:mod:`anpyc.methods.density_replay`). Every method accepts
    these among its parameters (``--param task_inference=input_density``, ``--param
    density_replay=10``): they are moved here from ``method_params`` (:data:`RUN_OPTIONS`).

    Example:
        >>> cfg = RunConfig.from_dict({"method": "ewc", "method_params": {"task_inference": "input_density"},
        ...                            "scenario": "class"})
        >>> cfg.task_inference, cfg.method_params, cfg.model.head
        ('input_density', {}, 'multi')
    """

    method: str = "finetune"
    method_params: Any = field(default_factory=dict)
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)
    scenario: str = "task"  # a name of anpyc.scenario.SCENARIOS
    task_inference: Literal["none", "input_density", "pooled_density", "mixture_density", "combined",
                            "mixture_combined", "mixture_evidence", "entropy", "feature_density"] = "none"
    density_replay: int = 0
    density_weight: float = DENSITY_WEIGHT

    def __post_init__(self) -> None:
        if self.method_params is None:
            object.__setattr__(self, "method_params", {})
        if not isinstance(self.method_params, dict) and not dataclasses.is_dataclass(self.method_params):
            raise ConfigError(f"method_params: expected a mapping, got {self.method_params!r}")
        if isinstance(self.method_params, dict) and RUN_OPTIONS & set(self.method_params):
            params = dict(self.method_params)  # every method accepts them: they are the run's, not the method's
            for key in sorted(RUN_OPTIONS & set(params)):
                object.__setattr__(self, key, coerce(params.pop(key), _field_type(RunConfig, key), f"method_params.{key}"))
            object.__setattr__(self, "method_params", params)
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.density_replay < 0 or self.density_weight < 0:
            raise ConfigError(f"density_replay and density_weight must be >= 0, got {self.density_replay} and "
                              f"{self.density_weight}")
        if not self.density_replay and self.density_weight != DENSITY_WEIGHT:
            raise ConfigError("density_weight weighs the network's evidence against the density model's: it needs "
                              "density_replay > 0")
        if self.density_replay and self.task_inference != "none":
            raise ConfigError("density_replay and task_inference: one of the two per run (the density model "
                              "answers with the network in one, picks a head in the other)")
        scenario = get_scenario(self.scenario)
        if self.task_inference != "none" and scenario.task_id_at_test:
            raise ConfigError(f"task_inference {self.task_inference!r}: scenario {self.scenario!r} gives the task id at test "
                              "time, there is nothing to infer (use --scenario domain or class)")
        head = self.trained_scenario.head  # a head set for the run with task inference or without it is its own
        if self.model.head is not None and self.model.head not in (scenario.head, scenario.with_task_inference().head):
            raise ConfigError(
                f"model.head {self.model.head!r} does not fit scenario {self.scenario!r} (which uses a {head} head): "
                "set the scenario instead (--scenario NAME)"
            )
        object.__setattr__(self, "model", dataclasses.replace(self.model, head=head))

    def run_options(self) -> dict[str, Any]:
        """The run options (:data:`RUN_OPTIONS`) this run asks for, as given among a method's
        parameters: task inference when on, density replay and its weight when on.

        Example:
            >>> RunConfig.from_dict({"method_params": {"density_replay": 10}, "scenario": "class"}).run_options()
            {'density_replay': 10, 'density_weight': 100.0}
        """
        return {**({"task_inference": self.task_inference} if self.task_inference != "none" else {}),
                **({"density_replay": self.density_replay, "density_weight": self.density_weight}
                   if self.density_replay else {})}

    @property
    def trained_scenario(self) -> Scenario:
        """The scenario the loop trains in: the run's, or with task inference its task-aware
        training (one head per task; :meth:`anpyc.scenario.Scenario.with_task_inference`)."""
        scenario = get_scenario(self.scenario)
        return scenario.with_task_inference() if self.task_inference != "none" else scenario

    def params_dict(self) -> dict:
        """The method's hyper-parameters as a plain dict (every field, defaults included, once
        typed by the method registry)."""
        return to_dict(self.method_params) if dataclasses.is_dataclass(self.method_params) else dict(self.method_params)

    def with_params(self, method: str | None = None, **params: Any) -> RunConfig:
        """This config for ``method`` (default: the same) with ``params`` over the current
        ones (a different method starts from its own defaults)."""
        method = method or self.method
        base = self.params_dict() if method == self.method else {}
        return dataclasses.replace(self, method=method, method_params={**base, **params})

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        return from_dict(cls, as_input(data), "config")

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(load_mapping(path))

    def to_dict(self) -> dict:
        return to_dict(self)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)


def as_input(data: dict | None) -> dict:
    """A config mapping as input: the provenance a saved config carries (``meta``) dropped, and
    a saved config from before a default changed read as it ran. A saved config holds every
    field, so one without ``stream.standardize`` ran on [0, 1] pixels (before inputs were
    standardised by default): reproduce, resume and ``--config`` keep it so. A saved task-scenario
    config's ``method_params.task_inference`` (an option of three methods that did nothing there)
    is dropped.

    Example:
        >>> as_input({"stream": {"benchmark": "split-mnist"}, "meta": {"git_commit": "abc"}})
        {'stream': {'benchmark': 'split-mnist', 'standardize': False}}
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping, got {type(data).__name__}")
    data = dict(data or {})
    saved = data.pop("meta", None) is not None
    stream = data.get("stream")
    if saved and isinstance(stream, dict) and "standardize" not in stream:
        data["stream"] = {**stream, "standardize": False}
    params = data.get("method_params")
    scenario = data.get("scenario", "task")
    if (saved and isinstance(params, dict) and "task_inference" in params and isinstance(scenario, str)
            and scenario in SCENARIOS and SCENARIOS[scenario].task_id_at_test):
        # PackNet's, HAT's and anpyc-masks' own option before every method could infer tasks: with task
        # ids at test time it did nothing (elsewhere it is read as the run's task_inference)
        data["method_params"] = {k: v for k, v in params.items() if k != "task_inference"}
    return data


def load_mapping(path: str | Path) -> dict:
    """Read a YAML (``.yaml``/``.yml``/``.json``) or TOML file into a dict, with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except Exception as exc:  # yaml and toml raise their own error types
        raise ConfigError(f"malformed config file {path}: {first_line(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    return data


def deep_update(base: dict, updates: dict) -> dict:
    """Merge nested dicts (updates win); neither input is modified."""
    out = dict(base)
    for k, v in updates.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out
