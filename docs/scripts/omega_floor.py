"""An ε floor under ANPyC's Ω, explored outside the library (not the paper's Ω, not an option).

docs/benchmarks/generation finds that a generator is lost through the weights whose importance
is exactly 0 (the entropy-Taylor score's clip). This script runs ``anpyc`` with each task's Ω
raised to at least ``eps`` times the mean of that tensor's positive Ω, so that no weight is
free under the penalty, and otherwise exactly as the library runs:

    python docs/scripts/omega_floor.py 0.01 run --config docs/benchmarks/generation/vae.yaml \\
        --method anpyc --tasks 2 --param lam=1000 --seed 0 --out DIR

The first argument is ``eps``; the rest are ``anpyc``'s command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

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


def main(argv: Sequence[str]) -> int:
    """``omega_floor.py EPS ARGS...``: ``anpyc ARGS...`` with Ω floored at ``EPS``."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with floored_importance(float(argv[0])):
        return cli.main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
