"""``compare``: several methods on the same stream, same network, same budget, same seeds.

Each (method, seed) run is a normal run directory under ``OUT/<method>/seed_<s>``; the
comparison writes ``summary.json`` and ``summary.md`` (mean and std over seeds) and a plot of
average accuracy against the number of tasks learned.

Example:
    >>> base = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2}})
    >>> summary = compare(base, ["finetune", "joint"], seeds=[0], quiet=True)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
from pathlib import Path
from typing import Any

import yaml

from anpyc import rundir
from anpyc.config import CUSTOM, RunConfig, load_mapping
from anpyc.data.streams import Stream
from anpyc.errors import AnpycError, ConfigError, OutputError, did_you_mean, refuse_repeats
from anpyc.experiments.executors import ExecutorConfig, execute, resubmits
from anpyc.experiments.executors import check as check_executor
from anpyc.experiments.jobs import Job
from anpyc.io import write_json, write_yaml
from anpyc.methods import create, get_method_class, typed
from anpyc.names import DENSITY_REPLAY, DENSITY_REPLAY_SUFFIX, INFERENCE_SCORE, INFERENCE_SUFFIX
from anpyc.report.tables import summary_markdown
from anpyc.runner import (
    RunResult,
    apply_budget,
    build_stream,
    check_labels,
    check_method_fits,
    own_stream_config,
    prepare_out_dir,
)
from anpyc.summary import method_summary

log = logging.getLogger(__name__)

@rundir.releases_locks  # OUT and each OUT/<method>/seed_<s> stay locked until the comparison ends
def compare(
    base: RunConfig,
    methods: list[str],
    seeds: list[int],
    out_dir: str | Path | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    quiet: bool = False,
    overwrite: bool = False,
    tensorboard: bool = False,
    aliases: dict[str, tuple[str, dict[str, Any]]] | None = None,
    jobs: int = 1,
    budget: str = "passes",
    resume: bool = False,
    executor: ExecutorConfig | None = None,
    sweep: dict | None = None,
    stream: Any = None,
    report: bool = True,
) -> dict:
    """Run every method for every seed and aggregate; returns the summary dict.

    ``aliases`` names variants of a method (``{"anpyc-reference": ("anpyc", {...})}``) that
    can then be listed in ``methods`` beside the method itself. ``tensorboard``: each run logs
    to ``out_dir/tb/<method>/seed_<s>`` so one ``tensorboard --logdir out_dir/tb`` shows them
    all side by side. ``jobs > 1`` runs the (method, seed) jobs in that many processes (see
    :mod:`anpyc.experiments.jobs`). ``budget``: ``passes`` gives every method the same training passes
    per task (:func:`budgeted`), ``epochs`` the same epochs. A job that fails is listed under
    ``summary["failed"]`` with its error line; the summary is made of the jobs that finished.
    ``resume``: continue the killed comparison in ``out_dir`` (same settings, checked; methods
    and seeds may be added): finished runs are read back, killed ones continue from their
    newest checkpoint, the rest run.
    ``executor``: where the jobs run (:mod:`anpyc.experiments.executors`; default this machine):
    a submitit sweep into an ``out_dir`` that holds it already goes on there (only the missing
    runs are submitted); with ``executor.wait`` off the jobs are submitted and the returned
    dict says what (``{"submitted": ...}``), ``anpyc gather`` builds the summary later.
    ``sweep``: what made the comparison (a suite's arguments), kept in ``compare.yaml``.

    ``stream``: your own data instead of ``base.stream``: a stream built by
    :func:`anpyc.data.stream_from_datasets` (every seed trains on it), a function ``seed ->
    stream`` (each seed its own, e.g. its own validation rows), or ``"MODULE:FUNCTION"`` (as
    ``--stream-from``; the only form parallel ``jobs`` take). Every method gets the same
    passes, seeds, summary and report as on a registered stream; the runs record
    ``benchmark: custom`` and the stream's description. ``report`` (with ``out_dir``): write
    ``report.md``, ``report.html`` and ``plots/`` at the end, as the command line does.
    """
    params = params or {}
    aliases = aliases or {}
    seeds = _checked_seeds(methods, seeds)
    base, own = own_stream(base, stream, jobs)

    def resolve(label: str) -> tuple[str, dict[str, Any]]:
        return resolve_label(label, params, aliases)

    configs = label_configs(base, methods, params, aliases)  # a bad name or parameter fails before any training
    check_param_targets(params, methods, {})  # here a label takes only its own parameters (aliases carry theirs)
    if tensorboard:
        from anpyc.callbacks.tracking import tensorboard_writer_class

        tensorboard_writer_class()  # a missing TensorBoard fails before any training
    check_executor(executor)  # ... and so does a missing submitit
    resume = resume or (resubmits(executor, out_dir, rundir.COMPARE) and not overwrite)
    # every job, its method built once, under the budget (one that leaves nothing to train fails here)
    job_list = _jobs(configs, seeds, Path(out_dir) if out_dir is not None else None, tensorboard, budget, resume)
    record = {"methods": methods, "seeds": list(seeds), "params": params, "budget": budget,
              "aliases": {k: [m, p] for k, (m, p) in aliases.items()}, "base": base.to_dict(),
              **({"sweep": sweep} if sweep else {})}
    out = open_sweep(out_dir, record, resume, overwrite)
    # one process: one stream per seed shared by its jobs (built lazily, seed by seed)
    streams = _LazyStreams(base, own) if jobs <= 1 else None
    execution = execute(job_list, executor, out, jobs, overwrite=overwrite, streams=streams, quiet=quiet)
    if execution.submitted is not None:  # --no-wait: the jobs go on; anpyc gather builds the summary
        return {"submitted": execution.submitted}
    done, failures = execution.done, execution.failures
    results: dict[str, list[RunResult]] = {m: [done[(m, s)] for s in seeds if (m, s) in done] for m in methods}
    summary = summarize_results({m: r for m, r in results.items() if r}, base, seeds, {m: resolve(m)[1] for m in methods})
    summary["budget"] = {"mode": budget, "per_task": base.train.epochs,
                         "unit": "training passes" if budget == "passes" else "epochs (plus each method's own extra passes)"}
    summary["failed"] = [f.to_dict() for f in failures]
    if out is not None:
        _write_summary(out, summary)
    if not done:
        first = failures[0]
        raise AnpycError(f"every job failed ({len(failures)}); first: {first.method} seed {first.seed}: {first.error}")
    if report and out is not None:
        from anpyc.report.report import write_report_safely

        write_report_safely(out)
    return summary


def _checked_seeds(methods: list[str], seeds: list[int]) -> list[int]:
    """``seeds`` as plain ints, once ``methods`` and ``seeds`` are non-empty lists (a string of
    method ids would be read letter by letter, an empty seed list would run nothing)."""
    if (isinstance(methods, str) or not isinstance(seeds, (list, tuple, range))
            or not all(isinstance(s, numbers.Integral) for s in seeds)):
        raise ConfigError(f"compare takes a list of method ids and a list of seeds, e.g. ['finetune', 'ewc'] and [0, 1, 2]; "
                          f"got {methods!r} and {seeds!r}")
    if not methods or not seeds:
        raise ConfigError(f"compare needs at least one method and one seed, got methods {methods} and seeds {seeds}")
    refuse_repeats("compare", "method", methods)
    return refuse_repeats("compare", "seed", [int(s) for s in seeds])  # numpy integers too, recorded as plain ones


def own_stream(base: RunConfig, stream: Any, jobs: int = 1) -> tuple[RunConfig, Any]:
    """``(base, factory)`` of a comparison on your own data (``stream``: a stream, a function
    ``seed -> stream`` or ``"MODULE:FUNCTION"``): ``base`` records it (``benchmark: custom``, its
    description and length, from the first seed's stream, whose labels are checked against the
    scenario here), ``factory`` builds each seed's (``None``: the config's own stream)."""
    if stream is None and base.stream.benchmark != CUSTOM:
        return base, None
    if isinstance(stream, str) or stream is None:  # MODULE:FUNCTION: rebuilt anywhere, in any process
        base = base.replace(stream=dataclasses.replace(base.stream, benchmark=CUSTOM, source=stream or base.stream.source))
        factory = None
    elif jobs > 1:
        raise ConfigError("a stream passed from Python runs with jobs=1; for parallel jobs pass "
                          "stream='MODULE:FUNCTION' (a function that builds it), as --stream-from does")
    else:
        factory = stream if callable(stream) else (lambda seed: stream)
    first = factory(base.seed) if factory is not None else build_stream(base)
    if not isinstance(first, Stream):
        raise ConfigError(f"stream: expected a stream built by anpyc.data.stream_from_datasets, got {type(first).__name__}")
    check_labels(base, first)
    return own_stream_config(base.replace(stream=dataclasses.replace(base.stream, benchmark=CUSTOM)), first), factory


def open_sweep(out_dir: str | Path | None, record: dict, resume: bool, overwrite: bool,
               marker: str = rundir.COMPARE) -> Path | None:
    """The sweep's directory, locked: reopened to go on (``resume``, :func:`reopen`), or
    prepared afresh with ``record`` written to ``marker``; None without ``out_dir``."""
    if resume and overwrite:  # the API's twin of the command line's check (_resume_flag)
        raise ConfigError("--resume continues the runs in --out; --overwrite would remove them: drop one")
    if resume:
        return reopen(out_dir, record, marker)
    out = prepare_out_dir(out_dir, overwrite) if out_dir is not None else None
    if out is not None:
        write_yaml(out / marker, record)
    return out


def _write_summary(out: Path, summary: dict) -> None:
    """``summary.json``, ``summary.md`` (with the failed jobs) and the plot of a comparison."""
    write_json(out / rundir.SUMMARY_JSON, summary)
    failed = failures_text(summary)
    rundir.write_text(out / rundir.SUMMARY_MD, summary_markdown(summary) + (f"\n## Failed jobs\n\n{failed}" if failed else ""))
    try:
        if not summary["methods"]:
            raise ValueError("no job finished")
        from anpyc.report.plots import plot_avg_acc_curves

        plot_avg_acc_curves(summary, out / rundir.AVG_ACC_PNG)
    except Exception as exc:  # a plot must never cost the results
        log.warning("could not draw the plot: %s", exc)


def reopen(out_dir: str | Path | None, record: dict, marker: str = rundir.COMPARE) -> Path:
    """The comparison directory to resume, locked; its ``compare.yaml`` must hold ``record``
    (the same methods, seeds, parameters, budget and base config), or ``record`` with methods or
    seeds added (``compare.yaml`` then takes ``record``; not a suite's). ``marker``: another
    sweep's record file (a tuning's ``tune.yaml``, which may likewise take grid values or seeds
    added)."""
    if out_dir is None:
        raise ConfigError("--resume needs the comparison's --out directory")
    out = rundir.existing_dir(out_dir)
    if not (out / marker).is_file():
        what = "comparison" if marker == rundir.COMPARE else "sweep"
        raise OutputError(f"{out} holds no {what} to resume (no {marker})")
    rundir.acquire(out)
    saved = load_mapping(out / marker)
    now = {k: yaml.safe_load(yaml.safe_dump(v)) for k, v in record.items()}  # as it would be saved
    differ = sorted(k for k in now if now[k] != saved.get(k)
                    and (k != "sweep" or k in saved))  # a directory from before sweeps were recorded
    growable = "sweep" not in saved and "sweep" not in now  # a suite's comparison keeps its suite's methods
    if differ and growable:
        differ = _changed_beyond_additions(saved, now, differ)
        if not differ:
            log.info("%s: adding %s", out, ", ".join(_additions(saved, now)))
            if "finetune" in (saved.get("methods") or []) and set(now.get("methods") or []) - set(saved["methods"]):
                log.warning("%s: the added methods' time / fine-tune sets their runs against fine-tune's of an earlier "
                            "session (add fine-tune's seeds beside them, in another folder, for a ratio measured at once)", out)
            write_yaml(out / marker, record)
        kept = saved.get("methods") or []  # the message names what changed for them, not the added ones
        saved, now = ({k: ({m: (v or {}).get(m) for m in kept} if k in ("params", "aliases") else v)
                       for k, v in d.items()} for d in (saved, now))
    if differ:
        where = "; ".join(first_difference(saved.get(k), now[k], k) for k in differ)
        grow = (" (methods and seeds may be added)" if marker == rundir.COMPARE else " (grid values and seeds may be added)"
                ) if growable else ""
        raise ConfigError(f"{out} was started with other settings ({where}); "
                          f"resume with the same settings{grow}, or choose another --out")
    return out


def _changed_beyond_additions(saved: dict, now: dict, differ: list[str]) -> list[str]:
    """The keys of ``differ`` that do more than add methods or seeds to the comparison, or grid
    values or seeds to the tuning, that ``saved`` records: a method, seed or value dropped, a
    kept method's parameters or alias changed, a grid key added, anything else changed (base
    config, budget). ``points``: the tuning's folder order, which its caller derives from it."""
    kept = saved.get("methods") or []

    def only_added(key: str) -> bool:
        then, new = saved.get(key), now[key]
        if key in ("methods", "seeds"):
            return set(then or []) <= set(new)
        if key in ("params", "aliases"):
            return all((then or {}).get(m) == (new or {}).get(m) for m in kept)
        if key == "grid":
            return set(then or {}) == set(new) and all(v in new[k] for k, values in (then or {}).items() for v in values)
        return key == "points"

    return [k for k in differ if not only_added(k)]


