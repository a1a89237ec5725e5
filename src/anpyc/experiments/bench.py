"""Named suites: fixed sets of methods on a protocol, run through :func:`anpyc.experiments.compare.compare`.

``anpyc bench NAME --out DIR`` writes ``bench.json`` (the summary, the exact command with a
relative ``--out``, the machine, the date, the parameters and which presets were applied) and
``bench.md``, and prints the table. A suite runs a protocol of :mod:`anpyc.experiments.protocols`
(``pmnist10``, ``pmnist10-common``, ``split-mnist``; ``long`` is ``pmnist10`` with 50 tasks);
each method runs with its tuned preset when one was tuned under that protocol
(``anpyc tune --protocol``), else its defaults.

Example:
    >>> "pmnist10" in SUITES and "split-mnist-class" in SUITES
    True
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anpyc import rundir
from anpyc.config import RunConfig, deep_update
from anpyc.errors import ConfigError, unknown
from anpyc.experiments.protocols import PMNIST, PROTOCOLS
from anpyc.io import atomic_write_text, relative_command, write_json
from anpyc.methods import DEFAULT_METHOD, METHODS, method_names
from anpyc.names import DENSITY_REPLAY_SUFFIX, INFERENCE_SUFFIX

log = logging.getLogger(__name__)


def reference_preset() -> tuple[dict, dict]:
    """The shipped ``anpyc-reference`` preset as ``(base config, method_params)``: what
    ``anpyc bench reference`` runs, exactly (its stream, model and training; ANPyC as the
    authors' code)."""
    from anpyc.experiments.presets import load_preset

    data = load_preset("anpyc-reference")
    return {k: data[k] for k in ("stream", "model", "train", "scenario") if k in data}, dict(data["method_params"])


REFERENCE_BASE, REFERENCE_ANPYC = reference_preset()


@dataclass(frozen=True)
class Methods:
    """A suite's methods, read from the registry when the suite runs (a method registered
    later is in it; :func:`anpyc.methods.method_names`): with ``tagged``, the default method
    and the methods carrying one of those tags; else every method carrying none of ``without``.

    Example:
        >>> Methods(tagged=("lower-bound", "upper-bound")).names()
        ('anpyc', 'finetune', 'joint')
    """

    without: frozenset[str] = frozenset()
    tagged: tuple[str, ...] = ()
    with_default: bool = True  # with ``tagged``: the default method first

    def names(self) -> tuple[str, ...]:
        if self.tagged:
            chosen = [m for tag in self.tagged for m in method_names(tags={tag})]
            return tuple(dict.fromkeys([DEFAULT_METHOD, *chosen] if self.with_default else chosen))
        return tuple(method_names(without=self.without))


#: every method that trains a network (the classifiers of the inputs alone join the tables
#: without task ids, where a model of the inputs is what a network must beat)
ALL_METHODS = Methods(without=frozenset({"no-network"}))
#: without task labels at test time: replay at two buffer sizes (the aliases below), and the
#: classifiers of the inputs alone
NO_TASK_ID = Methods(without=frozenset({"needs-task-id"}))
#: the default method with fine-tune (lower bound) and joint training (upper bound)
WITH_BOUNDS = Methods(tagged=("lower-bound", "upper-bound"))
NO_TASK_ID_ALIASES = {
    "er-200": ("er", {"buffer": 200}),
    "derpp-200": ("derpp", {"buffer": 200}),
}
#: PackNet given anpyc-masks' warm start (released weights keep their trained values; the paper
#: zeroes them), the setting that carries anpyc-masks' lead over PackNet: a row on the task-aware
#: suites where both run, so the credit shows in their tables (docs/baselines.md)
WARM_START_ALIASES = {"packnet-reinit-keep": ("packnet", {"reinit": "keep"})}

#: ANPyC with every mechanism of the paper (structure-aware Omega, the penalty, element-wise
#: updating, pruning with retraining), pinned so the rows do not move with the defaults; Omega
#: in the removal form this stage was tuned and run with (the better pruning criterion in the
#: masks variant: docs/anpyc.md)
PAPER_MECHANISMS = {"importance": "omega", "taylor_form": "removal", "structure": "spread", "update": "elementwise",
                    "prune": True, "keep_schedule": "reference", "prune_steps": 1, "retrain_epochs": 0.25}
#: the ablation's rows: one mechanism removed (or replaced) per row, on top of
#: ``PAPER_MECHANISMS``, each with its own tuned strength (``ABLATION_TUNED``)
ABLATION_ROWS: dict[str, dict] = {
    "anpyc-all": {},
    "no-structure": {"structure": "none"},
    "omega-magnitude": {"importance": "magnitude"},
    "omega-fisher": {"importance": "fisher"},
    "no-elementwise": {"update": "plain"},
    "no-pruning": {"prune": False},
    "no-consolidation": {"lam": 0.0, "update": "plain"},  # pruning only
}
#: Each row's knob chosen on the protocol's validation split by the committed commands of
#: docs/benchmarks/ablation/tune.sh (4 points per row; the grids there). A test checks each value
#: is the arg-max of its committed tune.json.
ABLATION_TUNED: dict[str, dict[str, dict]] = {
    "pmnist10": {
        "anpyc-all": {"lam": 3.0}, "no-structure": {"lam": 10.0}, "omega-magnitude": {"lam": 0.1},
        "omega-fisher": {"lam": 3.0}, "no-elementwise": {"lam": 1.0}, "no-pruning": {"lam": 1.0},
        "no-consolidation": {"retrain_epochs": 0.5},
    },
    "pmnist10-domain": {
        "anpyc-all": {"lam": 3.0}, "no-structure": {"lam": 10.0}, "omega-magnitude": {"lam": 0.3},
        "omega-fisher": {"lam": 10.0}, "no-elementwise": {"lam": 3.0}, "no-pruning": {"lam": 3.0},
        "no-consolidation": {"retrain_epochs": 0.05},
    },
}


PROTOCOLS_OF_ABLATION = tuple(ABLATION_TUNED)

#: the ablation's second stage starts from the default's own base, pinned so its rows do not
#: move with the defaults: what the first stage left in (Omega, consolidation) and nothing else,
#: Omega with the authors' sign
DEFAULT_MECHANISMS = {"importance": "omega", "taylor_form": "reference", "structure": "none", "update": "plain",
                      "prune": False}
#: each row removes, replaces or adds back one mechanism (the row without consolidation is
#: fine-tune: lam 0 with pruning off trains as fine-tune does)
DEFAULT_ABLATION_ROWS: dict[str, dict] = {
    "anpyc-default": {},
    "omega-magnitude": {"importance": "magnitude"},
    "omega-fisher": {"importance": "fisher"},
    "omega-uniform": {"importance": "uniform"},  # ones: a plain L2 pull, what the importance earns
    "omega-removal-form": {"taylor_form": "removal"},
    "with-elementwise": {"update": "elementwise"},
    "with-structure": {"structure": "spread"},
    "with-pruning": {"prune": True, "keep_schedule": "reference", "prune_steps": 1, "retrain_epochs": 0.25},
}
#: each row's lambda, chosen on validation by docs/benchmarks/ablation-default/tune.sh (the
#: first stage's grids and budget); a test checks each is the arg-max of its committed tune.json
DEFAULT_ABLATION_TUNED: dict[str, dict[str, dict]] = {
    "pmnist10": {
        "anpyc-default": {"lam": 3.0}, "omega-magnitude": {"lam": 0.1}, "omega-fisher": {"lam": 3.0},
        "omega-uniform": {"lam": 0.003}, "omega-removal-form": {"lam": 1.0}, "with-elementwise": {"lam": 3.0},
        "with-structure": {"lam": 1.0}, "with-pruning": {"lam": 3.0},
    },
    "pmnist10-domain": {
        "anpyc-default": {"lam": 10.0}, "omega-magnitude": {"lam": 0.3}, "omega-fisher": {"lam": 10.0},
        "omega-uniform": {"lam": 0.01}, "omega-removal-form": {"lam": 10.0}, "with-elementwise": {"lam": 10.0},
        "with-structure": {"lam": 3.0}, "with-pruning": {"lam": 10.0},
    },
}


def _ablation_rows(base: dict, rows: dict[str, dict], tuned: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    return {row: ("anpyc", {**base, **change, **tuned.get(row, {})}) for row, change in rows.items()}


def ablation_aliases(protocol: str) -> dict[str, tuple[str, dict]]:
    """The ablation's rows on ``protocol``: each row's change and its tuned knob."""
    return _ablation_rows(PAPER_MECHANISMS, ABLATION_ROWS, ABLATION_TUNED[protocol])


def default_ablation_aliases(protocol: str) -> dict[str, tuple[str, dict]]:
    """The second stage's rows on ``protocol``: the default's base with one mechanism removed,
    replaced or added back, each with its tuned lambda.

    Example:
        >>> default_ablation_aliases("pmnist10")["with-structure"][1]["structure"]
        'spread'
    """
    return _ablation_rows(DEFAULT_MECHANISMS, DEFAULT_ABLATION_ROWS, DEFAULT_ABLATION_TUNED[protocol])


@dataclass(frozen=True)
class Suite:
    """A named comparison (``anpyc bench NAME``; "benchmark" names a stream, not this).
    ``base``: the run config without a method; ``protocol``: the protocol it runs (its
    presets apply), ``None`` for a setting of its own (no preset applies unless one matches)."""

    description: str
    base: dict
    select: Methods = ALL_METHODS
    seeds: int = 1
    params: dict = field(default_factory=dict)  # method -> hyper-parameters
    aliases: dict = field(default_factory=dict)  # label -> (method, params): variants of one method
    budget: str = "passes"  # equal training passes per task; "epochs" only to reproduce a paper's protocol
    protocol: str | None = None
    inference: str | None = None  # a task-inference score: a `<method>+inference` row for every method that trains a network
    density_replay: dict | None = None  # run options: a `<method>+density-replay` row for every such method but joint
    density_replay_without: frozenset[str] = frozenset()  # methods whose preset cannot fit the replay's budget

    @property
    def methods(self) -> tuple[str, ...]:
        """The suite's methods as registered now."""
        return self.select.names()

    @property
    def all_aliases(self) -> dict[str, tuple[str, dict]]:
        """The suite's variants of methods: its own aliases, then (with ``inference``) the
        ``<method>+inference`` row of each of its methods that trains a network, the task of
        every test input inferred by that score.

        Example:
            >>> SUITES["split-mnist-class"].all_aliases["ewc+inference"]
            ('ewc', {'task_inference': 'mixture_combined'})
        """
        from anpyc.experiments.compare import density_replay_aliases, inference_aliases

        out = dict(self.aliases)
        networks = [m for m in self.methods if METHODS[m].trains_network]
        if self.inference is not None:
            out.update(inference_aliases([f"{m}{INFERENCE_SUFFIX}" for m in networks], self.inference))
        if self.density_replay is not None:  # not for joint training: it sees every task's data already
            labels = [f"{m}{DENSITY_REPLAY_SUFFIX}" for m in networks
                      if "upper-bound" not in METHODS[m].tags and m not in self.density_replay_without]
            out.update(density_replay_aliases(labels, self.density_replay))
        return out


def _of_protocol(name: str, methods: Methods = ALL_METHODS, with_inference: bool = False,
                 with_density_replay: bool = False, **changes: Any) -> Suite:
    """The suite that runs protocol ``name`` (``changes``: settings outside its fingerprint;
    ``with_inference``: `<method>+inference` rows, the task inferred by the protocol's score;
    ``with_density_replay``: `<method>+density-replay` rows, with the protocol's options)."""
    p = PROTOCOLS[name]
    base = deep_update(p.base, changes.pop("base", {}))
    return Suite(changes.pop("description", p.description), base, methods, budget=p.budget, protocol=name,
                 inference=p.inference if with_inference else None,
                 density_replay=dict(p.density_replay) if with_density_replay else None, **changes)


def _ablation_suite(protocol: str, rows: Callable[[str], dict[str, tuple[str, dict]]], description: str) -> Suite:
    """One half of a stage of the ablation: its rows on ``protocol`` beside fine-tune, 3 seeds."""
    return _of_protocol(protocol, Methods(tagged=("lower-bound",), with_default=False), seeds=3,
                        aliases=rows(protocol), description=description)


SUITES: dict[str, Suite] = {
    "quick": Suite(
        "5-task permuted MNIST, 5000 training examples per task (a minute or two on a laptop CPU)",
        deep_update(PMNIST, {"stream": {"tasks": 5, "subsample": 5000, "test_subsample": 2000}}),
        WITH_BOUNDS,
    ),
    # 5 seeds where the README's headline claims sit (a Welch t-test beside the both-std rule
    # needs more than 3); 3 for the 50-task stream and the supplementary suites, for time
    "pmnist10": _of_protocol("pmnist10", seeds=5, aliases=WARM_START_ALIASES),
    "pmnist10-common": _of_protocol("pmnist10-common", seeds=3),
    "split-mnist": _of_protocol("split-mnist", seeds=3),
    "pmnist10-domain": _of_protocol("pmnist10-domain", NO_TASK_ID, seeds=5, aliases=NO_TASK_ID_ALIASES,
                                    with_inference=True),
    # PackNet's and anpyc-masks' presets here retrain for half an epoch: with density replay (every
    # step, a retraining one too, trains on 10 drawn inputs per 10 of the task's) that leaves no
    # epoch of the budget, so they have no `+density-replay` row on this protocol
    "split-mnist-class": _of_protocol("split-mnist-class", NO_TASK_ID, seeds=5, aliases=NO_TASK_ID_ALIASES,
                                      with_inference=True, with_density_replay=True,
                                      density_replay_without=frozenset({"packnet", "anpyc-masks"})),
    "ablation": _ablation_suite(
        "pmnist10", ablation_aliases, "ANPyC's mechanisms, one removed per row (pmnist10, task scenario, every weight "
        "in use): structure-awareness, Omega (replaced by |theta| and by the Fisher), element-wise updating, pruning, "
        "consolidation; each row's strength tuned on validation with the same 4-point budget",
    ),
    "ablation-domain": _ablation_suite(
        "pmnist10-domain", ablation_aliases,
        "the ablation's rows on pmnist10-domain (one shared head, no task id, no task inference)",
    ),
    "ablation-default": _ablation_suite(
        "pmnist10", default_ablation_aliases, "the ablation's second stage (pmnist10): the default's own base (Omega "
        "with the authors' sign, and consolidation) with Omega replaced by |theta| and by the Fisher, its sign by "
        "the removal form, by ones (a plain L2 pull), and element-wise updating, "
        "structure-awareness and pruning each added back; fine-tune is the row without consolidation; each row's "
        "lambda tuned on validation",
    ),
    "ablation-default-domain": _ablation_suite(
        "pmnist10-domain", default_ablation_aliases,
        "the ablation's second stage on pmnist10-domain (one shared head, no task id, no task inference)",
    ),
    "polarisation": _of_protocol(
        "pmnist10", Methods(tagged=("importance-penalty",)), seeds=3,
        aliases={"anpyc-all": ablation_aliases("pmnist10")["anpyc-all"]},
        description="sparse and polarised synapses (pmnist10): the kurtosis of the consolidated importance and the "
        "distribution of the weights after 10 tasks, ANPyC at its default and with every mechanism of the paper "
        "(the ablation's anpyc-all row) beside the importance-penalty methods (EWC, online EWC, SI, MAS) at their "
        "presets",
    ),
    "split-fmnist-class": _of_protocol("split-fmnist-class", NO_TASK_ID, seeds=5, aliases=NO_TASK_ID_ALIASES,
                                       with_inference=True, with_density_replay=True),
    "reference": Suite(
        "the paper's setting, exactly the shipped anpyc-reference preset: 10-task permuted MNIST, "
        "784-64-32 MLP, SGD lr 0.02, batch 256, 30 epochs per task, ANPyC as the reference code "
        "(30 retraining epochs per 10% pruning step; hours on a CPU)",
        REFERENCE_BASE,
        WITH_BOUNDS,
        aliases={"anpyc-reference": ("anpyc", REFERENCE_ANPYC)},
        budget="epochs",  # the authors' protocol: each pruning step retrains on top of the epoch
    ),
    "long": _of_protocol(
        "pmnist10", Methods(without=frozenset({"upper-bound", "no-network"})), seeds=3,
        aliases=WARM_START_ALIASES,
        description="long permuted-MNIST sequence (50 tasks unless --tasks): protocol pmnist10, "
        "test accuracy on 2000 images per task",
        base={"stream": {"tasks": 50, "test_subsample": 2000, "val_subsample": 1000}},
    ),
}


def machine() -> dict:
    import torch

    from anpyc.runner import cpu_capability, cpu_model

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": str(torch.__version__),
    }


def method_params(
    bench: Suite, methods: list[str], base: RunConfig, budget: str, presets: bool = True,
) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """Hyper-parameters per method: the suite's own, over the tuned preset whose protocol
    is this run's (when ``presets``); methods with neither get no entry (their defaults).
    Returns ``(params, applied, not_applied)`` as :func:`anpyc.experiments.presets.select_presets`.

    Example:
        >>> params, applied, _ = method_params(SUITES["quick"], ["finetune"], RunConfig(), "passes")
        >>> params, applied
        ({}, {})
    """
    from anpyc.experiments.presets import select_presets

    methods = [m for m in methods if m in METHODS]  # aliases carry their own parameters
    if not presets:
        return {m: dict(bench.params[m]) for m in methods if m in bench.params}, {}, {}
    # a suite of its own setting (no protocol, such as quick) runs the defaults as designed: no warning
    return select_presets(methods, base, budget, bench.params, warn=bench.protocol is not None)


def source_commit(allow_dirty: bool = False) -> dict:
    """The commit anpyc runs from and whether its tree is clean; raises :class:`ConfigError`
    on uncommitted changes unless ``allow_dirty`` (then recorded). Outside a git checkout (an
    installed package) the commit is ``None`` and nothing is refused.

    Example:
        >>> sorted(source_commit(allow_dirty=True))
        ['allow_dirty', 'clean_tree', 'commit']
    """
    from anpyc.runner import git_commit

    commit = git_commit()
    dirty = bool(commit and commit.endswith("-dirty"))
    if dirty and not allow_dirty:
        raise ConfigError(f"the source tree has uncommitted changes ({commit}): commit them so the bench names its "
                          "code, or pass --allow-dirty (recorded in bench.json)")
    # "commit" (benches recorded before 2026-12-03 named it "git_commit"; readers accept both)
    return {"commit": commit.removesuffix("-dirty") if commit else None,
            "clean_tree": None if commit is None else not dirty, "allow_dirty": allow_dirty}


def run_commits(out: Path, summary: dict) -> list[str]:
    """The distinct commits the suite's runs recorded in their ``config.yaml`` (a resumed
    bench may hold runs made at several commits); ``-dirty`` kept where a run had it."""
    found = set()
    for entry in summary["methods"].values():
        for run_dir in entry.get("runs", []):
            cfg = out / run_dir / rundir.CONFIG if run_dir else None
            if cfg is not None and cfg.is_file():
                found.add(((rundir.read_yaml(cfg).get("meta") or {}).get("git_commit")) or "unknown")
    return sorted(found)


def _relative_to(path: str | None, base: Path) -> str | None:
    """``path`` relative to ``base`` where it lies inside it, else as given."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path


def bench_command(name: str, out_dir: str | Path, argv: list[str] | None = None) -> str:
    """The command line that ran suite ``name``, ``--out`` relative to the working
    directory (:func:`anpyc.io.relative_command`).

    Example:
        >>> bench_command("pmnist10", "bench-out/p", ["anpyc", "bench", "pmnist10", "--out", "/abs/bench-out/p"])
        'anpyc bench pmnist10 --out bench-out/p'
    """
    return relative_command(f"bench {name}", out_dir, argv)


@dataclass(frozen=True)
class BenchPlan:
    """What a suite's run will do: its base config, labels, parameters per label, aliases
    and budget (resolved, nothing run)."""

    bench: Suite
    base: RunConfig
    methods: list[str]
    params: dict[str, dict]
    aliases: dict[str, tuple[str, dict]]
    budget: str
    presets_applied: dict[str, str] = field(default_factory=dict)
    presets_not_applied: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, RunConfig]:
        """The config each label runs with (before its seed is set), as :func:`compare` runs it."""
        from anpyc.experiments.compare import job_configs

        return job_configs(self.base, self.methods, self.params, self.aliases, self.budget)


def bench_plan(
    name: str, methods: list[str] | None = None, overrides: dict[str, Any] | None = None, presets: bool = True,
    params: dict[str, dict] | None = None, budget: str | None = None,
) -> BenchPlan:
    """Resolve suite ``name`` (methods, base config with ``overrides``, presets, explicit
    ``params``, budget) without running it.

    Example:
        >>> bench_plan("reference", ["anpyc-reference"]).configs()["anpyc-reference"].method_params.keep_schedule
        'reference'
    """
    if name not in SUITES:
        raise ConfigError(unknown("suite", name, SUITES))
    bench = SUITES[name]
    variants = bench.all_aliases
    chosen = list(methods) if methods else [*bench.methods, *variants]
    if overrides and "method" in overrides:
        raise ConfigError("bench runs its own methods: use --methods, not a config file's method")
    from anpyc.experiments.compare import check_param_targets

    check_param_targets(params or {}, chosen, variants)
    known = [m for m in chosen if m in METHODS or m in variants]
    for m in sorted(set(chosen) - set(known)):
        log.warning("bench %s: method %r is not available in this build; skipped", name, m)
    base = RunConfig.from_dict(deep_update(bench.base, overrides or {}))
    budget = budget or bench.budget
    # an alias (a variant of a method) runs with its method's preset under its own changes
    bases = [m for m in dict.fromkeys(variants[a][0] for a in known if a in variants) if m not in known]
    chosen_params, applied, not_applied = method_params(bench, known + bases, base, budget, presets)
    for m, given in (params or {}).items():  # explicit --param wins over presets
        chosen_params[m] = {**chosen_params.get(m, {}), **given}
    aliases = {a: (m, {**chosen_params.get(m, {}), **p}) for a, (m, p) in variants.items() if a in known}
    chosen_params = {m: v for m, v in chosen_params.items() if m in known}
    return BenchPlan(bench, base, known, chosen_params, aliases, budget, applied, not_applied)


@rundir.releases_locks  # OUT stays locked while bench.json and bench.md are written after the runs
def run_suite(
    name: str,
    out_dir: str | Path,
    seeds: int | None = None,
    methods: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    jobs: int = 1,
    presets: bool = True,
    params: dict[str, dict] | None = None,
    tensorboard: bool = False,
    budget: str | None = None,
    resume: bool = False,
    executor: Any = None,
    stream: Any = None,
    report: bool = True,
    allow_dirty: bool = False,
) -> dict:
    """Run suite ``name``; returns the summary written to ``out_dir/bench.json``.

    Each method runs with its tuned preset (``anpyc tune --protocol``, chosen on validation
    data) when the run's protocol fingerprint equals the one it was tuned under, else its
    defaults with one warning naming the difference; ``presets=False``: the defaults. The
    parameters used, the presets applied and the protocol the run matched are recorded in
    ``bench.json``. ``jobs`` runs that many (method, seed) runs in parallel processes.
    ``resume`` continues a killed suite in ``out_dir`` (see :func:`anpyc.experiments.compare.compare`).
    ``executor``: where the runs go (:mod:`anpyc.experiments.executors`); without waiting the
    jobs are submitted and ``{"submitted": ...}`` returned (``anpyc gather`` finishes the suite).
    ``stream``: the suite's methods and settings on your own data, as ``compare`` takes it (no
    preset applies: your data is no protocol). ``report``: write the report at the end.
    A source tree with uncommitted changes is refused (:class:`ConfigError`) unless
    ``allow_dirty``: a published figure must name the code that made it. ``bench.json`` records
    the commit, whether the tree was clean, ``allow_dirty`` and the commits its runs recorded.
    """
    from anpyc.experiments.compare import compare
    from anpyc.experiments.protocols import matching_protocols

    sweep = {"bench": {"name": name, "seeds": seeds, "methods": methods, "overrides": overrides, "presets": presets,
                       "params": params, "budget": budget, "tensorboard": tensorboard,
                       "allow_dirty": allow_dirty}}  # what `anpyc gather` reruns
    plan = bench_plan(name, methods, overrides, presets and stream is None, params, budget)
    bench, base, known, params = plan.bench, plan.base, plan.methods, plan.params
    commit = source_commit(allow_dirty)
    start = _dt.datetime.now(_dt.UTC)
    summary = compare(
        base, known, list(range(base.seed, base.seed + (seeds or bench.seeds))), out_dir,
        params=params, aliases=plan.aliases,
        quiet=quiet, overwrite=overwrite, jobs=jobs, tensorboard=tensorboard, budget=plan.budget, resume=resume,
        executor=executor, sweep=sweep, stream=stream, report=False,
    )
    if "submitted" in summary:  # the jobs go on; `anpyc gather` (or the same command again) ends the suite
        return summary
    protocol = bench.protocol if stream is None and bench.protocol in matching_protocols(base, plan.budget) else None
    summary["bench"] = {
        "name": name, "description": bench.description, "command": bench_command(name, out_dir),
        **_bench_record(plan, protocol, start, jobs, resume), **commit,
    }
    _write_bench(Path(out_dir), summary)
    if report:
        from anpyc.report.report import write_report_safely

        write_report_safely(Path(out_dir))
    return summary


def _bench_record(plan: BenchPlan, protocol: str | None, start: _dt.datetime, jobs: int, resume: bool) -> dict:
    """What ``bench.json`` says of where and how the suite ran, beside its name and command."""
    host = machine()
    return {
        # the runs' torch threads (train.threads), not this parent process's
        "machine": {**host, "torch_threads": plan.base.train.threads or host["torch_threads"]},
        "date": start.isoformat(timespec="seconds"),
        "method_params": plan.params,
        "protocol": protocol,  # the protocol this run is (overrides of settings in its fingerprint make it another)
        "presets": {"applied": plan.presets_applied, "not_applied": plan.presets_not_applied},
        "jobs": jobs,
        "resumed": resume,  # finished runs read back, killed ones continued from their checkpoints
    }


def _write_bench(out: Path, summary: dict) -> None:
    """``bench.json`` (run directories relative to ``out``: no machine path) and ``bench.md``."""
    from anpyc.report.tables import summary_markdown

    for entry in summary["methods"].values():
        entry["runs"] = [_relative_to(r, out) for r in entry.get("runs", [])]
    summary["bench"]["run_commits"] = run_commits(out, summary)
    write_json(out / rundir.BENCH_JSON, summary)
    record = summary["bench"]
    text = (
        f"{summary_markdown(summary)}\n{record['description']}.\n\n"
        f"Protocol: {record['protocol'] or 'none of anpyc.experiments.protocols'}; presets applied: "
        f"{', '.join(f'{m} ({n})' for m, n in record['presets']['applied'].items()) or 'none'}  \n"
        f"Command: `{record['command']}`  \nMachine: {record['machine']}  \nDate: {record['date']}\n"
    )
    atomic_write_text(out / rundir.BENCH_MD, text)
