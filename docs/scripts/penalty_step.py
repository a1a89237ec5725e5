"""ANPyC's penalty taken as a proximal step, its shared head weighted apart, each task's Ω
scaled to mean 1, or the consolidated Ω decayed: explored outside the library (docs/anpyc.md,
"Leads explored"; none is the paper's mechanism nor an option).

On pmnist10-domain λ above the preset's 10 diverges (SGD with momentum overshoots on the most
important weights). ``--proximal`` drops the penalty from the loss and, after every optimizer
step, solves it exactly for each weight, ``θ ← (θ + c θ*) / (1 + c)`` with ``c = 2 lr λ Ω``: the
same objective, stable at any λ (the penalty no longer enters the momentum, so λ means less).
``--head-scale K`` multiplies the shared head's Ω by K (the body's is left as it is);
``--task-mean`` divides each task's Ω by its mean over every penalised entry before it is added
to the consolidated Ω, so every task weighs alike whatever the scale of its entropy gradients;
``--decay G`` multiplies the consolidated Ω by G before each task's is added (``Ω ← G Ω + Ω_t``,
online EWC's running Fisher, so old tasks' constraints fade); ``--omega-means FILE`` writes each
task's Ω mean (before any change) to FILE, a JSON list:

    python docs/scripts/penalty_step.py --proximal -- compare --protocol pmnist10-domain \\
        --methods anpyc --param anpyc.lam=100 --seeds 1 --threads 1 --out DIR

What follows ``--`` runs in this process (``--jobs`` above 1, ``--nproc`` and ``--executor`` are
refused: workers would load ``anpyc`` unchanged).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from anpyc import cli
from anpyc.io import write_json
from anpyc.methods.anpyc import ANPyC


def proximal_(method: ANPyC, model, lr: float) -> None:
    """Move every penalised weight to the minimiser of ``(θ - θ')² / (2 lr) + λ Ω (θ - θ*)²``."""
    lam = method.scale * method.config.lam
    with torch.no_grad():
        for name, p in method.penalized(model):
            omega, star = method.omega(name), method.theta_star(name)
            if omega is not None and star is not None:
                c = 2 * lr * lam * omega
                p.copy_((p + c * star) / (1 + c))


@contextmanager
def patched(proximal: bool, head_scale: float, task_mean: bool = False,
            means: list[float] | None = None, decay: float = 1.0) -> Iterator[None]:
    """ANPyC with the chosen changes while the block runs, itself again afterwards; each task's
    Ω mean (before the changes) appended to ``means`` when given."""
    saved = {k: getattr(ANPyC, k) for k in ("penalty", "after_step", "estimate_importance", "merge_importance")}

    def after_step(self, model, optimizer):
        proximal_(self, model, optimizer.param_groups[0]["lr"])
        saved["after_step"](self, model, optimizer)  # then what pruning froze is written back

    def estimate(self, model, task, ctx):
        new = saved["estimate_importance"](self, model, task, ctx)
        if means is not None and new:
            means.append(float(torch.cat([v.flatten() for v in new.values()]).mean()))
        new = {n: v * head_scale if n.startswith("heads.0.") else v for n, v in new.items()}
        if task_mean and new:
            mean = torch.cat([v.flatten() for v in new.values()]).mean()
            new = {n: v / mean for n, v in new.items()} if mean > 0 else new
        return new

    def merge(self, new):
        for name in new:
            if (old := self.omega(name)) is not None:
                self._set("omega", name, decay * old)
        saved["merge_importance"](self, new)

    if decay != 1:
        ANPyC.merge_importance = merge
    if proximal:
        ANPyC.penalty = lambda self, model, x, y, t: None
        ANPyC.after_step = after_step
    if head_scale != 1 or task_mean or means is not None:
        ANPyC.estimate_importance = estimate
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(ANPyC, k, v)


def other_processes(argv: Sequence[str]) -> str | None:
    """The change lives in this process: worker processes would run the library unchanged."""
    pairs = [(a.partition("=")[0], a.partition("=")[2] or next(iter(argv[i + 1:]), "")) for i, a in enumerate(argv)]
    bad = sorted({f for f, v in pairs if f in ("--nproc", "--executor") or (f == "--jobs" and v != "1")})
    return f"{', '.join(bad)}: the change is made in this process only; run without" if bad else None


def main(argv: Sequence[str]) -> int:
    """``penalty_step.py [--proximal] [--head-scale K] [--task-mean] [--decay G] -- ANPYC ARGS...``."""
    argv = list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="penalty_step.py", description=__doc__.splitlines()[0])
    parser.add_argument("--proximal", action="store_true", help="the penalty as a proximal step")
    parser.add_argument("--head-scale", type=float, default=1.0, help="the shared head's Ω times K")
    parser.add_argument("--task-mean", action="store_true", help="each task's Ω divided by its mean")
    parser.add_argument("--decay", type=float, default=1.0, help="the consolidated Ω times G before each task's is added")
    parser.add_argument("--omega-means", metavar="FILE", help="write each task's Ω mean to FILE (JSON)")
    args = parser.parse_args(argv[:cut])
    if not 0 < args.decay <= 1:
        parser.error("--decay: need 0 < G <= 1")
    if error := other_processes(argv[cut + 1:]):
        parser.error(error)
    means: list[float] | None = [] if args.omega_means else None
    with patched(args.proximal, args.head_scale, args.task_mean, means, args.decay):
        code = cli.main(argv[cut + 1:])
    if args.omega_means:
        write_json(args.omega_means, means)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