def _additions(saved: dict, now: dict) -> list[str]:
    """What ``now`` adds to the sweep ``saved`` records, in words."""
    grid_then, grid_now = saved.get("grid") or {}, now.get("grid") or {}
    return ([m for m in now.get("methods") or [] if m not in (saved.get("methods") or [])]
            + [f"{k}={v}" for k, values in grid_now.items() for v in values if v not in grid_then.get(k, [])]
            + [f"seed {s}" for s in now["seeds"] if s not in saved["seeds"]]) or ["nothing (the same points in another order)"]


def first_difference(then: Any, now: Any, key: str) -> str:
    """Where two recorded settings first differ, down to the leaf.

    Example:
        >>> first_difference({"train": {"epochs": 1.0, "lr": 0.1}}, {"train": {"epochs": 2.0, "lr": 0.1}}, "base")
        'base.train.epochs: 1.0 then, 2.0 now'
    """
    if isinstance(then, dict) and isinstance(now, dict):
        for k in sorted(set(then) | set(now), key=str):
            if then.get(k) != now.get(k):
                return first_difference(then.get(k), now.get(k), f"{key}.{k}")
    return f"{key}: {then!r} then, {now!r} now"


def inference_aliases(labels: list[str], score: str = INFERENCE_SCORE) -> dict[str, tuple[str, dict[str, Any]]]:
    """The ``<method>+inference`` labels among ``labels``, each as an alias of its method, its
    task inferred by ``score`` (:mod:`anpyc.methods.task_inference`; a protocol names its own:
    :attr:`anpyc.experiments.protocols.Protocol.inference`).

    Example:
        >>> inference_aliases(["ewc", "ewc+inference"])
        {'ewc+inference': ('ewc', {'task_inference': 'input_density'})}
    """
    return _suffix_aliases(labels, INFERENCE_SUFFIX, {"task_inference": score})


