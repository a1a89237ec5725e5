"""The distributed helpers in one process, and their sharding rules under a pretend world
size (the real multi-process runs are in test_launch.py)."""

import pytest
import torch

from anpyc.config import StreamConfig
from anpyc.data import make_stream
from anpyc.data.taskdata import ConcatData, iterate
from anpyc.methods import create
from anpyc.parallel import collectives as ddist


@pytest.fixture(scope="module")
def data():
    stream = make_stream(StreamConfig(benchmark="blobs", tasks=2, subsample=53), seed=0)
    return ConcatData([stream[0].train, stream[1].train])  # 106 rows from two tasks


def _pretend(monkeypatch, r: int, w: int) -> None:
    monkeypatch.setattr(ddist, "rank", lambda: r)
    monkeypatch.setattr(ddist, "world_size", lambda: w)


def test_one_process_is_plain_iteration(data):
    got = list(ddist.shard_batches(data, 16, torch.Generator().manual_seed(3)))
    want = list(iterate(data, 16, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for u, v in zip(a, b):
            assert torch.equal(u, v)
    assert [len(b[1]) for b in ddist.rank_batches(data, 40, limit=90)] == [40, 40, 10]


@pytest.mark.parametrize("w", [2, 3])
def test_shards_partition_every_global_batch(monkeypatch, data, w):
    # batch 16 over 106 rows: the last global batch has 10 rows; with 3 ranks none is empty,
    # batch 52 leaves 2 rows, so with 3 ranks one rank gets an empty (but present) batch
    for batch in (16, 52):
        full = list(iterate(data, batch, shuffle=True, generator=torch.Generator().manual_seed(1)))
        parts = []
        for r in range(w):
            _pretend(monkeypatch, r, w)
            parts.append(list(ddist.shard_batches(data, batch, torch.Generator().manual_seed(1))))
        assert all(len(p) == len(full) for p in parts)  # same number of steps on every rank
        for k, (x, _, _) in enumerate(full):
            xs = torch.cat([parts[r][k][0] for r in range(w)])
            assert len(xs) == len(x)  # disjoint and complete
            # same rows as the global batch (rows are unique vectors in blobs)
            assert sorted(map(tuple, xs.flatten(1).tolist())) == sorted(map(tuple, x.flatten(1).tolist()))
            for r in range(w):
                assert parts[r][k][0].shape[1:] == x.shape[1:]
        if batch == 52 and w == 3:
            assert min(len(p[-1][1]) for p in parts) == 0


def test_rank_batches_deal_whole_batches(monkeypatch, data):
    full = [b[1] for b in iterate(data, 20, limit=95)]
    dealt = {}
    for r in range(3):
        _pretend(monkeypatch, r, 3)
        dealt[r] = [b[1] for b in ddist.rank_batches(data, 20, limit=95)]
    assert [len(dealt[r]) for r in range(3)] == [2, 2, 1]
    for k, y in enumerate(full):
        assert torch.equal(dealt[k % 3][k // 3], y)


def test_one_process_no_ops():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert ddist.sync_gradients_([p], 6.0, 3) == (6.0, 3)
    assert p.grad.tolist() == [2.0, 2.0, 2.0]
    assert ddist.sum_scalars(1, 2.5) == [1.0, 2.5]
    assert ddist.all_gather_object("x") == ["x"]
    method = create("finetune")
    before = ddist.state_checksum(method)
    ddist.broadcast_module_buffers_(method)
    ddist.decorrelate_rng_(0)  # rank 0: keeps the global stream
    assert ddist.state_checksum(method) == before


def test_checksum_sees_every_byte():
    method = create("finetune")
    a = ddist.state_checksum(method)
    method.register_buffer("mask__w", torch.ones(4, dtype=torch.bool))
    b = ddist.state_checksum(method)
    method.mask__w[2] = False
    c = ddist.state_checksum(method)
    method.mask__w[2] = True
    assert len({a, b, c}) == 3 and ddist.state_checksum(method) == b
