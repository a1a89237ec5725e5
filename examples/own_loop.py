"""ANPyC in your own PyTorch training loop (the README's example, kept runnable by a test)."""

import math

import torch

from anpyc.config import ModelConfig, StreamConfig
from anpyc.data import iterate, make_stream
from anpyc.loop.train import task_loss
from anpyc.methods import create
from anpyc.models import build_model
from anpyc.scenario import HookContext


def accuracy_on(model, method, task) -> float:
    model.eval()
    with torch.no_grad(), method.eval_context(model, task.id):  # mask methods: the weights the task saw
        x, y, t = task.test.get(torch.arange(len(task.test)))
        accuracy = float((model(x, task.id).argmax(1) == y).float().mean())
    model.train()
    return accuracy


def main(benchmark: str = "blobs", tasks: int = 3, epochs: int = 10, right_after: list | None = None,
         method_name: str = "anpyc") -> list[float]:
    """Each task's test accuracy at the end (``right_after``, if given, gets each one's right
    after it was learnt)."""
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark=benchmark, tasks=tasks), seed=0)
    model = build_model(ModelConfig(hidden=(64, 64)), stream.input_shape)
    method = create(method_name)  # "anpyc", or "ewc", "si", ... with a dict of params

    def train(task, n_epochs):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(math.ceil(n_epochs)):         # (retrain_epochs may be fractional)
            for x, y, t in iterate(task.train, 128, shuffle=True):
                loss = task_loss(model, x, y, t)
                if (extra := method.penalty(model, x, y, t)) is not None:
                    loss = loss + extra
                opt.zero_grad()
                loss.backward()
                method.before_step(model)            # scale or gate gradients by importance
                opt.step()
                method.after_step(model, opt)        # undo any update they still got

    for t, task in enumerate(stream):
        ctx = HookContext(task=t, n_tasks=len(stream), seed=0)  # what the method may know
        model.add_head(task.n_outputs)
        method.before_task(model, task, ctx)
        train(task, epochs)
        method.after_task(model, task, ctx, retrain=lambda n, task=task: train(task, n))  # prune + retrain
        if right_after is not None:
            right_after.append(accuracy_on(model, method, task))
    return [accuracy_on(model, method, task) for task in stream]


if __name__ == "__main__":
    print(main())
