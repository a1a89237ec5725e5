import pytest
import torch

from anpyc.config import ModelConfig, RunConfig
from anpyc.errors import ConfigError
from anpyc.models import build_model
from anpyc.models.norm import TaskBatchNorm2d
from anpyc.runner import run


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shapes_on_mnist_and_cifar_inputs(name, shape):
    model = build_model(ModelConfig(name=name, width=4), shape)
    model.add_head(2), model.add_head(5)
    x = torch.randn(3, *shape)
    assert model.features(x).shape == (3, 32)  # 8 * width features for both bodies
    assert model(x, 0).shape == (3, 2) and model(x, 1).shape == (3, 5)


def test_default_sizes_match_the_papers():
    cnn = build_model(ModelConfig(name="cnn"), (3, 32, 32))
    convs = [m.out_channels for m in cnn.body.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 128, 256] and cnn.feature_dim == 512
    assert not any(isinstance(m, TaskBatchNorm2d) for m in cnn.body.modules())
    res = build_model(ModelConfig(name="resnet18"), (3, 32, 32))
    n = sum(p.numel() for p in res.body.parameters())
    assert res.feature_dim == 160 and 1.0e6 < n < 1.2e6  # GEM's reduced ResNet-18: ~1.1M
    assert sum(isinstance(m, torch.nn.Conv2d) for m in res.body.modules()) == 17 + 3  # 17 + 3 projections
    assert sum(isinstance(m, TaskBatchNorm2d) for m in res.body.modules()) == 20
    plain = build_model(ModelConfig(name="resnet18", batch_norm=False, width=4), (3, 32, 32))
    assert not any(isinstance(m, TaskBatchNorm2d) for m in plain.body.modules())


def test_bad_inputs_are_config_errors():
    with pytest.raises(ConfigError, match="needs image inputs"):
        build_model(ModelConfig(name="cnn"), (784,))
    with pytest.raises(ConfigError, match="at least 8x8"):
        build_model(ModelConfig(name="resnet18"), (3, 4, 4))
    with pytest.raises(ConfigError, match="no dropout"):
        build_model(ModelConfig(name="resnet18", dropout=0.5), (3, 32, 32))
    with pytest.raises(ConfigError, match="width must be >= 1"):
        ModelConfig(name="cnn", width=0)


def test_two_task_split_fashion_mnist_cnn_run(fashion_dir):
    cfg = RunConfig.from_dict({
        "method": "finetune",
        # raw [0, 1] inputs, for which lr 0.05 with momentum 0.9 was chosen
        "stream": {"benchmark": "split-fashion-mnist", "tasks": 2, "subsample": 600, "test_subsample": 400, "data_dir": fashion_dir,
                   "standardize": False},
        "model": {"name": "cnn", "width": 8},
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
    })
    res = run(cfg, quiet=True)
    assert res.acc_matrix.shape == (2, 2)
    assert res.acc_matrix[0, 0] > 0.9 and res.acc_matrix[1, 1] > 0.85  # 2-class tasks, chance 0.5
    assert res.metrics["n_shared_params"] == sum(p.numel() for p in res.model.body.parameters())


def test_importance_and_filter_masks_on_conv_kernels():
    from anpyc.data.taskdata import TaskData
    from anpyc.kernels.importance import entropy_taylor
    from anpyc.kernels.masking import lowest_fraction_mask

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="cnn", width=4, batch_norm=True), (3, 8, 8))
    model.add_head(3)
    data = TaskData(torch.randn(64, 3, 8, 8), torch.randint(0, 3, (64,)), 0)
    stats = [b.clone() for n, b in model.body.named_buffers() if "running" in n]
    omega = entropy_taylor(model, data, batch_size=16)
    assert all(torch.equal(a, b) for a, b in zip(stats, [b for n, b in model.body.named_buffers() if "running" in n]))
    conv = "body.features.0.weight"
    assert omega[conv].shape == (4, 3, 3, 3) and (omega[conv] >= 0).all() and omega[conv].sum() > 0
    prune = lowest_fraction_mask(omega[conv], torch.ones_like(omega[conv], dtype=torch.bool), 0.5, unit_dim=0)
    per_filter = prune.reshape(4, -1)
    assert per_filter.all(1).sum() == 2 and (per_filter.all(1) | ~per_filter.any(1)).all()  # whole filters
