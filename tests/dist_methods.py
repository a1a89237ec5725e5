"""Test-only methods for the multi-process tests (a plain module, so spawned processes can
import it: :func:`anpyc.parallel.launch.method_modules` names it and every process registers them)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import torch

from anpyc.data.taskdata import ConcatData
from anpyc.errors import TrainingError
from anpyc.kernels.importance import entropy_taylor
from anpyc.methods.base import Method
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.methods.registry import METHODS, register
from anpyc.parallel.collectives import rank
from anpyc.utils import buffer_key


@dataclass(frozen=True)
class ProbeConfig:
    lam: float = 1.0
    keep: float = 0.5


class DistProbe(QuadraticPenalty):
    """Everything a real method does that ranks could disagree on:

    * importance from :func:`entropy_taylor` (sharded over ranks and all-reduced) merged into a
      quadratic penalty with anchors;
    * a random gradient mask per shared parameter drawn from the *global* RNG in
      ``after_task``: every rank draws a different one, so ranks agree only if the runner
      broadcasts rank 0's method state;
    * training on every task seen so far (batches mix heads, and a rank's shard may miss a
      head that another rank's has).
    """

    name = "test-dist-probe"
    config_cls = ProbeConfig

    def training_data(self, task, seen, ctx):
        return ConcatData([s.train for s in seen])

    def estimate_importance(self, model, task, ctx):
        return entropy_taylor(model, task.train, batch_size=50, max_samples=250)

    def after_task(self, model, task, ctx, retrain=None) -> None:
        for name, p in model.shared_parameters():
            mask = (torch.rand(p.shape) < self.config.keep).to(p.device)
            key = buffer_key("mask", name)
            if hasattr(self, key):
                getattr(self, key).copy_(mask)
            else:
                self.register_buffer(key, mask)
        super().after_task(model, task, ctx, retrain)

    def before_step(self, model) -> None:
        for name, p in model.shared_parameters():
            mask = getattr(self, buffer_key("mask", name), None)
            if mask is not None and p.grad is not None:
                p.grad.mul_(mask)


class FailingMethod(Method):
    """Raises in the second task, like a diverging run."""

    name = "test-fails"

    def after_task(self, model, task, ctx, retrain=None) -> None:
        if ctx.task == 1:
            raise TrainingError("test-fails: deliberate failure in task 1")


class GatedMethod(Method):
    """Fine-tuning that, before its second task, waits until the file named by
    ``$ANPYC_TEST_GATE`` exists: a run that is certainly still going (its first task's
    checkpoint written) while a test does something else to its run directory."""

    name = "test-gate"

    def before_task(self, model, task, ctx) -> None:
        gate = os.environ.get("ANPYC_TEST_GATE")
        if ctx.task == 1 and gate:
            while not os.path.exists(gate):
                time.sleep(0.05)


class KillsRank1(Method):
    """Fine-tuning whose rank 1 is killed (SIGKILL) at the start of the second task, after
    the first task's checkpoint: a worker lost mid-run."""

    name = "test-kill-rank1"

    def before_task(self, model, task, ctx) -> None:
        if ctx.task == 1 and rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)


for _cls in (DistProbe, FailingMethod, GatedMethod, KillsRank1):
    _cls.tags = frozenset({"internal"})  # test helpers: in no suite, no method list
    if _cls.name not in METHODS:
        register(_cls)