def _suffix_aliases(labels: list[str], suffix: str, params: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The labels ``<method><suffix>`` among ``labels``, each as ``(method, params)``."""
    n = len(suffix)
    return {label: (label[:-n], dict(params)) for label in labels if label.endswith(suffix) and len(label) > n}


def density_replay_aliases(labels: list[str], options: dict[str, Any] | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The ``<method>+density-replay`` labels among ``labels``, each as an alias of its method
    with the run options ``options`` (:mod:`anpyc.methods.density_replay`; a protocol names its
    own: :attr:`anpyc.experiments.protocols.Protocol.density_replay`).

    Example:
        >>> density_replay_aliases(["ewc", "ewc+density-replay"])
        {'ewc+density-replay': ('ewc', {'density_replay': 10, 'density_weight': 100.0})}
    """
    return _suffix_aliases(labels, DENSITY_REPLAY_SUFFIX, DENSITY_REPLAY if options is None else options)


def variant_aliases(labels: list[str], protocol: Any = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The ``<method>+inference`` and ``<method>+density-replay`` labels among ``labels`` as
    aliases, with ``protocol``'s choices (a :class:`anpyc.experiments.protocols.Protocol`) or the
    defaults."""
    score = protocol.inference if protocol is not None else INFERENCE_SCORE
    options = protocol.density_replay if protocol is not None else DENSITY_REPLAY
    return {**inference_aliases(labels, score), **density_replay_aliases(labels, options)}


def check_param_targets(params: dict[str, Any], labels: list[str],
                        aliases: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Refuse ``--param METHOD.KEY=VALUE`` for a method that no label runs (a typo, or a method
    left out of ``--methods``), which would otherwise be dropped without a word.

    Example:
        >>> check_param_targets({"ewc": {"lam": 1}}, ["ewc+inference"], inference_aliases(["ewc+inference"]))
        >>> check_param_targets({"ewk": {"lam": 1}}, ["ewc"], {})
        Traceback (most recent call last):
        ...
        anpyc.errors.ConfigError: --param ewk.lam: no method ewk is run here (did you mean 'ewc'?); methods: ewc
    """
    targets = [*labels, *(m for label, (m, _) in aliases.items() if label in labels and m not in labels)]
    for method in params:
        if method not in targets:
            key = next(iter(params[method]), "KEY")
            raise ConfigError(f"--param {method}.{key}: no method {method} is run here"
                              f"{did_you_mean(method, targets)}; methods: {', '.join(labels)}")


def resolve_label(label: str, params: dict[str, dict[str, Any]], aliases: dict[str, tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """``(method, hyper-parameters)`` of a label of a comparison: a method, an alias (a
    variant of a method) with its own parameters, ``<method>+inference`` or
    ``<method>+density-replay``; explicit
    ``params`` win."""
    method, preset = aliases.get(label) or variant_aliases([label]).get(label, (label, {}))
    return method, {**preset, **params.get(label, {})}


def label_configs(
    base: RunConfig, methods: list[str], params: dict[str, dict[str, Any]] | None = None,
    aliases: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> dict[str, RunConfig]:
    """The config of each label of a comparison, its method's parameters typed (before the
    budget and the seed are applied)."""
    out = {}
    for label in methods:
        method, method_params = resolve_label(label, params or {}, aliases or {})
        out[label] = typed(base.with_params(method, **method_params))
    return out


def job_configs(
    base: RunConfig, methods: list[str], params: dict[str, dict[str, Any]] | None = None,
    aliases: dict[str, tuple[str, dict[str, Any]]] | None = None, budget: str = "passes",
) -> dict[str, RunConfig]:
    """The config each label of a comparison runs with (before its seed is set): what
    :func:`compare` runs, without running it.

    Example:
        >>> base = RunConfig.from_dict({"stream": {"benchmark": "blobs"}})
        >>> job_configs(base, ["ewc"], {"ewc": {"lam": 3}})["ewc"].method_params.lam
        3.0
    """
    return {label: budgeted(cfg, budget) for label, cfg in label_configs(base, methods, params, aliases).items()}


def _jobs(configs: dict[str, RunConfig], seeds: list[int], out: Path | None, tensorboard: bool | str | Path,
          budget: str, resume: bool) -> list[Job]:
    """One job per (seed, label), each with its method built once (the budget asks it how many
    epochs its passes allow; the run then trains that very object)."""
    jobs = []
    for seed in seeds:
        for label, cfg in configs.items():
            method = create(cfg.method, cfg.method_params)
            tb = out / rundir.TB / label / f"seed_{seed}" if tensorboard and out is not None else tensorboard
            run_dir = rundir.run_dir_of(out, label, seed) if out is not None else None
            check_method_fits(cfg, method)  # as a method the model cannot take (a generator's replay)
            budgeted(cfg, budget, method)  # a budget that leaves nothing to train fails here, before any run
            jobs.append(Job(label, seed, cfg.replace(seed=seed), run_dir, tb, resume=resume, method_object=method,
                            budget=budget))
    return jobs


def budgeted(cfg: RunConfig, budget: str = "passes", method: Any = None) -> RunConfig:
    """``cfg`` as it runs under a comparison's budget (:func:`anpyc.runner.apply_budget`):
    ``passes`` (the default) gives every method ``train.epochs`` training passes per task, its
    own extra passes included; ``epochs`` gives every method ``train.epochs`` epochs.

    Example:
        >>> cfg = RunConfig.from_dict({"method": "packnet", "train": {"epochs": 2}})
        >>> budgeted(cfg).train.epochs  # 1.5 epochs + 0.5 of retraining (packnet's retrain_epochs)
        1.5
    """
    return apply_budget(cfg, budget, method)


def summarize_results(
    results: dict[str, list[RunResult]], base: RunConfig, seeds: list[int], explicit: dict[str, dict] | None = None
) -> dict:
    """The comparison's summary: per method the figures of :func:`anpyc.summary.method_summary`,
    the parameters asked for (``params``) and every resolved one (``resolved_params``)."""
    reference = [r.metrics for r in results.get("finetune", [])]
    methods = {}
    for m, runs in results.items():
        cfg = runs[0].config
        methods[m] = {
            "method": cfg.method,
            "params": dict((explicit or {}).get(m, {})),
            "resolved_params": cfg.params_dict(),
            "n_seeds": len(runs),
            "upper_bound": "upper-bound" in get_method_class(cfg.method).tags,
            # what answers without a task id: one head, a head per task with the task inferred, or the inputs' model alone
            "task_inference": cfg.task_inference,
            "density_replay": cfg.density_replay,
            "trains_network": get_method_class(cfg.method).trains_network,
            **method_summary([r.metrics for r in runs], reference),
            "runs": [str(r.out_dir) if r.out_dir else None for r in runs],
        }
    return {
        "benchmark": base.stream.benchmark,
        "scenario": base.scenario,
        "n_tasks": int(len(next(iter(results.values()))[0].acc_matrix)) if results else 0,  # 0: no job finished
        "seeds": list(seeds),
        "config": base.to_dict(),
        "methods": methods,
    }


class _LazyStreams:
    """``seed -> stream``, each built on first use and the previous one dropped (memory);
    ``factory(seed)`` builds a stream of your own."""

    def __init__(self, base: RunConfig, factory: Any = None) -> None:
        self.base, self.factory, self.seed, self.stream = base, factory, None, None

    def get(self, seed: int, default: Stream | None = None) -> Stream:
        if seed != self.seed:
            self.stream = None  # free the previous seed's stream first
            build = self.factory or (lambda s: build_stream(self.base.replace(seed=s)))
            self.stream, self.seed = build(seed), seed
        return self.stream


def failures_text(summary: dict) -> str:
    """The failed jobs of a summary, one line each (empty when none failed)."""
    return "".join(f"FAILED {f['method']} seed {f['seed']}: {f['error']}"
                   + (f" (exit code {f['exit_code']})" if f.get("exit_code") is not None else "") + "\n"
                   for f in summary.get("failed", []))
