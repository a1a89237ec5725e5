"""CIFAR streams on the tiny generated archives (see conftest.py)."""

import pytest
import torch

from anpyc.config import StreamConfig
from anpyc.data import iterate, make_stream
from anpyc.data.transforms import Normalize
from anpyc.errors import ConfigError


def _stream(data, benchmark, labels="local", seed=0, **kw):
    return make_stream(StreamConfig(benchmark=benchmark, data_dir=str(data), **kw), seed=seed, labels=labels)


def _all_labels(split):
    return torch.cat([y for _, y, _ in iterate(split, 1000)])


def test_split_cifar10_five_tasks_of_two_classes(tiny_cifar):
    data, _, members = tiny_cifar
    s = _stream(data, "split-cifar10")
    assert len(s) == 5 and s.input_shape == (3, 32, 32) and s.n_classes == 10
    for t, task in enumerate(s):
        assert task.classes == (2 * t, 2 * t + 1) and task.n_outputs == 2
        base = task.train.y.new_tensor(sum((members["cifar10"][f"data_batch_{i}"][b"labels"] for i in range(1, 6)), []))
        assert set(base[task.train.index].tolist()) == set(task.classes)  # right classes picked
        assert set(_all_labels(task.train).tolist()) == {0, 1} and set(_all_labels(task.test).tolist()) == {0, 1}
        assert not set(task.train.index.tolist()) & set(task.val.index.tolist())
        assert task.info["class_names"] == [["airplane", "automobile"], ["bird", "cat"], ["deer", "dog"], ["frog", "horse"], ["ship", "truck"]][t]


def test_split_cifar100_classes_per_task_follow_the_task_count(tiny_cifar):
    data, _, _ = tiny_cifar
    ten = _stream(data, "split-cifar100")
    assert len(ten) == 10 and ten[3].classes == tuple(range(30, 40)) and ten[3].n_outputs == 10
    twenty = _stream(data, "split-cifar100", tasks=20)
    assert len(twenty) == 20 and twenty[19].classes == tuple(range(95, 100)) and twenty[19].n_outputs == 5
    assert set(_all_labels(twenty[19].test).tolist()) == set(range(5))
    with pytest.raises(ConfigError, match="do not split into 7 equal tasks; --tasks one of 1, 2, 4, 5, 10, 20"):
        _stream(data, "split-cifar100", tasks=7)


def test_cifar10_then_cifar100(tiny_cifar):
    data, _, _ = tiny_cifar
    s = _stream(data, "cifar10-100")
    assert len(s) == 6 and s[0].classes == tuple(range(10)) and s[0].n_outputs == 10
    assert s[1].classes == tuple(range(10, 20)) and s[5].classes == tuple(range(50, 60))
    assert s[0].train.x.shape[0] == 100 and s[1].train.x.shape[0] == 200  # CIFAR-10, then CIFAR-100 images
    g = _stream(data, "cifar10-100", labels="global", tasks=3)
    assert g.n_classes == 30 and all(t.n_outputs == 30 for t in g)
    assert set(_all_labels(g[2].test).tolist()) == set(range(20, 30))
    assert len(_stream(data, "cifar10-100", tasks=11)) == 11
    with pytest.raises(ConfigError, match="at most 11 tasks"):
        _stream(data, "cifar10-100", tasks=12)


def test_normalised_with_training_rows_only(tiny_cifar):
    data, _, _ = tiny_cifar
    s = _stream(data, "split-cifar10")
    norm = s[0].test.transform
    assert isinstance(norm, Normalize) and s[4].val.transform is norm
    train = torch.cat([x for task in s for x, _, _ in iterate(task.train, 1000)])
    torch.testing.assert_close(train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(train.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)


def test_augmentation_train_split_only_and_reproducible(tiny_cifar):
    data, _, _ = tiny_cifar
    a = _stream(data, "split-cifar10", augment=True)
    b = _stream(data, "split-cifar10", augment=True)
    plain = _stream(data, "split-cifar10")
    idx = torch.arange(len(a[1].train))
    xa, xb, xp = a[1].train.get(idx)[0], b[1].train.get(idx)[0], plain[1].train.get(idx)[0]
    assert torch.equal(xa, xb) and not torch.equal(xa, xp)  # same seed, same crops
    assert not torch.equal(a[1].train.get(idx)[0], xa)  # fresh draws each epoch
    for split in ("val", "test"):
        ai = torch.arange(len(a[1].split(split)))
        assert torch.equal(a[1].split(split).get(ai)[0], plain[1].split(split).get(ai)[0])
    c = _stream(data, "split-cifar10", augment=True, seed=1)
    assert not torch.equal(c[0].train.transform.transforms[0](torch.ones(4, 3, 32, 32)),
                           a[0].train.transform.transforms[0](torch.ones(4, 3, 32, 32)))


def test_augment_refused_outside_cifar():
    with pytest.raises(ConfigError, match="only available for the streams that support it .split-cifar10, split-cifar100, cifar10-100."):
        make_stream(StreamConfig(benchmark="blobs", augment=True))


def test_missing_cifar_is_a_clear_error(tmp_path):
    from anpyc.errors import DataError

    with pytest.raises(DataError, match="cifar-100-python.tar.gz not found"):
        make_stream(StreamConfig(benchmark="split-cifar100", data_dir=str(tmp_path)))
