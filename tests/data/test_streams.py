import pytest
import torch

from anpyc.config import StreamConfig
from anpyc.data import ConcatData, iterate, make_stream
from anpyc.errors import ConfigError


def _blobs(**kw):
    return make_stream(StreamConfig(benchmark="blobs", **kw), seed=0)


def test_same_seed_same_stream_other_seed_other_permutation():
    a, b = _blobs(tasks=3), _blobs(tasks=3)
    c = make_stream(StreamConfig(benchmark="blobs", tasks=3), seed=1)
    assert torch.equal(a[2].train.transform.perm, b[2].train.transform.perm)
    assert not torch.equal(a[2].train.transform.perm, c[2].train.transform.perm)


def test_first_task_unpermuted_by_option():
    assert _blobs(tasks=2)[0].train.transform is None
    assert _blobs(tasks=2, first_task_unpermuted=False)[0].train.transform is not None


def test_tasks_share_base_storage():
    s = _blobs(tasks=5)
    assert all(t.train.x.data_ptr() == s[0].train.x.data_ptr() for t in s)


def test_val_disjoint_from_train_and_subsample():
    s = _blobs(tasks=2, subsample=300)
    t = s[1]
    assert len(t.train) == 300 and len(t.val) == round(300 * 0.1 / 0.9)
    assert not set(t.train.index.tolist()) & set(t.val.index.tolist())


def test_permutation_applied_per_batch():
    s = _blobs(tasks=2)
    idx = torch.arange(4)
    x0, y0, _ = s[0].train.get(idx)
    x1, y1, t1 = s[1].train.get(idx)
    perm = s[1].train.transform.perm
    assert torch.equal(y0, y1) and t1.tolist() == [1] * 4
    assert torch.allclose(x0.reshape(4, -1)[:, perm], x1.reshape(4, -1))


def test_concat_data_keeps_order_and_task_ids():
    s = _blobs(tasks=2, subsample=10)
    both = ConcatData([s[0].train, s[1].train])
    x, y, t = both.get(torch.tensor([15, 2, 11]))
    assert t.tolist() == [1, 0, 1]
    x2, _, _ = s[0].train.get(torch.tensor([2]))
    assert torch.equal(x[1], x2[0])


def test_iterate_covers_everything_once():
    s = _blobs(tasks=1, subsample=25)
    seen = sum(len(y) for _, y, _ in iterate(s[0].train, 7, shuffle=True, generator=torch.Generator()))
    assert seen == 25


def test_unknown_benchmark():
    with pytest.raises(ConfigError, match="unknown benchmark"):
        make_stream(StreamConfig(benchmark="imagenet"))


def test_split_mnist_classes_and_local_labels(mnist_dir):
    s = make_stream(StreamConfig(benchmark="split-mnist", subsample=200, test_subsample=100), seed=0)
    assert len(s) == 5 and s[2].classes == (4, 5) and s[2].n_outputs == 2
    _, y, _ = s[2].train.get(torch.arange(len(s[2].train)))
    assert set(y.tolist()) <= {0, 1}
    g = make_stream(StreamConfig(benchmark="split-mnist", subsample=200), seed=0, labels="global")
    _, yg, _ = g[2].train.get(torch.arange(len(g[2].train)))
    assert set(yg.tolist()) <= {4, 5} and g[2].n_outputs == 10


def test_split_mnist_too_many_tasks(mnist_dir):
    with pytest.raises(ConfigError, match="at most 5"):
        make_stream(StreamConfig(benchmark="split-mnist", tasks=6))


def test_rotated_mnist_rotates(mnist_dir):
    s = make_stream(StreamConfig(benchmark="rotated-mnist", tasks=2), seed=0)  # no subsample: same rows
    x0, _, _ = s[0].train.get(torch.arange(3))
    x1, _, _ = s[1].train.get(torch.arange(3))
    assert s[1].info["degrees"] == 90.0 and not torch.allclose(x0, x1)
    assert torch.allclose(x0.rot90(1, (2, 3)), x1, atol=0.02) or torch.allclose(x0.rot90(-1, (2, 3)), x1, atol=0.02)


def test_split_fashion_mnist(fashion_dir):
    s = make_stream(StreamConfig(benchmark="split-fashion-mnist", subsample=50), seed=0)
    assert len(s) == 5 and s.input_shape == (1, 28, 28)
