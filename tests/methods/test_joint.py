"""Joint training, the upper bound: at task t it trains on the training sets of every task
seen so far (in the order seen, each row with its own task id), so every head of a
multi-head model keeps training and the data per task grows with t."""

import torch

from anpyc.config import ModelConfig, RunConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.loop.train import fit
from anpyc.methods import create
from anpyc.models import build_model
from anpyc.runner import run
from anpyc.scenario import HookContext


def _stream(tasks=3):
    return make_stream(StreamConfig(benchmark="blobs", tasks=tasks, subsample=40), seed=0)


def test_joint_trains_on_every_seen_task_in_order_with_their_task_ids():
    stream = _stream()
    data = create("joint").training_data(stream[2], list(stream), HookContext(2, 3))
    assert len(data) == sum(len(task.train) for task in stream) == 120
    x, y, t = data.get(torch.arange(len(data)))
    assert t.tolist() == [0] * 40 + [1] * 40 + [2] * 40
    x1, y1, _ = stream[1].train.get(torch.arange(40))
    assert torch.equal(x[40:80], x1) and torch.equal(y[40:80], y1)  # task 1's rows as its own split gives them


def test_joint_reads_what_was_seen_not_the_whole_stream():
    stream = _stream()
    data = create("joint").training_data(stream[1], list(stream[:2]), HookContext(1, 3))
    _, _, t = data.get(torch.arange(len(data)))
    assert len(data) == 80 and set(t.tolist()) == {0, 1}  # task 2, not seen yet, is left out


def test_training_on_joints_data_moves_the_earlier_tasks_head_too():
    stream = _stream(2)
    moved = {}
    for name in ("joint", "finetune"):  # finetune, the control: task 1's data leaves head 0 alone
        torch.manual_seed(0)
        model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
        model.add_head(4), model.add_head(4)
        before = model.heads[0].weight.detach().clone()
        method = create(name)
        data = method.training_data(stream[1], list(stream), HookContext(1, 2))
        fit(model, method, data, TrainConfig(batch_size=20), 1, torch.Generator().manual_seed(0))
        moved[name] = not torch.equal(before, model.heads[0].weight)
    assert moved == {"joint": True, "finetune": False}


def test_a_joint_runs_passes_grow_with_the_tasks_seen():
    cfg = RunConfig.from_dict({"method": "joint", "stream": {"benchmark": "blobs", "tasks": 3, "subsample": 60},
                               "model": {"hidden": [8]}, "train": {"batch_size": 30}})
    assert run(cfg, quiet=True).metrics["passes"] == [1.0, 2.0, 3.0]  # its budget is not the others'
