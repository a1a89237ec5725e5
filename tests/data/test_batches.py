"""Mini-batches over task data: ``rebatch`` regrouping a source's own batches (order, limit,
the source read no further than needed), ``iterate`` over random-access and batch-only data,
and the batches of a fractional number of epochs (``epoch_batches``, ``iterate_epochs``)."""

import math

import pytest
import torch

from anpyc.data.batches import epoch_batches, iterate, iterate_epochs, rebatch
from anpyc.data.taskdata import TaskData


def _counted(sizes, pulls):
    """Source batches of ``sizes`` rows numbered on from 0 (labels = row number, task id = batch
    index); every batch pulled is appended to ``pulls``."""
    start = 0
    for k, n in enumerate(sizes):
        pulls.append(k)
        rows = torch.arange(start, start + n)
        yield rows.float().unsqueeze(1), rows, torch.full((n,), k)
        start += n


def _sizes(batches):
    return [len(y) for _, y, _ in batches]


# ----------------------------------------------------------------------------- rebatch
def test_rebatch_stops_at_the_limit_without_pulling_another_batch():
    pulls = []
    out = list(rebatch(_counted([4, 4, 4], pulls), 3, limit=6))
    assert _sizes(out) == [3, 3] and pulls == [0, 1]
    assert torch.cat([y for _, y, _ in out]).tolist() == list(range(6))  # the first rows, in order


def test_rebatch_with_a_limit_on_a_source_batch_boundary_pulls_no_further_batch():
    # the limit is used up by batch 1 exactly: pulling batch 2 only to drop it would read a
    # DataLoader (or a one-shot generator) one batch too far
    pulls = []
    assert _sizes(rebatch(_counted([4, 4, 4], pulls), 5, limit=8)) == [5, 3]
    assert pulls == [0, 1]


def test_rebatch_with_a_limit_of_zero_reads_nothing():
    # was: the first batch pulled, then dropped (a DataLoader read, a one-shot source consumed)
    pulls = []
    assert list(rebatch(_counted([4, 4], pulls), 2, limit=0)) == []
    assert pulls == []


def test_rebatch_cuts_the_batch_that_crosses_the_limit_in_every_tensor():
    x, y, t = next(rebatch(_counted([5, 5], []), 10, limit=7))
    assert len(x) == len(y) == len(t) == 7  # inputs and task ids cut with the labels
    assert t.tolist() == [0] * 5 + [1] * 2 and x.squeeze(1).tolist() == list(range(7))


def test_rebatch_with_a_limit_beyond_the_data_yields_everything():
    pulls = []
    assert _sizes(rebatch(_counted([3, 3], pulls), 4, limit=100)) == [4, 2] and pulls == [0, 1]


def test_rebatch_keeps_each_rows_task_id_across_source_batches():
    _, y, t = next(rebatch(_counted([2, 2, 2], []), 5))
    assert y.tolist() == [0, 1, 2, 3, 4] and t.tolist() == [0, 0, 1, 1, 2]


def test_rebatch_splits_a_source_batch_larger_than_the_batch_size():
    assert _sizes(rebatch(_counted([7], []), 3)) == [3, 3, 1]


@pytest.mark.parametrize("size", [0, -2])
def test_rebatch_refuses_a_batch_size_below_one(size):
    with pytest.raises(ValueError, match="batch size must be >= 1"):
        list(rebatch(_counted([2], []), size))  # a generator: the check runs on the first read


# ----------------------------------------------------------------------------- iterate
class _OwnBatches:
    """Split data without random access: its own batches, in its own order, and a record of
    what ``iterate`` asked of it."""

    random_access = False
    input_shape = (1,)

    def __init__(self, sizes):
        self.sizes, self.asked = sizes, []

    def __len__(self):
        return sum(self.sizes)

    def batches(self, batch_size, shuffle=False, generator=None):
        self.asked.append((batch_size, shuffle))
        return _counted(self.sizes, [])


def test_iterate_reads_data_without_random_access_in_its_own_order_regrouped():
    data = _OwnBatches([3, 3, 3])
    out = list(iterate(data, 4, shuffle=True, generator=torch.Generator().manual_seed(0), limit=7))
    assert _sizes(out) == [4, 3] and torch.cat([y for _, y, _ in out]).tolist() == list(range(7))
    assert data.asked == [(4, True)]  # the wish to shuffle is passed on; the source decides


def test_iterate_shuffles_with_the_generator_only():
    data = TaskData(torch.arange(20).float().unsqueeze(1), torch.arange(20), 0)

    def order(seed):
        return torch.cat([y for _, y, _ in iterate(data, 6, shuffle=True, generator=torch.Generator().manual_seed(seed))])

    assert torch.equal(order(3), order(3)) and not torch.equal(order(3), order(4))
    assert sorted(order(3).tolist()) == list(range(20))
    plain = torch.cat([y for _, y, _ in iterate(data, 6)])
    assert plain.tolist() == list(range(20))  # no shuffle: the data's order


def test_iterate_with_a_limit_takes_a_shuffled_sample_not_the_first_rows():
    data = TaskData(torch.zeros(50, 1), torch.arange(50), 0)
    got = torch.cat([y for _, y, _ in iterate(data, 4, shuffle=True, generator=torch.Generator().manual_seed(1), limit=10)])
    assert len(got) == 10 and len(set(got.tolist())) == 10 and got.tolist() != list(range(10))


# ----------------------------------------------------------------------------- epochs
def test_epoch_batches_whole_and_fractional_epochs():
    assert epoch_batches(10, 2) == [10, 10]
    assert epoch_batches(10, 1.3) == [10, 3]
    assert epoch_batches(8, 0.25) == [2]
    assert epoch_batches(10, 0) == []


def test_a_fractional_epoch_trains_at_least_one_batch():
    assert epoch_batches(4, 0.01) == [1] and epoch_batches(4, 1.01) == [4, 1]


def test_epochs_a_rounding_error_above_a_whole_number_add_no_epoch():
    # a budget computed as passes / factor can land one ulp above the whole number
    assert epoch_batches(10, math.nextafter(2.0, 3.0)) == [10, 10]
    assert epoch_batches(10, math.nextafter(2.0, 1.0)) == [10, 10]  # one ulp below is still two epochs


def test_iterate_epochs_reshuffles_every_epoch_and_cuts_the_last():
    data = TaskData(torch.zeros(12, 1), torch.arange(12), 0)
    got = [y for _, y, _ in iterate_epochs(data, 2.5, batch_size=4, generator=torch.Generator().manual_seed(0))]
    assert [len(y) for y in got] == [4] * 8  # 3 batches an epoch: 3 + 3 + 1.5 rounded to 2
    first, second = torch.cat(got[:3]), torch.cat(got[3:6])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(12))  # each whole epoch sees every row once
    assert not torch.equal(first, second)  # in its own order


def test_iterate_epochs_gives_each_epoch_its_share_of_batches():
    data = TaskData(torch.zeros(10, 1), torch.arange(10), 0)  # 4 batches of 3 an epoch, the last of 1
    counts = {epochs: len(list(iterate_epochs(data, epochs, batch_size=3))) for epochs in (0.3, 1, 1.7, 3)}
    assert counts == {0.3: 1, 1: 4, 1.7: 4 + 3, 3: 12}
