"""Named protocols: the settings a comparison runs under, defined once.

A protocol is a base run config (stream, model, training, scenario) and a budget; the named
suites (:mod:`anpyc.experiments.bench`) run them, ``anpyc tune --protocol NAME`` tunes every method
on them with the grids of ``presets/grids.yaml``, and a shipped preset records the protocol it
was tuned under. Its **fingerprint** is every setting that changes what a method learns:
the stream, model, training and scenario settings and the budget, except

* the sequence length (``stream.tasks``): a preset tuned on a protocol applies to longer or
  shorter sequences of it (``anpyc bench long`` is ``pmnist10`` with 50 tasks);
* what only changes evaluation or the machine (``stream.test_subsample``,
  ``stream.val_subsample``, ``stream.data_dir``, ``train.eval_batch_size``, ``train.device``,
  ``train.threads``, ``train.checkpoint_every``) and the seed.

Presets are applied by ``compare`` and ``bench`` only when the run's fingerprint equals the
preset's; otherwise the defaults run and one warning names the first difference.

A protocol may name a cheaper **tuning proxy** (``tune``: settings deep-updated onto the base
for ``anpyc tune --protocol``). It may change only what the fingerprint leaves out (fewer
tasks, subsampled evaluation): the tuned runs then have the protocol's fingerprint, and the
proxy is recorded in every preset.

Example:
    >>> fp = fingerprint(protocol_config("pmnist10"), "passes")
    >>> fp["train.lr"], fp["budget"], "stream.tasks" in fp
    (0.1, 'passes', False)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from anpyc.config import RunConfig, deep_update
from anpyc.errors import ConfigError, unknown
from anpyc.names import DENSITY_REPLAY, INFERENCE_SCORE
from anpyc.scenario import get_scenario

#: settings left out of a protocol's fingerprint (sequence length, evaluation, machine, seed)
NOT_PROTOCOL = frozenset({
    "seed", "stream.tasks", "stream.test_subsample", "stream.val_subsample", "stream.data_dir",
    "train.eval_batch_size", "train.device", "train.threads", "train.checkpoint_every",
    "stream.source", "stream.description",  # a stream of your own is benchmark "custom", no protocol
})
GENERATIVE_MODELS = ("vae", "gan")
#: settings added after presets were tuned, with the value every earlier run had: left out of a
#: fingerprint at that value (so recorded fingerprints stay valid), part of it at any other
LATER_SETTINGS = {"model.init": "default", "model.init_std": 0.1, "model.init_bias": 0.1,
                  "train.lr_decay": 1.0, "train.lr_decay_epochs": 1.0}


@dataclass(frozen=True)
class Protocol:
    """``base``: the run config without a method (a mapping, as in a config file);
    ``budget``: ``passes`` (equal training passes per task) or ``epochs``; ``tune``: the
    tuning proxy's changes to ``base`` (only settings outside the fingerprint);
    ``tune_seeds``: seeds per grid point; ``inference``: the task-inference score of its
    ``<method>+inference`` rows (where the scenario hides the task id); ``density_replay``: the
    run options of its ``<method>+density-replay`` rows (:mod:`anpyc.methods.density_replay`)."""

    description: str
    base: dict
    budget: str = "passes"
    tune: dict = field(default_factory=dict)
    tune_seeds: int = 1
    inference: str = INFERENCE_SCORE
    density_replay: dict = field(default_factory=lambda: dict(DENSITY_REPLAY))


#: The shared protocol of ANPyC's measurements (docs/anpyc.md): permuted MNIST, task 1
#: unpermuted, 784-256-256 ReLU MLP, one head per task, plain SGD lr 0.1, batch 128, a fresh
#: optimizer per task, one epoch per task, standardised inputs.
PMNIST = {
    "stream": {"benchmark": "permuted-mnist", "tasks": 10},
    "model": {"hidden": [256, 256]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 128, "optimizer": "sgd"},
}

#: The protocol most papers and libraries use for task-aware permuted MNIST: inputs
#: standardised (training-set mean and std, about 0.1307 / 0.3081), SGD lr 0.01 with momentum
#: 0.9 and one optimizer for the whole stream, batch 128, 784-256-256, one epoch, every task
#: permuted.
PMNIST_COMMON = {
    "stream": {"benchmark": "permuted-mnist", "tasks": 10, "first_task_unpermuted": False, "standardize": True},
    "model": {"hidden": [256, 256]},
    "train": {"epochs": 1, "lr": 0.01, "momentum": 0.9, "batch_size": 128, "optimizer": "sgd",
              "reset_optimizer": False},
}

#: Hsu et al. 2018's task-aware split MNIST (MLP 400-400, Adam lr 0.001, batch 128, 4 epochs
#: per task, one head per task) with 2000 training examples per task (CPU budget).
SPLIT_MNIST = {
    "stream": {"benchmark": "split-mnist", "subsample": 2000},
    "model": {"hidden": [400, 400]},
    "train": {"epochs": 4, "lr": 0.001, "batch_size": 128, "optimizer": "adam"},
}

#: Domain-incremental permuted MNIST: the common protocol's settings with one shared head and
#: no task id at test time (van de Ven et al. 2022's "domain" scenario).
PMNIST_DOMAIN = {**PMNIST_COMMON, "scenario": "domain"}

#: Class-incremental split MNIST as in DER++'s sequential MNIST (Buzzega et al. 2020; mammoth):
#: 5 tasks of 2 classes, one head over every class seen, no task id at test time, MLP
#: 784-100-100, SGD lr 0.03, batch 10, one epoch per task, full data.
SPLIT_CLASS = {
    "stream": {"benchmark": "split-mnist"},
    "model": {"hidden": [100, 100]},
    "train": {"epochs": 1, "lr": 0.03, "batch_size": 10, "optimizer": "sgd"},
    "scenario": "class",
}

PROTOCOLS: dict[str, Protocol] = {
    "pmnist10": Protocol(
        "10-task permuted MNIST (task 1 unpermuted), full data, 784-256-256, SGD lr 0.1, batch 128, "
        "a fresh optimizer per task, 1 epoch per task",
        # tuned on all 10 tasks: on a 5-task proxy, where little is forgotten, consolidation's
        # strength was chosen too weak (docs/benchmarks/pmnist10/full-length-tuning)
        PMNIST, tune={"stream": {"test_subsample": 2000}},
    ),
    "pmnist10-common": Protocol(
        "the common task-aware permuted-MNIST protocol: 10 tasks, every task permuted, standardised "
        "inputs, 784-256-256, SGD lr 0.01 momentum 0.9, one optimizer for the stream, batch 128, 1 epoch",
        # tuned on all 10 tasks, as pmnist10 (its EWC preset, chosen on 5 tasks, was worse on the
        # 10 than EWC's defaults: docs/benchmarks/pmnist10-common)
        PMNIST_COMMON, tune={"stream": {"test_subsample": 2000}},
    ),
    "split-mnist": Protocol(
        "5-task split MNIST, task-aware, 2000 training examples per task, 400-400, Adam lr 0.001, "
        "batch 128, 4 epochs per task (Hsu et al. 2018's setting, subsampled)",
        SPLIT_MNIST,
    ),
    "pmnist10-domain": Protocol(
        "10-task domain-incremental permuted MNIST: the common protocol with one shared head and no task id "
        "at test time",
        # tuned on all 10 tasks, as pmnist10: on the 5-task proxy SI's penalty was chosen 10 times
        # too strong for the full stream (docs/benchmarks/pmnist10-domain/full-length-tuning)
        PMNIST_DOMAIN, tune={"stream": {"test_subsample": 2000}},
        # its tasks are permutations of the same ten digits: they differ in the whole input, not
        # in their classes. On validation (`anpyc tune --protocol pmnist10-domain --method packnet
        # --param task_inference=input_density,pooled_density`) both scores find every input's
        # task and give the same figures; the pooled one costs a tenth (docs/benchmarks/inference-time)
        inference="pooled_density",
    ),
    "split-mnist-class": Protocol(
        "5-task class-incremental split MNIST (DER++'s sequential MNIST): one head over every class seen, no "
        "task id at test time, 784-100-100, SGD lr 0.03, batch 10, 1 epoch per task",
        SPLIT_CLASS,
        # a class's inputs are many-shaped (a 7 with a bar or without, a shirt, a coat): a class
        # modelled by a mixture of PPCA models of the intensities' square roots, the form `anpyc
        # tune --protocol P --method density` chose on both class protocols; on validation
        # (`anpyc tune --protocol P --method packnet --param
        # task_inference=input_density,mixture_density`) it finds the task for more inputs, and
        # (`... --param task_inference=mixture_density,mixture_combined,mixture_evidence`) here
        # the heads' evidence added to it gives more right answers; the features' gets weight 0
        # (the same answers: the simpler score) (docs/benchmarks/<P>/choices)
        inference="mixture_combined",
        # `anpyc tune --protocol split-mnist-class --method finetune --param density_replay=10,30
        # --param density_weight=30,100` (docs/benchmarks/<P>/choices/finetune-density-replay)
        density_replay={"density_replay": 10, "density_weight": 30.0},
    ),
    "split-fmnist-class": Protocol(
        "5-task class-incremental split Fashion-MNIST, as split-mnist-class",
        {**SPLIT_CLASS, "stream": {"benchmark": "split-fashion-mnist"}},
        # chosen on validation as split-mnist-class's; here the heads' evidence added to the
        # mixture gives fewer right answers (docs/benchmarks/<P>/choices)
        inference="mixture_density",
        # `anpyc tune --protocol split-fmnist-class --method finetune --param density_replay=10,30
        # --param density_weight=30,100` (docs/benchmarks/<P>/choices/finetune-density-replay)
        density_replay={"density_replay": 10, "density_weight": 100.0},
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(unknown("protocol", name, PROTOCOLS))
    return PROTOCOLS[name]


def protocol_config(name: str, tuning: bool = False) -> RunConfig:
    """The base run config of protocol ``name`` (method ``finetune``); ``tuning``: with its
    tuning proxy applied."""
    p = get_protocol(name)
    return RunConfig.from_dict(deep_update(p.base, p.tune) if tuning else p.base)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


def fingerprint(cfg: RunConfig, budget: str | None) -> dict[str, Any]:
    """The settings of ``cfg`` (and the ``budget``; ``None``: not part of it, as for a single
    run) that define a protocol, flattened (``{"train.lr": 0.1, ...}``) and sorted.

    Example:
        >>> a = fingerprint(RunConfig.from_dict({"stream": {"tasks": 10}}), "passes")
        >>> a == fingerprint(RunConfig.from_dict({"stream": {"tasks": 50}, "seed": 3}), "passes")
        True
    """
    data = cfg.to_dict()
    data.pop("method", None)
    data.pop("method_params", None)
    if data.pop("task_inference", "none") != "none":  # a method's option: its protocol is the scenario's
        data["model"]["head"] = get_scenario(cfg.scenario).head
    data.pop("density_replay", None)  # a method's option too (anpyc.methods.density_replay)
    data.pop("density_weight", None)
    if cfg.model.name not in GENERATIVE_MODELS:
        data.pop("generative", None)
    flat = {k: v for k, v in _flatten(data).items()
            if k not in NOT_PROTOCOL and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    if budget is not None:
        flat["budget"] = budget
    return dict(sorted(flat.items()))


def protocol_fingerprint(name: str) -> dict[str, Any]:
    """The fingerprint of protocol ``name`` (its base config and budget)."""
    return fingerprint(protocol_config(name), get_protocol(name).budget)


def digest(fp: dict[str, Any]) -> str:
    """A short, stable hash of a fingerprint (sha256 of its canonical JSON, 16 hex digits)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:16]


def differences(preset: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """Where a run's fingerprint differs from a preset's, one phrase each, in key order
    (a key that only one side has counts; ``budget`` only when both have one).

    Example:
        >>> differences({"train.optimizer": "adam", "budget": "passes"}, {"train.optimizer": "sgd"})
        ["train.optimizer 'adam' (preset) vs 'sgd' (run)"]
    """
    out = []
    for key in sorted(set(preset) | set(run)):
        if key == "budget" and (key not in preset or key not in run):
            continue
        a, b = preset.get(key, "<unset>"), run.get(key, "<unset>")
        if a != b:
            out.append(f"{key} {a!r} (preset) vs {b!r} (run)")
    return out


def matching_protocols(cfg: RunConfig, budget: str | None) -> list[str]:
    """The protocols whose fingerprint equals that of ``cfg`` under ``budget``."""
    fp = fingerprint(cfg, budget)
    return [n for n in PROTOCOLS if not differences(protocol_fingerprint(n), fp)]
