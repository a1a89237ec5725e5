"""Your own data: Datasets that read lazily from files, DataLoaders and iterables of batches,
through the data layer, the distributed iterators, the importance estimators and ``run``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from anpyc.config import ModelConfig, RunConfig
from anpyc.data import (
    BatchIterable,
    ConcatData,
    DatasetData,
    TaskData,
    as_task_data,
    iterate,
    stream_from_datasets,
)
from anpyc.data.streams import synthetic_blobs
from anpyc.data.taskdata import rebatch
from anpyc.errors import ConfigError
from anpyc.kernels import importance as imp
from anpyc.models import build_model
from anpyc.parallel import collectives as ddist
from anpyc.runner import run

N_TRAIN, N_TEST = 160, 60


class FileDataset(Dataset):
    """Reads example ``i`` from its own ``.npy`` file on every access (the label is in the
    file name, as in a folder of images); logs the rows read."""

    def __init__(self, files, label_as_tensor: bool = False) -> None:
        self.files = list(files)
        self.label_as_tensor = label_as_tensor
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        self.reads.append(int(i))
        label = int(self.files[i].stem.split("_")[1])
        return np.load(self.files[i]), torch.tensor(label) if self.label_as_tensor else label


def _arrays(task: int) -> dict:
    """Blobs inputs (1 x 4 x 4), pixel-permuted in task 1 so the tasks interfere."""
    a = synthetic_blobs(0, n_per_class=N_TRAIN // 4, side=4)
    tx, ex = torch.from_numpy(a["train_x"]), torch.from_numpy(a["test_x"][:N_TEST])
    if task:
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(task))
        tx, ex = (v.reshape(len(v), -1)[:, perm].reshape(v.shape) for v in (tx, ex))
    return {"train": (tx, torch.from_numpy(a["train_y"])), "test": (ex, torch.from_numpy(a["test_y"][:N_TEST]))}


def _write(folder, x, y) -> list:
    folder.mkdir(parents=True)
    files = []
    for i in range(len(y)):
        f = folder / f"{i:05d}_{int(y[i])}.npy"
        np.save(f, x[i].numpy())
        files.append(f)
    return files


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """Two tasks written one example per file; the same data as in-memory tensors."""
    root = tmp_path_factory.mktemp("user_data")
    files, tensors = {}, {}
    for t in range(2):
        arrays = _arrays(t)
        for split, (x, y) in arrays.items():
            files[t, split] = _write(root / f"t{t}" / split, x, y)
            tensors[t, split] = (x, y)
    return files, tensors


def _datasets(on_disk, split: str) -> list[FileDataset]:
    """Task 0 gives int labels, task 1 0-d tensors."""
    return [FileDataset(on_disk[0][t, split], label_as_tensor=bool(t)) for t in range(2)]


def _cfg(method: str, **params) -> RunConfig:
    return RunConfig.from_dict({
        "method": method, "method_params": params, "seed": 3,
        "model": {"hidden": [32]}, "train": {"epochs": 5, "batch_size": 16, "lr": 0.2},
    })


QUICK = {  # a few seconds per run on one core
    "finetune": {}, "joint": {},
    "ewc": {"fisher_samples": 64, "lam": 10.0},
    "anpyc": {"importance_samples": 64, "retrain_epochs": 1},
}


# ------------------------------------------------------------------ laziness and equality
def test_a_shuffled_batch_reads_only_its_files(on_disk):
    train = _datasets(on_disk, "train")
    stream = stream_from_datasets(train, _datasets(on_disk, "test"), n_outputs=4, seed=0)
    assert stream.input_shape == (1, 4, 4) and len(stream[0].train) + len(stream[0].val) == N_TRAIN
    assert len(train[0].reads) <= 2  # the first item of train (and val), for the shape check
    train[0].reads.clear()
    order = torch.randperm(len(stream[0].train), generator=torch.Generator().manual_seed(5))
    x, y, t = next(iterate(stream[0].train, 8, shuffle=True, generator=torch.Generator().manual_seed(5)))
    assert sorted(train[0].reads) == sorted(stream[0].train.index[order[:8]].tolist())
    assert x.shape == (8, 1, 4, 4) and t.tolist() == [0] * 8


def test_dataset_rows_equal_the_in_memory_rows(on_disk):
    x, y = on_disk[1][1, "train"]
    lazy, memory = as_task_data(_datasets(on_disk, "train")[1], 1), as_task_data((x, y), 1)
    assert isinstance(lazy, DatasetData) and isinstance(memory, TaskData)
    idx = torch.tensor([7, 0, 150])
    for a, b in zip(lazy.get(idx), memory.get(idx), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(lazy.labels(), y) and lazy.input_shape == (1, 4, 4)


@pytest.mark.parametrize("method", sorted(QUICK))
def test_run_on_files_equals_run_in_memory(on_disk, method):
    """run() on Datasets reading files gives the matrices of the same data in memory."""
    files = stream_from_datasets(_datasets(on_disk, "train"), _datasets(on_disk, "test"), seed=1)
    memory = stream_from_datasets([on_disk[1][t, "train"] for t in range(2)], [on_disk[1][t, "test"] for t in range(2)], seed=1)
    assert files[1].n_outputs == memory[1].n_outputs == 4
    a = run(_cfg(method, **QUICK[method]), quiet=True, stream=files)
    b = run(_cfg(method, **QUICK[method]), quiet=True, stream=memory)
    assert np.array_equal(a.acc_matrix, b.acc_matrix, equal_nan=True)
    assert np.array_equal(a.val_acc_matrix, b.val_acc_matrix, equal_nan=True)
    assert np.isfinite(a.acc_matrix[1]).all() and a.metrics["benchmark"] == "custom"
    assert a.acc_matrix[0, 0] > 0.45  # it learned something (4 classes, chance 0.25)


@pytest.mark.parametrize("method", sorted(QUICK))
def test_run_with_dataloader_train_sets(on_disk, method):
    loaders = [
        DataLoader(d, batch_size=24, shuffle=True, generator=torch.Generator().manual_seed(t))
        for t, d in enumerate(_datasets(on_disk, "train"))
    ]
    tests = _datasets(on_disk, "test")
    stream = stream_from_datasets(loaders, tests, val=tests, n_outputs=4)
    assert isinstance(stream[0].train, BatchIterable) and len(stream[0].train) == N_TRAIN
    result = run(_cfg(method, **QUICK[method]), quiet=True, stream=stream)
    assert np.isfinite(result.acc_matrix[1]).all() and result.acc_matrix[0, 0] > 0.45


# ------------------------------------------------------------------ importance
@pytest.mark.parametrize("estimator", ["entropy_taylor", "fisher_diag", "mas_importance"])
def test_importance_accepts_every_kind_of_data(on_disk, estimator):
    x, y = on_disk[1][0, "train"]
    model = build_model(ModelConfig(hidden=(16,)), (1, 4, 4))
    model.add_head(4)
    fn = getattr(imp, estimator)
    reference = fn(model, TaskData(x, y, 0), max_samples=100)
    lazy = _datasets(on_disk, "train")[0]
    for data, rows_read in (
        (DatasetData(lazy, 0), 100),
        (lazy, 100),  # a raw Dataset is wrapped on the fly
        (BatchIterable(DataLoader(TensorDataset(x, y), batch_size=7), 0), 0),  # regrouped into the estimator's batches
        (DataLoader(TensorDataset(x, y), batch_size=7), 0),
    ):
        lazy.reads.clear()
        omega = fn(model, data, max_samples=100)
        assert omega.keys() == reference.keys() and len(lazy.reads) == rows_read
        for k in omega:
            torch.testing.assert_close(omega[k], reference[k], rtol=1e-5, atol=1e-7)


def test_importance_sample_budget_reads_that_many_rows(on_disk):
    lazy = _datasets(on_disk, "train")[0]
    model = build_model(ModelConfig(hidden=(16,)), (1, 4, 4))
    model.add_head(4)
    imp.entropy_taylor(model, DatasetData(lazy, 0), max_samples=30, batch_size=10)
    assert sorted(lazy.reads) == list(range(30))


# ------------------------------------------------------------------ batch iterables
def test_dataloader_length_from_its_sampler():
    ds = TensorDataset(torch.zeros(10, 2), torch.zeros(10, dtype=torch.long))
    assert len(BatchIterable(DataLoader(ds, batch_size=4), 0)) == 10
    assert len(BatchIterable(DataLoader(ds, batch_size=4, drop_last=True), 0)) == 8


def test_factory_is_read_anew_each_epoch_and_counted_once():
    pulls = []

    def batches():
        for k in range(3):
            pulls.append(k)
            yield torch.full((4, 2), float(k)), torch.arange(4) % 2

    data = as_task_data(batches, 1)
    assert isinstance(data, BatchIterable) and len(data) == 12 and len(pulls) == 3  # one counting pass
    for _ in range(2):  # not exhausted after the first epoch
        assert [len(y) for _, y, _ in iterate(data, 5)] == [5, 5, 2]
    assert len(data) == 12 and len(pulls) == 9


def test_limit_stops_reading_the_source():
    pulls = []

    def batches():
        for k in range(10):
            pulls.append(k)
            yield torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)

    out = list(iterate(BatchIterable(batches, 0), 3, limit=7))
    assert [len(y) for _, y, _ in out] == [3, 3, 1] and pulls == [0, 1]


def test_rebatch_keeps_order_across_source_batches():
    src = [(torch.arange(k, k + n).float().unsqueeze(1), torch.arange(k, k + n), torch.zeros(n, dtype=torch.long))
           for k, n in ((0, 5), (5, 1), (6, 6))]
    got = [y.tolist() for _, y, _ in rebatch(src, 4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


def test_iterable_dataset_of_items_is_batched():
    class Items(IterableDataset):
        def __iter__(self):
            return iter([(torch.ones(3), k % 2) for k in range(5)])

    data = as_task_data(Items(), 2)
    x, y, t = next(iterate(data, 10))
    assert x.shape == (5, 3) and y.tolist() == [0, 1, 0, 1, 0] and t.tolist() == [2] * 5


def test_joint_over_loaders_deals_the_tasks_round_robin():
    def loader(t):
        return [(torch.full((2, 1), float(t)), torch.zeros(2, dtype=torch.long))] * 3

    both = ConcatData([BatchIterable(loader(0), 0), BatchIterable(loader(1), 1)])
    assert not both.random_access and len(both) == 12
    assert [t.tolist() for _, _, t in iterate(both, 2)] == [[0, 0], [1, 1]] * 3


# ------------------------------------------------------------------ distributed
@pytest.mark.parametrize("kind", ["dataset", "loader"])
def test_ranks_split_user_data_like_in_memory_data(monkeypatch, kind):
    x, y = torch.randn(23, 2), torch.arange(23)
    data = DatasetData(TensorDataset(x, y), 0) if kind == "dataset" else BatchIterable(DataLoader(TensorDataset(x, y), batch_size=4), 0)
    one = [b[1].tolist() for b in ddist.shard_batches(data, 8, torch.Generator().manual_seed(0))]
    evals = [b[1].tolist() for b in ddist.rank_batches(data, 5)]
    shards, dealt = [], []
    for r in range(3):
        monkeypatch.setattr(ddist, "rank", lambda r=r: r)
        monkeypatch.setattr(ddist, "world_size", lambda: 3)
        shards.append([b[1].tolist() for b in ddist.shard_batches(data, 8, torch.Generator().manual_seed(0))])
        dealt.append([b[1].tolist() for b in ddist.rank_batches(data, 5)])
    assert all(len(s) == len(one) for s in shards)  # every rank takes every step
    for k, batch in enumerate(one):
        assert sorted(sum((s[k] for s in shards), [])) == sorted(batch)
    assert sorted(sum(dealt, []), key=lambda b: b[0]) == evals


def _user_stream(kind: str):
    """Blobs tasks as Datasets (random access) or as seeded shuffling DataLoaders."""
    def train(t):
        ds = TensorDataset(*_arrays(t)["train"])
        return ds if kind == "dataset" else DataLoader(ds, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(t))

    tests = [TensorDataset(*_arrays(t)["test"]) for t in range(2)]
    return stream_from_datasets([train(t) for t in range(2)], tests, val=tests, n_outputs=4)


DIST_RUNS = [("dataset", "ewc"), ("loader", "joint")]


def _two_rank_user_runs() -> list:
    from anpyc.parallel.launch import _rank_run  # raises if ranks end with different states

    return [
        _rank_run(_cfg(m, **QUICK[m]), None, True, False, "gloo", {"stream": _user_stream(k)}).acc_matrix.tolist()
        for k, m in DIST_RUNS
    ]


def test_two_processes_on_user_data_match_one():
    from anpyc.parallel.launch import spawn_group

    got = spawn_group(_two_rank_user_runs, 2, start_method="fork")
    for (kind, method), matrix in zip(DIST_RUNS, got, strict=True):
        want = run(_cfg(method, **QUICK[method]), quiet=True, stream=_user_stream(kind)).acc_matrix
        np.testing.assert_allclose(np.array(matrix, dtype=float), want, atol=0.02, err_msg=f"{method} on {kind}")


# ------------------------------------------------------------------ errors
class _Items(Dataset):
    def __init__(self, items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _ok(n: int = 4) -> _Items:
    return _Items([(torch.zeros(1, 2, 2), i % 2) for i in range(n)])


@pytest.mark.parametrize("bad, message", [
    (_Items([torch.zeros(3)] * 4), "task 1 train, item 0 must be an (inputs, labels) pair"),
    (_Items([(torch.zeros(3), 1, 2)] * 4), "task 1 train, item 0 must be an (inputs, labels) pair, got a tuple of 3"),
    (_Items([(torch.zeros(3), 0.5)] * 4), "task 1 train, item 0: a label must be an integer"),
    (_Items([("pixels", 1)] * 4), "task 1 train, item 0: inputs must be tensors or numpy arrays, got str"),
    (_Items([(torch.zeros(1, 3, 3), 1)] * 4), "task 1 train inputs have shape (1, 3, 3), task 0 train's (1, 2, 2)"),
    (_Items([]), "task 1 train is empty"),
    ((b for b in []), "task 1 train: a one-shot iterator"),
    (42, "task 1 train: cannot read batches from a int"),
])
def test_bad_user_data_is_one_line_naming_the_task(bad, message):
    with pytest.raises(ConfigError) as err:
        stream_from_datasets([_ok(), bad], [_ok(), _ok()], val=[_ok(), _ok()], n_outputs=2)
    assert message in str(err.value) and "\n" not in str(err.value)


def _pair(n: int, labels: int, dtype=torch.long):
    return torch.zeros(n, 2), (torch.arange(n) % labels).to(dtype)


@pytest.mark.parametrize("train, test, val, message", [
    ([_pair(0, 2)], [_pair(4, 2)], None, "task 0 train is empty"),  # was an IndexError
    ([_pair(8, 2, torch.float32)], [_pair(4, 2)], None, "task 0 train: labels must be integers, got torch.float32"),
    ([_pair(8, 2)], [_pair(4, 3)], None, "task 0 test labels span 0..2, outside the head's outputs 0..1"),  # ran, scoring it wrong
    ([_pair(8, 2)], [_Items([(torch.zeros(2), 2)] * 3)], None, "task 0 test labels span 2..2"),
    ([_pair(8, 2)], [_pair(4, 2)], [_pair(4, 4)], "task 0 val labels span 0..3"),
    (5, 6, None, "train, test (and val) must be lists with one data set per task"),  # was a TypeError
])
def test_labels_outside_the_head_and_malformed_lists_are_refused(train, test, val, message):
    with pytest.raises(ConfigError) as err:
        stream_from_datasets(train, test, val=val)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_loader_train_sets_need_n_outputs_and_val():
    loader = DataLoader(_ok(), batch_size=2)
    with pytest.raises(ConfigError, match="task 0: pass n_outputs="):
        stream_from_datasets([loader], [_ok()], val=[_ok()])
    with pytest.raises(ConfigError, match="task 0: a DataLoader train set cannot be split for validation"):
        stream_from_datasets([loader], [_ok()], n_outputs=2)
    with pytest.raises(ConfigError, match="task 0 train, batch 0: labels must be a 1-D integer tensor"):
        list(iterate(as_task_data([(torch.zeros(2, 1), torch.zeros(2, 1))], 0, "task 0 train"), 2))


def test_stream_from_datasets_infers_outputs_classes_and_splits_val_by_seed():
    parts = [_Items([(torch.zeros(2), 2 * t + i % 2) for i in range(20)]) for t in range(2)]
    a = stream_from_datasets(parts, parts, seed=4)
    b = stream_from_datasets(parts, parts, seed=4)
    c = stream_from_datasets(parts, parts, seed=5)
    assert [t.classes for t in a] == [(0, 1), (2, 3)] and a[0].n_outputs == a.n_classes == 4 and a.labels == "global"
    assert len(a[0].val) == 2 and len(a[0].train) == 18
    assert torch.equal(a[1].val.index, b[1].val.index) and not torch.equal(a[1].val.index, c[1].val.index)
    assert not set(a[1].val.index.tolist()) & set(a[1].train.index.tolist())
    with pytest.raises(ConfigError, match="one train and one test set per task"):
        stream_from_datasets(parts, parts[:1])


@pytest.mark.parametrize("kwargs, message", [
    ({"train": [_pair(8, 2)], "test": [_pair(4, 2)], "val_fraction": 1.0}, "val_fraction must be in (0, 1), got 1.0"),
    ({"train": [_pair(1, 1)], "test": [_pair(4, 1)]}, "task 0: val_fraction 0.1 of 1 training examples leaves no train or no val example"),
    ({"train": [(torch.zeros(4, 2), torch.tensor([0, -1, 1, 0]))], "test": [_pair(4, 2)]}, "labels must be >= 0, found -1"),
    ({"train": [_pair(8, 2)], "test": [_pair(4, 2)], "n_outputs": 0}, "n_outputs must be a positive integer, got 0"),
    ({"train": [_pair(8, 2)], "test": [_pair(4, 2)], "n_outputs": 2.0}, "n_outputs must be a positive integer, got 2.0"),
    ({"train": [_pair(8, 2)] * 2, "test": [_pair(4, 2)] * 2, "classes": [(0, 1)]}, "classes has 1 entries for 2 tasks"),
    ({"train": [(torch.zeros(4, 2), torch.zeros(4, 1, dtype=torch.long))], "test": [_pair(4, 2)]},
     "task 0 train: (x, y) tensors need 1-D labels, one per input; got (4, 2) and (4, 1)"),
    ({"train": [_pair(8, 2)], "test": [[(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))]], "n_outputs": 2},
     "task 0 test, batch 0: 3 inputs but 2 labels"),
    ({"train": [_pair(8, 2)], "test": [[]], "n_outputs": 2}, "task 0 test is empty (the source gave no example)"),
])
def test_settings_and_shapes_your_data_cannot_have_are_one_line(kwargs, message):
    with pytest.raises(ConfigError) as err:
        stream_from_datasets(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("source, message", [
    ("make", "--stream-from expects MODULE:FUNCTION or FILE.py:FUNCTION, got 'make'"),
    ("mod:not-a-name", "expects MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("missing.py:make", "--stream-from missing.py:make: no file missing.py in "),  # the working directory named
    ("streams.py:nothing", "--stream-from streams.py:nothing: streams.py has no function 'nothing'"),
    ("streams.py:not_a_stream", "--stream-from streams.py:not_a_stream: not_a_stream returned a list, not a stream"),
])
def test_a_stream_function_that_cannot_be_found_or_used_is_one_line(tmp_path, monkeypatch, source, message):
    from anpyc.data.user import stream_from_source

    (tmp_path / "streams.py").write_text("def not_a_stream():\n    return [1, 2]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        stream_from_source(source)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("code, source, message", [
    ("def make(:\n    pass\n", "mine.py:make",
     "--stream-from mine.py:make: cannot import it: SyntaxError: invalid syntax (mine.py, line 1)"),
    ("def make(:\n    pass\n", "mine:make", "--stream-from mine:make: cannot import it: SyntaxError: invalid syntax"),
    ("import nosuchdep_h36\n", "mine.py:make",
     "--stream-from mine.py:make: cannot import it: ModuleNotFoundError: No module named 'nosuchdep_h36'"),
    ("import nosuchdep_h36\n", "mine:make", "--stream-from mine:make: cannot import it: ModuleNotFoundError"),
    ("from os import nosuchname\n", "mine.py:make", "--stream-from mine.py:make: cannot import it: ImportError: cannot import"),
    ("def make():\n    raise ValueError('no rows in data.csv')\n", "mine.py:make",
     "--stream-from mine.py:make raised ValueError: no rows in data.csv"),
], ids=["syntax-file", "syntax-module", "missing-import-file", "missing-import-module", "import-error", "raises"])
def test_broken_stream_code_is_one_line_exit_2(tmp_path, monkeypatch, capsys, code, source, message):
    """A stream module that cannot be imported, or a function of it that raises, is the CLI's
    one-line error (exit 2), not a traceback."""
    from anpyc.cli import main

    (tmp_path / "mine.py").write_text(code)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mine", raising=False)
    assert main(["run", "--method", "finetune", "--stream-from", source, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anpyc: error:") and message in err[0], err


def test_a_stream_function_from_a_file_gets_the_seed_when_it_takes_one(tmp_path, monkeypatch):
    from anpyc.data.user import stream_from_source

    (tmp_path / "mine.py").write_text(
        "import torch\nfrom anpyc.data import stream_from_datasets\n\n"
        "def make(seed):\n"
        "    part = (torch.zeros(20, 2), torch.arange(20) % 2)\n"
        "    return stream_from_datasets([part], [part], seed=seed, name=f'seed{seed}')\n")
    monkeypatch.chdir(tmp_path)
    assert stream_from_source("mine.py:make", seed=3).name == "seed3"


class _WithTargets(Dataset):
    """A torchvision-style dataset: a ``targets`` list and, optionally, a ``target_transform``."""

    def __init__(self, target_transform=None) -> None:
        self.targets = [0, 1, 2, 3]
        self.target_transform = target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        y = self.targets[i]
        return torch.full((2,), float(i)), y if self.target_transform is None else self.target_transform(y)


def test_labels_come_from_targets_only_when_no_target_transform_changes_them():
    """``targets`` is read without loading items, but a ``target_transform`` (e.g. labels
    remapped for a split) makes the items' labels the true ones."""
    assert DatasetData(_WithTargets(), 0).labels().tolist() == [0, 1, 2, 3]
    assert DatasetData(_WithTargets(lambda y: y % 2), 0).labels().tolist() == [0, 1, 0, 1]
