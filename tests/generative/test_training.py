import json
import math

import numpy as np
import pytest
import torch
import yaml

from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.kernels.importance import entropy_taylor
from anpyc.methods.joint import Joint
from anpyc.methods.quadratic import QuadraticPenalty
from anpyc.models.generative import GenerativeModel
from anpyc.runner import run


def _cfg(data_dir, **over):
    base = {
        "method": "finetune",
        "stream": {"benchmark": "split-mnist", "tasks": 2, "subsample": 200, "test_subsample": 100, "data_dir": data_dir},
        "model": {"name": "vae", "hidden": [64]},
        "train": {"epochs": 1, "batch_size": 50},
        "generative": {"samples_per_class": 40, "classifier": "mlp", "classifier_epochs": 1,
                       "classifier_subsample": 1000, "grid_columns": 4, "latent_dim": 8},
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return RunConfig.from_dict(base)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # width, height


def test_vae_run_writes_the_contract_metrics_and_grids(private_mnist_dir, tmp_path):
    out = tmp_path / "r"
    res = run(_cfg(private_mnist_dir), out, quiet=True)
    m = json.loads((out / "metrics.json").read_text())
    for key in ("acc_matrix", "val_acc_matrix", "fid_matrix", "val_fid_matrix", "class_recognition",
                "avg_acc", "bwt", "forgetting", "classifier_test_acc", "time_s"):
        assert key in m, key
    R, F = np.array(res.acc_matrix), np.array(m["fid_matrix"], dtype=float)
    assert R.shape == F.shape == (2, 2)
    assert m["acc_matrix"][0][1] is None and m["fid_matrix"][0][1] is None
    lower = np.tril_indices(2)
    assert ((R[lower] >= 0) & (R[lower] <= 1)).all() and (F[lower] > 0).all()
    # per-class shares average to the task cells
    per_class = np.array(m["class_recognition"], dtype=float)
    assert per_class.shape == (2, 10) and np.isnan(per_class[0, 2:]).all()
    assert R[1, 1] == pytest.approx(per_class[1, 2:4].mean())
    assert 0.5 < m["classifier_test_acc"] <= 1 and m["classifier"]["path"].startswith(private_mnist_dir)
    assert m["task_classes"] == [[0, 1], [2, 3]]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["optimizer"] == "adam" and saved["train"]["lr"] == pytest.approx(1e-3)
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    assert (out / "fid_matrix.csv").read_text().startswith("task_0,task_1")
    # one grid per task, a row of grid_columns images per class seen so far
    assert _png_size(out / "samples" / "task_0.png") == (4 * 30 + 2, 2 * 30 + 2)
    assert _png_size(out / "samples" / "task_1.png") == (4 * 30 + 2, 4 * 30 + 2)


class Recorder(Joint):
    """Joint training that records every hook call."""

    name = "recorder-test"

    def __init__(self):
        super().__init__()
        self.calls = {"before_task": 0, "penalty": 0, "before_step": 0, "after_step": 0}
        self.task_ids, self.eval_ids, self.retrain_steps = [], [], []

    def before_task(self, model, task, ctx):
        assert isinstance(model, GenerativeModel)
        self.calls["before_task"] += 1

    def penalty(self, model, x, y, t):
        self.calls["penalty"] += 1
        self.task_ids.append(set(t.tolist()))
        return None

    def before_step(self, model):
        self.calls["before_step"] += 1

    def after_step(self, model, optimizer):
        self.calls["after_step"] += 1
        shared = {id(p) for _, p in model.shared_parameters()}
        assert shared <= {id(p) for g in optimizer.param_groups for p in g["params"]}

    def after_task(self, model, task, ctx, retrain=None):
        self.retrain_steps.append(retrain(1)["steps"])
        super().after_task(model, task, ctx, retrain)

    def eval_context(self, model, task_id):
        self.eval_ids.append(task_id)
        return super().eval_context(model, task_id)


def test_every_hook_is_called_and_joint_sees_old_tasks(private_mnist_dir):
    method = Recorder()
    res = run(_cfg(private_mnist_dir), method=method, quiet=True)
    c = method.calls
    assert c["before_task"] == 2 and c["penalty"] == c["before_step"] == c["after_step"] > 0
    assert len(method.retrain_steps) == 2 and all(s > 0 for s in method.retrain_steps)
    assert method.eval_ids == [0, 0, 1]  # each task's classes generated inside its own context
    assert {1} not in method.task_ids[:4] and any(ids == {0, 1} for ids in method.task_ids)
    assert res.metrics["n_tasks"] == 2


class _DecoderAnchor(QuadraticPenalty):
    """A quadratic penalty with ANPyC's estimator: the extension point used end to end."""

    name = "decoder-anchor-test"

    def __init__(self, lam):
        super().__init__(type("C", (), {"lam": lam, "merge": "sum"})())

    def estimate_importance(self, model, task, ctx):
        return entropy_taylor(model, task.train, max_samples=100)


def test_consolidation_through_the_elbo_holds_the_decoder(private_mnist_dir):
    """A quadratic penalty whose importance comes from the VAE's ELBO (ANPyC's Taylor
    estimator through ``importance_objective``) holds the important decoder weights."""
    moved = {}
    for lam in (0.0, 1e4):
        method = _DecoderAnchor(lam)
        snaps = []
        orig = method.anchor

        def anchor(model, _orig=orig, _snaps=snaps, _m=method):
            _orig(model)
            names = [n for n, _ in model.shared_parameters()]
            _snaps.append((torch.cat([p.detach().flatten().clone() for _, p in model.shared_parameters()]),
                           torch.cat([_m.omega(n).flatten().clone() for n in names])))

        method.anchor = anchor
        res = run(_cfg(private_mnist_dir, train={"epochs": 2}), method=method, quiet=True)
        names = [n for n, _ in res.model.shared_parameters()]
        assert names and all(n.startswith("decoder.") for n in names)  # the encoder is not protected
        (theta0, omega0), (theta1, _) = snaps
        assert float(omega0.sum()) > 0
        # task 1 (and so its anchor and importance) is the same in both runs
        moved[lam] = float((omega0 * (theta1 - theta0).pow(2)).sum() / omega0.sum())
    assert moved[0.0] > 0
    assert moved[1e4] < 0.1 * moved[0.0], moved


@pytest.mark.parametrize("name", ["gan"])
def test_gan_through_the_cli(private_mnist_dir, tmp_path, capsys, name):
    out = tmp_path / "g"
    code = main([
        "run", "--model", name, "--benchmark", "split-mnist", "--method", "finetune", "--tasks", "2",
        "--subsample", "100", "--test-subsample", "60", "--data-dir", private_mnist_dir, "--hidden", "64",
        "--classifier", "mlp", "--classifier-epochs", "1", "--classifier-subsample", "1000",
        "--samples-per-class", "30", "--grid-columns", "3", "--batch-size", "50", "--out", str(out), "--quiet",
    ])
    assert code == 0
    assert "recognition" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "gan" and len(m["fid_matrix"]) == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["aux_loss"]) and r["steps"] == 2 for r in log)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["lr"] == pytest.approx(2e-4) and saved["model"]["name"] == "gan"
    assert _png_size(out / "samples" / "task_1.png") == (3 * 30 + 2, 4 * 30 + 2)


