"""Shipped method hyper-parameters per protocol, written only by ``anpyc tune --save-preset``.

A tuned preset is ``presets/<method>-<protocol>.yaml`` inside the package (package data)::

    method: ewc
    protocol: pmnist10
    method_params: {lam: 10.0, ...}   # every field: the chosen grid point
    tuned:
      protocol: {name: pmnist10, budget: passes, fingerprint: {...}, digest: ...}
      proxy: {...}                    # the tuning proxy's changes to the protocol (recorded)
      grid: {lam: [...]}              # presets/grids.yaml's grid for (protocol, method)
      points: [{point, params, val_avg_acc, val_std, test_avg_acc, failed}, ...]
      selected_by, seeds, command, date, git_commit

``compare`` and ``bench`` apply a method's preset only when the run's protocol fingerprint
(:func:`anpyc.experiments.protocols.fingerprint`) equals the one it was tuned under; otherwise the
defaults run and one warning names the first difference. ``anpyc run --preset NAME`` applies
a preset explicitly (and warns on a mismatch). :func:`check_preset` is what the tests assert
of every shipped preset: its grid is the grid file's, every point is recorded, its protocol
has not changed since, and its parameters are the arg-max of its validation figures.

A preset with ``meta.reference`` (its source) instead of ``tuned`` is a transcription of a
paper's code (``anpyc-reference``), a whole run config (``anpyc run --config FILE``); it is
never applied automatically.

Example:
    >>> preset_name("ewc", "pmnist10")
    'ewc-pmnist10'
"""

from __future__ import annotations

import copy
import functools
import itertools
import logging
from pathlib import Path
from typing import Any

import yaml

from anpyc.config import RUN_OPTIONS, RunConfig
from anpyc.errors import ConfigError, unknown
from anpyc.experiments.protocols import PROTOCOLS, differences, fingerprint, protocol_fingerprint
from anpyc.io import write_yaml

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets"
GRID_FILE = "grids.yaml"  # in PRESET_DIR; not a preset


def preset_name(method: str, protocol: str) -> str:
    return f"{method}-{protocol}"


def list_presets(directory: Path | None = None) -> list[str]:
    """Names of the shipped presets (tuned and reference ones)."""
    d = directory or PRESET_DIR
    return sorted(p.stem for p in d.glob("*.yaml") if p.name != GRID_FILE) if d.is_dir() else []


def load_preset(name: str, directory: Path | None = None) -> dict:
    """The preset mapping (``method``, ``protocol``, ``method_params``, ``tuned``...)."""
    path = (directory or PRESET_DIR) / f"{name}.yaml"
    if name == Path(GRID_FILE).stem or not path.is_file():
        raise ConfigError(unknown("preset", name, list_presets(directory)))
    data = copy.deepcopy(_parsed(path, *_stamp(path)))
    if not isinstance(data, dict) or not isinstance(data.get("method_params", {}), dict):
        raise ConfigError(f"preset {path} must map method_params to a mapping")
    return data


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=512)
def _parsed(path: Path, _mtime_ns: int, _size: int) -> Any:
    """A preset file parsed once per version of it (a suite asks every preset file for every
    method: parsing each time took most of a minute)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def tuned_presets(method: str, directory: Path | None = None) -> dict[str, dict]:
    """``name -> preset`` of every tuned preset for ``method``."""
    out = {}
    for name in list_presets(directory):
        data = load_preset(name, directory)
        if data.get("method") == method and isinstance(data.get("tuned"), dict):
            out[name] = data
    return out


# ----------------------------------------------------------------------------- grids
def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order given (first key varies slowest).

    Example:
        >>> expand_grid({"lam": [1, 10], "xi": [0.1]})
        [{'lam': 1, 'xi': 0.1}, {'lam': 10, 'xi': 0.1}]
    """
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def load_grids(path: Path | None = None) -> dict[str, dict[str, dict[str, list]]]:
    """``protocol -> method -> grid`` from the grid file (default: the shipped one)."""
    path = path or PRESET_DIR / GRID_FILE
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map protocols to methods to grids")
    for protocol, methods in data.items():
        if not isinstance(methods, dict):
            raise ConfigError(f"{path}: {protocol} must map methods to grids")
        for method, grid in methods.items():
            if not isinstance(grid, dict) or not grid or not all(isinstance(v, list) and v for v in grid.values()):
                raise ConfigError(f"{path}: {protocol}.{method} must map each parameter to a non-empty list")
    return data


def grid_for(protocol: str, method: str, grids: dict | None = None) -> dict[str, list]:
    """The grid of ``method`` on ``protocol``: the grid file's, else the one the method
    declares (:attr:`anpyc.methods.base.Method.grid`, for every protocol)."""
    from anpyc.methods import get_method_class

    grids = load_grids() if grids is None else grids
    if method in grids.get(protocol, {}):
        return grids[protocol][method]
    declared = get_method_class(method).grid
    if declared:
        return {k: list(v) for k, v in declared.items()}
    if protocol not in grids:
        raise ConfigError(f"no grids for protocol {protocol!r} in {GRID_FILE}; protocols there: {', '.join(grids)}")
    raise ConfigError(f"no grid for {method!r} on {protocol!r} in {GRID_FILE} and none declared by the method; "
                      f"methods there: {', '.join(grids[protocol])}")


