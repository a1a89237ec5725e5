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


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_tasks_validation_and_test_rows_go_through_its_permutation_too(split):
    s = _blobs(tasks=2)
    idx = torch.arange(4)
    x0, _, _ = getattr(s[0], split).get(idx)
    x1, _, _ = getattr(s[1], split).get(idx)
    assert torch.allclose(x0.reshape(4, -1)[:, s[1].train.transform.perm], x1.reshape(4, -1))
    assert not torch.allclose(x0, x1)


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


# ----------------------------------------------------------------------------- standardisation
def _train_rows_stats(stream):
    """Mean and std of the raw [0, 1] pixels of the training rows the stream's statistics use."""
    from anpyc.data.streams import _split_train_val

    task = stream[0]
    rows, _ = _split_train_val(task.train.x.shape[0], 0.1, 0)
    raw = task.train.x[rows].double() / 255.0
    return float(raw.mean()), float(raw.std(unbiased=False))


@pytest.mark.parametrize("bench", ["permuted-mnist", "split-mnist"])
def test_mnist_streams_are_standardised_with_training_row_statistics(mnist_dir, bench):
    s = make_stream(StreamConfig(benchmark=bench, tasks=2, subsample=3000), seed=0)
    mean, std = _train_rows_stats(s)
    stats = s[1].info["standardize"]
    assert stats["mean"][0] == pytest.approx(mean, abs=1e-5) and stats["std"][0] == pytest.approx(std, abs=1e-5)
    assert stats["mean"][0] == pytest.approx(0.1307, abs=2e-3) and stats["std"][0] == pytest.approx(0.3081, abs=2e-3)
    assert all(t.info["standardize"] == stats for t in s)  # one set of statistics for the stream
    x, _, _ = s[1].train.get(torch.arange(len(s[1].train)))
    if bench == "permuted-mnist":  # every class: the training rows' moments
        assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    raw = make_stream(StreamConfig(benchmark=bench, tasks=2, subsample=3000, standardize=False), seed=0)
    xr, _, _ = raw[1].train.get(torch.arange(len(raw[1].train)))
    assert raw[1].info["standardize"] is None and float(xr.min()) >= 0 and float(xr.max()) <= 1
    torch.testing.assert_close(x, (xr - stats["mean"][0]) / stats["std"][0], atol=1e-4, rtol=0)


def test_validation_rows_do_not_shape_the_statistics(mnist_dir):
    a = make_stream(StreamConfig(benchmark="permuted-mnist", tasks=1, val_fraction=0.1), seed=0)[0].info["standardize"]
    b = make_stream(StreamConfig(benchmark="permuted-mnist", tasks=1, val_fraction=0.4), seed=0)[0].info["standardize"]
    assert a != b  # other held-out rows, other statistics


def test_rotated_mnist_is_standardised_after_the_rotation(mnist_dir):
    s = make_stream(StreamConfig(benchmark="rotated-mnist", tasks=4), seed=0)
    stats = s[1].info["standardize"]
    x, _, _ = s[1].train.get(torch.arange(8))  # 45 degrees: the corners are the rotation's zero fill
    background = (0.0 - stats["mean"][0]) / stats["std"][0]
    assert s[1].info["degrees"] == 45.0
    torch.testing.assert_close(x[:, :, 0, 0], torch.full((8, 1), background), atol=1e-5, rtol=0)


def test_fashion_and_blobs(fashion_dir):
    s = make_stream(StreamConfig(benchmark="split-fashion-mnist", tasks=1, subsample=50), seed=0)
    assert s[0].info["standardize"]["mean"][0] == pytest.approx(0.286, abs=3e-3)
    assert _blobs(tasks=1)[0].info["standardize"] is None  # blobs are standard Gaussian already


def test_every_stream_is_registered_once_with_a_kind_and_unknown_names_are_refused():
    from anpyc.data.streams import STREAM_KINDS, STREAMS, get_stream_spec

    assert {"permuted-mnist", "split-mnist", "blobs", "split-cifar100", "cifar10-100"} <= set(STREAMS)
    assert all(spec.kind in STREAM_KINDS for spec in STREAMS.values())
    with pytest.raises(ConfigError, match="unknown benchmark 'split-mnits' \\(did you mean 'split-mnist'\\?\\); known: permuted-mnist, "):
        get_stream_spec("split-mnits")


def test_a_stream_of_your_own_is_a_loader_and_a_registry_line(monkeypatch):
    """Registered by decorating its loader: the shared split builder makes its tasks, with
    half-open class ranges (every class in exactly one task)."""
    from anpyc.data import streams

    monkeypatch.setattr(streams, "STREAMS", dict(streams.STREAMS))

    @streams.register_stream("six-blobs", kind="split", standardize=False)
    def six_blobs(data_dir, seed):
        return streams.synthetic_blobs(seed, n_per_class=30, n_classes=6)

    s = make_stream(StreamConfig(benchmark="six-blobs", classes_per_task=2), seed=0, labels="global")
    assert [t.classes for t in s] == [(0, 1), (2, 3), (4, 5)] and s.n_classes == 6
    for t in s:
        _, y, _ = t.test.get(torch.arange(len(t.test)))
        assert set(y.tolist()) == set(t.classes)
    with pytest.raises(ValueError, match="registered twice"):
        streams.register_stream("six-blobs", kind="split", loader=lambda data_dir, seed: None)
    with pytest.raises(ValueError, match="unknown kind"):
        streams.register_stream("odd", kind="shuffled", loader=six_blobs)