def test_classes_per_task_gives_one_task_per_class(private_mnist_dir):
    from anpyc.data.streams import make_stream

    cfg = _cfg(private_mnist_dir, stream={"tasks": None, "classes_per_task": 1})
    stream = make_stream(cfg.stream, 0, labels="global")
    assert len(stream) == 10 and [t.classes for t in stream][:3] == [(0,), (1,), (2,)]
    assert set(stream[4].train.labels().tolist()) == {4}


def test_anpyc_masks_keeps_old_classes_bit_exact(private_mnist_dir):
    """ANPyC's hard protection and per-task masks reach generation: the first task's classes
    are generated from the same latent codes after every task, so nothing may change."""
    cfg = _cfg(private_mnist_dir, method="anpyc-masks", method_params={"retrain_epochs": 1, "importance_samples": 100})
    res = run(cfg, quiet=True)
    m = res.metrics
    assert res.acc_matrix[1, 0] == res.acc_matrix[0, 0]
    assert m["fid_matrix"][1][0] == m["fid_matrix"][0][0]
    assert m["kept_share"][0] < 1.0 and 0 < m["free_fraction"][next(iter(m["free_fraction"]))][0] < 1
    assert all(name.startswith("decoder.") for name in m["free_fraction"])


def test_generative_run_on_a_non_split_benchmark_fails_before_writing(tmp_path):
    from anpyc.errors import DataError

    cfg = RunConfig.from_dict({"model": {"name": "vae"}, "stream": {"benchmark": "blobs"}})
    with pytest.raises(DataError, match="split benchmark"):
        run(cfg, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_ewc_on_the_vae_uses_the_fisher_of_the_elbo(private_mnist_dir):
    from anpyc.kernels.importance import fisher_diag
    from anpyc.models.generative import objective_fisher

    res = run(_cfg(private_mnist_dir, method="ewc", method_params={"lam": 100.0, "fisher_samples": 50}), quiet=True)
    names = [n for n, _ in res.model.shared_parameters()]
    assert names and all(res.method.omega(n) is not None and (res.method.omega(n) >= 0).all() for n in names)
    assert sum(float(res.method.omega(n).sum()) for n in names) > 0
    images = torch.rand(8, 1, 28, 28)
    from anpyc.data.taskdata import TaskData

    data = TaskData(images, torch.zeros(8, dtype=torch.long), 0)
    torch.manual_seed(0)  # the ELBO samples latent codes
    via_ewc = fisher_diag(res.model, data, max_samples=8)
    torch.manual_seed(0)
    direct = objective_fisher(res.model, data, max_samples=8)
    assert all(torch.allclose(via_ewc[n], direct[n]) for n in direct)


def _same_generative_results(a, b) -> None:
    """Matrices, judge figures, sample grids and final weights equal bit for bit."""
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for key in ("acc_matrix", "val_acc_matrix", "fid_matrix", "val_fid_matrix", "class_recognition", "class_fid", "passes"):
        assert ma[key] == mb[key], key
    for grid in sorted((a / "samples").glob("task_*.png")):
        assert grid.read_bytes() == (b / "samples" / grid.name).read_bytes(), grid.name
    assert [json.loads(r)["task"] for r in (b / "log.jsonl").read_text().splitlines()] == list(range(len(ma["acc_matrix"])))


def test_a_finished_generative_comparison_resumes_with_the_same_command(private_mnist_dir, tmp_path):
    """`anpyc compare --config GEN.yaml ... --resume` on a finished comparison of generators
    reads its runs back: a run saves the settings a generator gets (Adam, raw inputs), and the
    resume compares the command's config as the run applies them (it refused every run before,
    "stream, train differ")."""
    from anpyc.experiments.compare import compare

    cfg = _cfg(private_mnist_dir)
    first = compare(cfg, ["finetune"], [0], tmp_path / "c", quiet=True)
    again = compare(cfg, ["finetune"], [0], tmp_path / "c", quiet=True, resume=True)
    assert again["methods"]["finetune"]["avg_acc"] == first["methods"]["finetune"]["avg_acc"]
    assert yaml.safe_load((tmp_path / "c" / "finetune" / "seed_0" / "config.yaml").read_text())["train"]["optimizer"] == "adam"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vae", "gan"])
def test_a_killed_generative_run_resumes_to_the_identical_result(private_mnist_dir, tmp_path, monkeypatch, model):
    """Killed mid-task (after its second epoch's checkpoint) and resumed: the same recognition
    and FD matrices, sample grids and weights as the run that was never killed (the Adam state
    of the generator and, for the GAN, of its discriminator, and the judge's figures are in the
    checkpoint)."""
    from anpyc.runner import resume_run
    from killing import Killed, kill_after

    cfg = _cfg(private_mnist_dir, model={"name": model}, method="ewc", method_params={"fisher_samples": 50},
               train={"epochs": 3, "checkpoint_every": 1})
    full = run(cfg, tmp_path / "full", quiet=True)
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after(m, 5)  # task 0: epochs 1, 2, task end; task 1: epochs 1, 2 -> killed inside task 1
        with pytest.raises(Killed):
            run(cfg, out, quiet=True)
    resumed = resume_run(out, quiet=True)
    _same_generative_results(tmp_path / "full", out)
    for a, b in zip(resumed.model.state_dict().values(), full.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_generative_run_checkpoints_resumes_and_logs_to_tensorboard_from_the_cli(private_mnist_dir, tmp_path, monkeypatch):
    """`anpyc run --model vae ... --checkpoint-every 1 --tensorboard`, killed after its first
    task, then `anpyc run --resume DIR`: the run ends as the uninterrupted one."""
    from killing import Killed, kill_after

    args = ["run", "--model", "vae", "--benchmark", "split-mnist", "--method", "finetune", "--tasks", "2",
            "--subsample", "100", "--test-subsample", "60", "--data-dir", private_mnist_dir, "--hidden", "32",
            "--latent-dim", "8", "--classifier", "mlp", "--classifier-epochs", "1", "--classifier-subsample", "1000",
            "--samples-per-class", "20", "--grid-columns", "3", "--batch-size", "50", "--epochs", "2",
            "--checkpoint-every", "1", "--quiet", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    out = tmp_path / "killed"
    with monkeypatch.context() as m:
        kill_after(m, 2)  # task 0: epoch 1, task end -> killed between the tasks
        with pytest.raises(Killed):
            main([*args, "--tensorboard", "--out", str(out)])
    assert main(["run", "--resume", str(out), "--tensorboard", "--quiet", "--no-report"]) == 0
    _same_generative_results(tmp_path / "full", out)
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_methods_that_need_a_classifier_are_refused_for_a_generator_before_anything_is_written(tmp_path, capsys):
    """Replay, distillation, HAT's gates and MAS's importance read a classifier's heads, logits
    or layers; density and SLDA train no network: with ``--model vae|gan`` each was a traceback
    from inside the first step (or, for the latter, an untrained generator scored as a result)."""
    from anpyc.methods import method_names

    fits = method_names(without={"classifier-only", "no-network"})  # (with any method a test registered)
    refused = [m for m in method_names() if m not in fits]
    assert {"er", "derpp", "lwf", "mas", "hat", "density", "slda"} <= set(refused)
    assert {"anpyc", "anpyc-masks", "ewc", "finetune", "joint", "online-ewc", "packnet", "si"} <= set(fits)
    for model in ("vae", "gan"):
        for m in refused:
            out = tmp_path / f"{model}-{m}"
            argv = ["run", "--method", m, "--model", model, "--benchmark", "split-mnist", "--tasks", "2", "--out", str(out)]
            assert main([*argv, "--quiet"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"{m} (" in err[0] and f"cannot train a generation model (--model {model})" in err[0]
            assert f"methods that can: {', '.join(fits)}" in err[0]
            assert not out.exists()
    out = tmp_path / "cmp"  # a comparison refuses before its first run, not as a failed job after the others
    assert main(["compare", "--methods", "ewc,er", "--model", "vae", "--benchmark", "split-mnist", "--tasks", "2",
                 "--out", str(out), "--quiet", "--no-presets"]) == 2
    assert "er (classifier-only) cannot train" in capsys.readouterr().err and not out.exists()