def tunable_methods(protocol: str, grids: dict | None = None) -> list[str]:
    """What ``anpyc tune-all --protocol P`` tunes: every registered method with hyper-parameters
    and a grid on ``protocol`` (the grid file's or its own); the others are named in a warning."""
    from anpyc.methods import get_method_class, has_params, method_names

    grids = load_grids() if grids is None else grids
    with_params = [m for m in method_names() if has_params(m)]
    chosen = [m for m in with_params if m in grids.get(protocol, {}) or get_method_class(m).grid]
    if len(chosen) < len(with_params):
        log.warning("no grid on protocol %s for %s: not tuned", protocol, ", ".join(m for m in with_params if m not in chosen))
    return chosen


def grid_problems(grids: dict) -> list[str]:
    """What breaks the grid file's rules: an unknown protocol, or methods of one protocol
    with different numbers of grid points."""
    problems = []
    for protocol, methods in grids.items():
        if protocol not in PROTOCOLS:
            problems.append(f"{protocol}: not a protocol (known: {', '.join(PROTOCOLS)})")
        sizes = {m: len(expand_grid(g)) for m, g in methods.items()}
        if len(set(sizes.values())) > 1:
            problems.append(f"{protocol}: methods have different numbers of grid points: {sizes}")
    return problems


# ----------------------------------------------------------------------------- checking a preset
def best_point(points: list[dict]) -> dict | None:
    """The point with the highest ``val_avg_acc`` (ties: the earlier point); failed points
    never win. ``None`` when every point failed."""
    ok = [(k, p) for k, p in enumerate(points) if p.get("val_avg_acc") is not None and not p.get("failed")]
    if not ok:
        return None
    return max(ok, key=lambda kp: (kp[1]["val_avg_acc"], -kp[0]))[1]


