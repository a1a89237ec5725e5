"""Small shared helpers: eval-mode context, seeding, memory, parameter naming."""

from __future__ import annotations

import contextlib
import random
import resource
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's previous mode afterwards.

    Used for evaluation, importance estimation and teacher passes, so dropout and batch norm
    are never left in the wrong mode.
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes.items():
            m.train(was_training)


def seed_everything(seed: int, device: str | torch.device = "cpu") -> None:
    """Seed python, numpy and torch. On CUDA also ask for deterministic kernels; the CPU
    kernels used here are deterministic already, and the switch costs every new process
    several seconds of imports (torch._inductor)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.use_deterministic_algorithms(True, warn_only=True)


def seeded_generator(seed: int, *salt: int) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``(seed, *salt)`` through numpy's SeedSequence: one
    independent stream per purpose, without touching the global RNG.

    Example:
        >>> a, b = seeded_generator(0, 1), seeded_generator(0, 1)
        >>> bool(torch.equal(torch.rand(2, generator=a), torch.rand(2, generator=b)))
        True
    """
    mixed = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(s) for s in salt)]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(mixed))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / (1024.0 * 1024.0)


def buffer_key(prefix: str, param_name: str) -> str:
    """The one mapping from a parameter name to a method buffer name (no dots allowed)."""
    return f"{prefix}__{param_name.replace('.', '__')}"
