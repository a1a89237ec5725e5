"""ANPyC in your own PyTorch training loop (the README shows this file whole; the tests run it)."""

import functools

import torch

from anpyc.loop.own import (
    HookContext,
    ModelConfig,
    StreamConfig,
    build_model,
    create,
    evaluate,
    iterate_epochs,
    make_stream,
    task_loss,
    trainable,
)


def main(method_name: str = "anpyc", tasks: int = 3, epochs: float = 10, right_after: list | None = None) -> list[float]:
    """Each task's test accuracy at the end (``right_after`` gets each one's right after it was learnt)."""
    torch.manual_seed(0)
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=tasks), seed=0)  # or stream_from_datasets(...)
    model = build_model(ModelConfig(hidden=(64, 64)), stream.input_shape)  # a body, one head per task
    method = create(method_name)  # "anpyc", "ewc", "si", ... (anpyc list methods), with a dict of params

    def train(task, n_epochs: float) -> None:  # retrain(n) calls it too: n may be fractional (0.25)
        opt = torch.optim.SGD(trainable(model, method), lr=0.1)
        for x, y, t in iterate_epochs(task.train, n_epochs, batch_size=128):
            loss = task_loss(model, x, y, t)  # cross-entropy under each example's task head
            if (extra := method.penalty(model, x, y, t)) is not None:
                loss = loss + extra
            opt.zero_grad()
            loss.backward()
            method.before_step(model)  # scale or gate gradients by importance
            opt.step()
            method.after_step(model, opt)  # undo any update protected weights still got

    for t, task in enumerate(stream):
        ctx = HookContext(task=t, n_tasks=len(stream), seed=0)  # what the method may know
        model.add_head(task.n_outputs)
        method.before_task(model, task, ctx)
        train(task, epochs)
        method.after_task(model, task, ctx, retrain=functools.partial(train, task))  # prune, consolidate
        if right_after is not None:
            right_after.append(evaluate(model, method, task))
    # the one way to evaluate: method.predict inside method.eval_context (task_id_known=False: no task labels)
    return [evaluate(model, method, task) for task in stream]


if __name__ == "__main__":
    print(main())
