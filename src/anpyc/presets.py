"""Shipped method hyper-parameters per benchmark, chosen by ``anpyc tune`` on validation data.

A preset is ``presets/<method>-<benchmark>.yaml`` inside the package (package data)::

    method: ewc
    benchmark: split-mnist
    method_params: {lam: 100.0}
    tuned: {...}   # how it was chosen: grid, val/test ACC of each point, run settings, date

Only ``method_params`` is applied (``anpyc run --preset NAME``, ``anpyc compare --presets``);
the rest is provenance.

Example:
    >>> preset_name("ewc", "split-mnist")
    'ewc-split-mnist'
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from anpyc.errors import ConfigError
from anpyc.io import write_yaml

log = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).resolve().parent / "presets"


def preset_name(method: str, benchmark: str) -> str:
    return f"{method}-{benchmark}"


def list_presets(directory: Path | None = None) -> list[str]:
    """Names of the shipped presets."""
    d = directory or PRESET_DIR
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_preset(name: str, directory: Path | None = None) -> dict:
    """The preset mapping (``method``, ``benchmark``, ``method_params``...)."""
    path = (directory or PRESET_DIR) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_presets(directory)) or "none"
        raise ConfigError(f"unknown preset {name!r}; shipped: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("method_params", {}), dict):
        raise ConfigError(f"preset {path} must map method_params to a mapping")
    return data


def find_preset(method: str, benchmark: str, directory: Path | None = None) -> dict | None:
    """The preset for ``method`` on ``benchmark`` if one ships, else ``None``."""
    name = preset_name(method, benchmark)
    return load_preset(name, directory) if name in list_presets(directory) else None


def with_presets(methods: list[str], benchmark: str, params: dict[str, dict] | None = None) -> dict[str, dict]:
    """Hyper-parameters per method: its shipped preset for ``benchmark`` (if any) updated with
    the explicit ``params`` (explicit wins); methods with neither get no entry.

    Example:
        >>> with_presets(["ewc"], "permuted-mnist", {"ewc": {"fisher": "true"}})["ewc"]["fisher"]
        'true'
    """
    params = params or {}
    out = {m: dict(v) for m, v in params.items() if m in methods}
    for m in methods:
        preset = find_preset(m, benchmark)
        if preset is not None:
            out[m] = {**preset.get("method_params", {}), **params.get(m, {})}
            log.info("%s uses preset %s-%s: %s", m, m, benchmark, out[m])
    return out


def save_preset(method: str, benchmark: str, params: dict, tuned: dict, directory: Path | None = None) -> Path:
    """Write (atomically) the preset for ``method`` on ``benchmark``; returns its path."""
    d = directory or PRESET_DIR
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{preset_name(method, benchmark)}.yaml"
    write_yaml(path, {"method": method, "benchmark": benchmark, "method_params": dict(params), "tuned": tuned})
    return path
