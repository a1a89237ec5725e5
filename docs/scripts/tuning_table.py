"""The tuning record of every shipped preset of a protocol, as a markdown table: each
method's grid, the chosen point with its validation accuracy, and whether a one-knob grid's
choice sits at an end of its grid (the optimum may then lie outside).

    python docs/scripts/tuning_table.py PROTOCOL [PROTOCOL ...]

Reads only src/anpyc/presets/*-PROTOCOL.yaml (written by `anpyc tune-all --save-preset`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

PRESETS = Path(__file__).resolve().parents[2] / "src" / "anpyc" / "presets"


def _grid_text(grid: dict) -> str:
    return "; ".join(f"{k} {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vals)}" for k, vals in grid.items())


def row(preset: dict) -> str:
    tuned = preset["tuned"]
    grid, points = tuned["grid"], [p for p in tuned["points"] if p.get("val_avg_acc") is not None]
    best = max(points, key=lambda p: p["val_avg_acc"])
    chosen = {k: best["params"][k] for k in grid}
    vals = " / ".join(f"{100 * p['val_avg_acc']:.2f}" for p in tuned["points"] if p.get("val_avg_acc") is not None)
    edge = ""
    if len(grid) == 1:
        (k, values), = grid.items()
        edge = "lowest" if chosen[k] == min(values) else "highest" if chosen[k] == max(values) else ""
    chosen_text = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in chosen.items())
    when = f"{str(tuned.get('date', ''))[:10]} {str(tuned.get('git_commit') or '')[:7]}".strip()  # presets differ in age
    return f"| {preset['method']} | {_grid_text(grid)} | {chosen_text} | {100 * best['val_avg_acc']:.2f} | {vals} | {edge} | {when} |"


def table(protocol: str) -> str:
    presets = [yaml.safe_load(p.read_text()) for p in sorted(PRESETS.glob(f"*-{protocol}.yaml"))]
    presets = [p for p in presets if p.get("protocol") == protocol]
    lines = [f"Protocol `{protocol}`:", "",
             "| method | grid | chosen | val ACC % | every point's val ACC % | chosen at the grid's end | tuned (date, commit) |",
             "|---|---|---|---|---|---|---|"]
    return "\n".join(lines + [row(p) for p in presets])


if __name__ == "__main__":
    print("\n\n".join(table(p) for p in sys.argv[1:]))
