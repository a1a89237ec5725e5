import pytest
import torch
from torch import nn

from anpyc.config import ModelConfig, StreamConfig, TrainConfig
from anpyc.data import make_stream
from anpyc.errors import TrainingError
from anpyc.loop.train import evaluate, fit, task_loss
from anpyc.methods import create
from anpyc.methods.base import Method
from anpyc.models import build_model
from anpyc.utils import eval_mode


def _setup(dropout=0.0):
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=200), seed=0)
    model = build_model(ModelConfig(hidden=(16,), dropout=dropout), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    return stream, model


def test_fit_learns_and_evaluate_restores_mode():
    stream, model = _setup(dropout=0.2)
    method = create("finetune")
    before = evaluate(model, method, stream[0].train, TrainConfig(), 0)
    fit(model, method, stream[0].train, TrainConfig(lr=0.2), epochs=15, generator=torch.Generator().manual_seed(0))
    model.train()
    after = evaluate(model, method, stream[0].train, TrainConfig(), 0)
    assert after > before + 0.2
    assert model.training and all(m.training for m in model.modules())


def test_eval_mode_restores_mixed_modes():
    model = nn.Sequential(nn.Dropout(), nn.Dropout())
    model[1].eval()
    with eval_mode(model):
        assert not model[0].training
    assert model[0].training and not model[1].training


def test_same_seed_same_weights():
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        stream, model = _setup()
        fit(model, create("finetune"), stream[0].train, TrainConfig(), 2, torch.Generator().manual_seed(1))
        results.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])


def test_grouped_loss_equals_separate_losses():
    stream, model = _setup()
    model.add_head(stream[1].n_outputs)
    x0, y0, t0 = stream[0].train.get(torch.arange(5))
    x1, y1, t1 = stream[1].train.get(torch.arange(3))
    mixed = task_loss(model, torch.cat([x0, x1]), torch.cat([y0, y1]), torch.cat([t0, t1]))
    separate = (task_loss(model, x0, y0, t0) * 5 + task_loss(model, x1, y1, t1) * 3) / 8
    assert mixed.item() == pytest.approx(separate.item(), rel=1e-6)


class _Exploding(Method):
    name = "exploding-test"

    def penalty(self, model, x, y, t):
        return torch.tensor(float("inf"))


def test_non_finite_loss_names_task_and_epoch():
    stream, model = _setup()
    with pytest.raises(TrainingError, match="task 5, epoch 0"):
        fit(model, _Exploding(), stream[0].train, TrainConfig(), 1, torch.Generator(), task_id=4)


def test_fit_from_a_saved_epoch_continues_exactly():
    """fit(start_epoch=k) with the optimizer and generator as they were after epoch k gives
    the same weights as an uninterrupted fit (what exact resumption relies on)."""
    import copy

    stream, model = _setup(dropout=0.2)
    cfg, method = TrainConfig(optimizer="adam", lr=0.01, epochs=4), create("finetune")
    saved = {}

    def keep(done, stats):
        if done == 2:  # dropout draws from the global RNG, shuffling from the generator
            saved.update(model=copy.deepcopy(model.state_dict()), opt=copy.deepcopy(opt.state_dict()),
                         gen=gen.get_state(), rng=torch.get_rng_state(), steps=stats["steps"])

    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    start = copy.deepcopy(model.state_dict())
    full = fit(model, method, stream[0].train, cfg, 4, gen, optimizer=opt, on_epoch_end=keep)
    final = copy.deepcopy(model.state_dict())

    model.load_state_dict(start)  # as if a fresh process: then the saved state
    model.load_state_dict(saved["model"])
    opt2 = torch.optim.Adam(model.parameters(), lr=0.01)
    opt2.load_state_dict(saved["opt"])
    gen2 = torch.Generator()
    gen2.set_state(saved["gen"])
    torch.set_rng_state(saved["rng"])
    resumed = fit(model, method, stream[0].train, cfg, 4, gen2, optimizer=opt2, start_epoch=2)
    assert resumed == full and saved["steps"] == full["steps"] // 2
    for k, v in final.items():
        assert torch.equal(model.state_dict()[k], v), k