def check_preset(preset: dict, grids: dict | None = None) -> list[str]:
    """Why ``preset`` could not have come from ``anpyc tune --protocol P --save-preset`` with
    today's grid file and protocol definitions (empty: it could). A reference preset (a
    ``reference`` block, no ``tuned``) only needs its source recorded."""
    if "tuned" not in preset:
        reference = (preset.get("meta") or {}).get("reference")
        return [] if isinstance(reference, dict) and reference.get("source") else [
            "neither a tuned preset (`tuned`) nor a reference one (`meta.reference.source`)"]
    tuned, problems = preset["tuned"], []
    method, protocol = preset.get("method"), preset.get("protocol")
    if protocol not in PROTOCOLS:
        return [f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"]
    recorded = (tuned.get("protocol") or {}).get("fingerprint")
    if not isinstance(recorded, dict):
        problems.append("no protocol fingerprint recorded")
    else:
        diff = differences(recorded, protocol_fingerprint(protocol))
        if diff:
            problems.append(f"protocol {protocol} changed since tuning: {diff[0]}")
    if tuned.get("proxy") != PROTOCOLS[protocol].tune:  # chosen on another stream than today's proxy
        problems.append(f"tuned on the proxy {tuned.get('proxy')}, not protocol {protocol}'s {PROTOCOLS[protocol].tune}")
    try:
        expected_grid = grid_for(protocol, method, grids)
    except ConfigError as exc:
        problems.append(str(exc))
        expected_grid = None
    grid = tuned.get("grid")
    if expected_grid is not None and grid != expected_grid:
        problems.append(f"grid {grid} is not {GRID_FILE}'s {expected_grid}")
    points = tuned.get("points") or []
    wanted = expand_grid(grid) if isinstance(grid, dict) else []
    got = [{k: p.get("params", {}).get(k) for k in (grid or {})} for p in points]
    if got != wanted:
        problems.append(f"recorded points {got} are not the grid's {wanted}")
    best = best_point(points)
    if best is None:
        problems.append("no point has a validation figure")
    elif preset.get("method_params") != best.get("params"):
        problems.append(f"method_params {preset.get('method_params')} are not the arg-max of validation ACC "
                        f"(point {points.index(best)}: {best.get('params')})")
    for key in ("command", "date", "seeds", "selected_by"):
        if not tuned.get(key):
            problems.append(f"provenance lacks {key!r}")
    return problems


# ----------------------------------------------------------------------------- applying presets
def mismatch(preset: dict, cfg: RunConfig, budget: str | None) -> list[str]:
    """How the run ``cfg`` (under ``budget``; ``None``: a single run, any budget) differs from
    the protocol ``preset`` was tuned under (empty: it matches)."""
    recorded = ((preset.get("tuned") or {}).get("protocol") or {}).get("fingerprint")
    if not isinstance(recorded, dict):
        return ["the preset records no protocol"]
    return differences(recorded, fingerprint(cfg, budget))


def select_presets(
    methods: list[str], cfg: RunConfig, budget: str | None, params: dict[str, dict] | None = None,
    directory: Path | None = None, named: dict[str, str] | None = None, warn: bool = True,
) -> tuple[dict[str, dict], dict[str, str], dict[str, str]]:
    """The one way presets reach a run: hyper-parameters per method for a run of protocol
    ``cfg`` under ``budget``. A method in ``named`` gets that preset (``anpyc run --preset``;
    a warning when this run is not the protocol it was tuned under); any other its tuned preset
    whose protocol matches, else the defaults. Explicit ``params`` win over a preset. Returns
    ``(params, applied, not_applied)``: ``applied`` maps a method to its preset's name,
    ``not_applied`` to the reason its closest preset was left out. The methods left out are
    named in one warning (``warn``; else an info line) with the protocol that fits this run
    best and how it differs, or that none does. Methods with neither preset nor params get no entry.

    Example:
        >>> select_presets(["finetune"], RunConfig(), "passes")
        ({}, {}, {})
    """
    params, named = params or {}, named or {}
    out = {m: dict(v) for m, v in params.items() if m in methods}
    applied, not_applied = {}, {}
    for m in methods:
        if m in named:
            out[m] = {**_preset_params(_named_preset(named[m], m, cfg, budget, directory)), **params.get(m, {})}
            applied[m] = named[m]
            continue
        candidates = tuned_presets(m, directory)
        if not candidates:
            continue
        ranked = sorted(candidates.items(), key=lambda kv: (len(mismatch(kv[1], cfg, budget)), kv[0]))
        name, preset = ranked[0]
        diff = mismatch(preset, cfg, budget)
        if not diff:
            out[m] = {**_preset_params(preset), **params.get(m, {})}
            applied[m] = name
            log.info("%s uses preset %s (tuned under protocol %s)", m, name, preset.get("protocol"))
            continue
        not_applied[m] = f"preset {name} not applied (tuned under protocol {preset.get('protocol')}): {diff[0]}"
    if not_applied:
        (log.warning if warn else log.info)("%s", not_applied_line(list(not_applied), cfg, budget, directory))
    return out, applied, not_applied


def _preset_params(preset: dict) -> dict:
    """A preset's method parameters as a run applies them: without ``task_inference``, an
    option of three mask methods (on by default) when the preset was tuned. Whether a run
    infers tasks is the run's choice (a ``<method>+inference`` row), never a preset's."""
    return {k: v for k, v in preset.get("method_params", {}).items() if k not in RUN_OPTIONS}


def not_applied_line(methods: list[str], cfg: RunConfig, budget: str | None, directory: Path | None = None) -> str:
    """One line for the methods whose presets do not apply to the run ``cfg``: the protocol
    (among those they were tuned under) that fits it best, with its first difference, or none.

    Example:
        >>> not_applied_line(["ewc"], RunConfig.from_dict({"stream": {"benchmark": "blobs"}}), "passes")
        'no preset applies to ewc (it runs its defaults): no protocol its presets were tuned under runs blobs in the task scenario; --no-presets silences this'
    """
    tuned = sorted({p.get("protocol") for m in methods for p in tuned_presets(m, directory).values()} & set(PROTOCOLS))
    mine = fingerprint(cfg, budget)
    same_data = [p for p in tuned if all(protocol_fingerprint(p).get(k) == mine.get(k)
                                          for k in ("stream.benchmark", "scenario"))]
    its, runs = ("its", "it runs") if len(methods) == 1 else ("their", "they run")
    who = f"no preset applies to {', '.join(methods)} ({runs} {its} defaults)"
    if not same_data:
        return (f"{who}: no protocol {its} presets were tuned under runs {cfg.stream.benchmark} in the {cfg.scenario} "
                "scenario; --no-presets silences this")
    best = min(same_data, key=lambda p: (len(differences(protocol_fingerprint(p), mine)), p))
    diff = differences(protocol_fingerprint(best), mine)
    first = diff[0].replace(" (preset)", "").replace("(run)", "(this run)")
    return (f"{who}: the closest protocol {its} presets were tuned under, {best}, differs in {len(diff)} setting(s), first "
            f"{first}; `anpyc compare --protocol {best}` runs it, --no-presets silences this")


def _named_preset(name: str, method: str, cfg: RunConfig, budget: str | None, directory: Path | None) -> dict:
    """Preset ``name``, asked for by name for ``method``: it must be that method's; one tuned
    under another protocol than this run's is applied as asked, with a warning."""
    preset = load_preset(name, directory)
    if preset.get("method", method) != method:
        raise ConfigError(f"preset {name!r} is for method {preset['method']!r}, not {method!r}")
    if "tuned" in preset:
        diff = mismatch(preset, cfg, budget)
        if diff:
            log.warning("preset %s was tuned under protocol %s; this run differs: %s", name, preset.get("protocol"), diff[0])
    return preset


def save_preset(method: str, protocol: str, params: dict, tuned: dict, directory: Path | None = None) -> Path:
    """Write (atomically) the preset for ``method`` on ``protocol``; returns its path."""
    d = directory or PRESET_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{preset_name(method, protocol)}.yaml"
    write_yaml(path, {"method": method, "protocol": protocol, "method_params": dict(params), "tuned": tuned})
    return path
