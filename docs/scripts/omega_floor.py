"""An ε floor under ANPyC's Ω, explored outside the library (not the paper's Ω, not an option).

docs/benchmarks/generation finds that a generator is lost through the weights whose importance
is exactly 0 (the entropy-Taylor score's clip). This script runs ``anpyc`` with each task's Ω
raised to at least ``eps`` times the mean of that tensor's positive Ω, so that no weight is
free under the penalty, and otherwise exactly as the library runs:

    python docs/scripts/omega_floor.py 0.01 run --config docs/benchmarks/generation/vae.yaml \\
        --method anpyc --tasks 2 --param lam=1000 --seed 0 --out DIR

The first argument is ``eps``; the rest are ``anpyc``'s command line, run in this process
(``--jobs`` above 1, ``--nproc`` and ``--executor`` are refused: workers would load ``anpyc``
without the floor). ``--table DIR`` prints the record's tables from its run directories
(``DIR/MODEL-TASKS/eps_E-lam_L/metrics.json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from anpyc import cli
from anpyc.methods.anpyc import ANPyC


def floor(omega: dict[str, Tensor], eps: float) -> dict[str, Tensor]:
    """``max(Ω, eps · mean of the tensor's positive Ω)``, tensor by tensor (all-zero tensors stay 0).

    >>> floor({"w": torch.tensor([0.0, 1.0, 3.0])}, 0.5)["w"].tolist()
    [1.0, 1.0, 3.0]
    """
    out = {}
    for name, value in omega.items():
        positive = value[value > 0]
        base = positive.mean() if positive.numel() else value.new_zeros(())
        out[name] = torch.maximum(value, eps * base)
    return out


@contextmanager
def floored_importance(eps: float) -> Iterator[None]:
    """ANPyC's per-task importance floored while the block runs (consolidation and its statistics see it)."""
    original: Callable = ANPyC.estimate_importance

    def estimate(self, model, task, ctx):
        return floor(original(self, model, task, ctx), eps)

    ANPyC.estimate_importance = estimate
    try:
        yield
    finally:
        ANPyC.estimate_importance = original


def _runs(group: Path) -> dict[tuple[float, float], dict]:
    """``(eps, lam) -> metrics`` of a group's run directories ``eps_E-lam_L``."""
    runs = {}
    for metrics in group.glob("eps_*-lam_*/metrics.json"):
        eps, lam = metrics.parent.name.removeprefix("eps_").split("-lam_")
        runs[float(eps), float(lam)] = json.loads(metrics.read_text())
    return runs


def _grid(runs: dict[tuple[float, float], dict], cell: Callable[[dict], str]) -> list[str]:
    lams = sorted({lam for _, lam in runs})
    lines = ["| ε \\ λ | " + " | ".join(f"{lam:g}" for lam in lams) + " |", "|---" * (len(lams) + 1) + "|"]
    for eps in sorted({eps for eps, _ in runs}):
        cells = [cell(runs[eps, lam]) if (eps, lam) in runs else "" for lam in lams]
        lines.append(f"| {eps:g} | " + " | ".join(cells) + " |")
    return lines


def table(root: Path) -> str:
    """Markdown: two-task groups give class 0 / class 1 recognised after task 2 (%); longer ones
    validation ACC (test ACC), %."""
    out = []
    groups = [p for p in root.iterdir() if p.is_dir() and "-" in p.name]
    for group in sorted(groups, key=lambda p: (p.name.rsplit("-", 1)[0] != "vae", int(p.name.rsplit("-", 1)[1]))):
        model, tasks = group.name.rsplit("-", 1)
        runs = _runs(group)
        if tasks == "2":
            out += [f"{model.upper()}, 2 tasks: class 0 / class 1 recognised after task 2 (%)", ""]
            out += _grid(runs, lambda m: "{:.1f} / {:.1f}".format(*(100 * a for a in m["acc_matrix"][1])))
        else:
            out += [f"{model.upper()}, {tasks} tasks: validation ACC (test ACC) after the last task (%)", ""]
            out += _grid(runs, lambda m: f"{100 * m['val_avg_acc']:.2f} ({100 * m['avg_acc']:.2f})")
        out.append("")
    return "\n".join(out)


def other_processes(argv: Sequence[str]) -> str | None:
    """The change lives in this process: worker processes would run the library unchanged."""
    pairs = [(a.partition("=")[0], a.partition("=")[2] or next(iter(argv[i + 1:]), "")) for i, a in enumerate(argv)]
    bad = sorted({f for f, v in pairs if f in ("--nproc", "--executor") or (f == "--jobs" and v != "1")})
    return f"{', '.join(bad)}: the change is made in this process only; run without" if bad else None


def main(argv: Sequence[str]) -> int:
    """``omega_floor.py EPS ARGS...``: ``anpyc ARGS...`` with Ω floored at ``EPS``."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "--table":
        print(table(Path(argv[1])))
        return 0
    try:
        eps = float(argv[0])
    except ValueError:
        eps, error = None, f"the first argument is eps, a number, not {argv[0]!r}"
    else:
        error = other_processes(argv[1:])
    if error:
        print(f"omega_floor.py: error: {error}", file=sys.stderr)
        return 2
    with floored_importance(eps):
        return cli.main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