class _NanAtTask1(Method):
    name = "nan-at-task-1-test"

    def penalty(self, model, x, y, t):
        return torch.tensor(float("nan")) if int(t[0]) == 1 else None


def test_cli_reports_a_non_finite_loss_in_one_line_and_keeps_earlier_results(tmp_path, monkeypatch, capsys):
    from anpyc.callbacks.checkpoint import decode, list_checkpoints
    from anpyc.cli import main
    from anpyc.methods import METHODS

    monkeypatch.setitem(METHODS, _NanAtTask1.name, _NanAtTask1)
    out = tmp_path / "r"
    argv = ["run", "--method", _NanAtTask1.name, "--benchmark", "blobs", "--tasks", "3", "--subsample", "100",
            "--hidden", "8", "--epochs", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anpyc: error: non-finite loss (nan) in task 2, epoch 0")
    assert [line.count('"task": 0') for line in (out / "log.jsonl").read_text().splitlines()] == [1]
    newest = list_checkpoints(out)[0]
    assert decode(newest.read_bytes())["position"] == {"task": 1, "epoch": 0}
    assert not (out / "metrics.json").exists()


def test_cli_huge_learning_rate_stops_with_the_task_and_epoch(tmp_path, capsys):
    from anpyc.cli import main

    argv = ["run", "--method", "finetune", "--benchmark", "blobs", "--tasks", "2", "--subsample", "100",
            "--hidden", "8", "--lr", "1e38", "--quiet", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite loss" in err[0] and "in task 2, epoch 0" in err[0] and "grad_clip" in err[0]
    # run.log says why it ends there, and the folder's next command names the failure
    last = (tmp_path / "r" / "run.log").read_text().splitlines()[-1]
    assert "ERROR anpyc.runlog: run failed: non-finite loss" in last, last
    assert main(argv[:argv.index("--lr")] + argv[argv.index("--lr") + 2:]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "r holds a run that failed (non-finite loss" in err[0], err
    assert "or start afresh with --overwrite" in err[0]


def test_an_interrupted_run_says_so_in_its_run_log(tmp_path, monkeypatch):
    from anpyc.config import RunConfig
    from anpyc.runner import run

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("anpyc.runner.train_stream", interrupt)
    cfg = RunConfig.from_dict({"stream": {"benchmark": "blobs", "tasks": 2, "subsample": 40},
                               "model": {"hidden": [8]}, "train": {"epochs": 1, "threads": 1}})
    with pytest.raises(KeyboardInterrupt):
        run(cfg, tmp_path / "r", quiet=True)
    assert (tmp_path / "r" / "run.log").read_text().splitlines()[-1].endswith("run stopped: interrupted")


def test_grad_clip_bounds_the_update():
    stream, model = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(lr=1.0, grad_clip=1e-3, batch_size=10_000)  # one step on the whole task
    fit(model, create("finetune"), stream[0].train, cfg, 1, torch.Generator())
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(step) <= 1e-3 * 1.0001


def test_learning_rate_decays_in_steps_within_a_task_and_goes_on_from_an_offset():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=256), seed=0)
    model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
    model.add_head(stream[0].n_outputs)
    cfg = TrainConfig(lr=0.1, batch_size=64, lr_decay=0.5, lr_decay_epochs=1)  # 4 steps per epoch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    seen = []
    fit(model, create("finetune"), stream[0].train, cfg, 3, torch.Generator().manual_seed(0), optimizer=opt,
        on_step=lambda step, loss: seen.append(opt.param_groups[0]["lr"]))
    assert seen == pytest.approx([0.1] * 4 + [0.05] * 4 + [0.025] * 4)
    seen.clear()  # a retraining: its own decay, from the task's 12 steps so far
    fit(model, create("finetune"), stream[0].train, cfg, 1, torch.Generator().manual_seed(0), optimizer=opt,
        on_step=lambda step, loss: seen.append(opt.param_groups[0]["lr"]), step_offset=12, lr_decay=0.9)
    assert seen == pytest.approx([0.1 * 0.9**3] * 4)
    plain = TrainConfig(lr=0.1, batch_size=64)  # no decay: the optimizer's rate is never touched
    opt.param_groups[0]["lr"] = 0.7
    fit(model, create("finetune"), stream[0].train, plain, 1, torch.Generator().manual_seed(0), optimizer=opt)
    assert opt.param_groups[0]["lr"] == 0.7


class _Recorder(Method):
    """Zeroes every gradient in ``before_step`` and records what each hook saw."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def penalty(self, model, x, y, t):
        self.calls.append("penalty")
        return None

    def before_step(self, model):
        grads = [p.grad for _, p in model.shared_parameters()]
        self.calls.append("before_step" if all(g is not None for g in grads) else "before_step without gradients")
        for g in grads:
            g.zero_()

    def after_step(self, model, optimizer):
        self.calls.append("after_step")


def test_each_step_calls_the_hooks_in_order_and_before_step_shapes_the_update():
    """The loop's contract with a method: penalty, then the backward pass, then ``before_step``
    (the gradients there are the ones the optimizer applies), then the step, then ``after_step``."""
    stream, model = _setup()
    method = _Recorder()
    body = [p.detach().clone() for _, p in model.shared_parameters()]
    fit(model, method, stream[0].train, TrainConfig(batch_size=64), 1, torch.Generator())
    steps = -(-len(stream[0].train) // 64)
    assert method.calls == ["penalty", "before_step", "after_step"] * steps
    assert all(torch.equal(p.detach(), b) for (_, p), b in zip(model.shared_parameters(), body))  # zeroed: no update


class _RetrainsWithItsOwnDecay(Method):
    """Retrains once after each task with a decay of its own, recording the learning rate of
    every step (``after_step`` is given the optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []

    def after_step(self, model, optimizer):
        self.rates.append(optimizer.param_groups[0]["lr"])

    def after_task(self, model, task, ctx, retrain=None):
        retrain(1, lr_decay=0.5)


def test_the_loops_retraining_goes_on_from_the_tasks_steps_and_counts_in_its_passes():
    """The staircase of a retraining continues from the steps the task took (2 epochs of 4
    steps, decay per epoch), and its examples count in the task's training passes."""
    from anpyc.loop.train import LoopConfig, train_stream

    stream = make_stream(StreamConfig(benchmark="blobs", tasks=1, subsample=256), seed=0)
    model = build_model(ModelConfig(hidden=(8,)), stream.input_shape)
    method = _RetrainsWithItsOwnDecay()
    cfg = LoopConfig(TrainConfig(epochs=2, lr=0.1, batch_size=64, lr_decay=0.9, lr_decay_epochs=1), seed=0)
    state = train_stream(model, method, stream, cfg)
    assert method.rates == pytest.approx([0.1] * 4 + [0.09] * 4 + [0.1 * 0.5**2] * 4)
    assert state.progress["passes"] == [3.0]


def test_a_kept_optimizer_takes_each_new_head():
    """``reset_optimizer: false``: the optimizer carried over gains the new task's head."""
    from anpyc.loop.train import _task_optimizer

    body, head = nn.Linear(2, 2), nn.Linear(2, 2)
    cfg = TrainConfig(reset_optimizer=False)
    kept = torch.optim.SGD(body.parameters(), lr=0.1)
    out = _task_optimizer([*body.parameters(), *head.parameters()], kept, cfg)
    held = {id(p) for group in out.param_groups for p in group["params"]}
    assert out is kept and held == {id(p) for p in [*body.parameters(), *head.parameters()]}
