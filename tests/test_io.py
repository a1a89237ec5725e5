"""Writes that fail (disk full, I/O error) leave the previous file and every earlier result
intact, leave no temporary files behind, and say what happened in one line."""

import errno
import os

import numpy as np
import pytest

from anpyc import io as aio
from anpyc import rundir
from anpyc.callbacks import checkpoint as ck
from anpyc.cli import main
from anpyc.config import RunConfig
from anpyc.errors import OutputError
from anpyc.io import atomic_write_text, write_json
from anpyc.runner import run


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert path.read_text().strip().endswith("}") and '"x": 2' in path.read_text()
    assert os.stat(path).st_mode & 0o044 == 0o044 & ~os.umask(os.umask(0))
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.txt"
    atomic_write_text(path, "old")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["m.txt"]


@pytest.mark.parametrize("fails", ["fsync", "replace"])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, fails):
    target = tmp_path / "metrics.json"
    aio.write_json(target, {"avg_acc": 0.5})
    before = target.read_bytes()
    monkeypatch.setattr(aio.os, fails, _enospc)
    with pytest.raises(OutputError, match="No space left on device; the previous file is intact"):
        aio.write_json(target, {"avg_acc": 0.9})
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temp file left


def test_failed_append_says_which_file(tmp_path):
    (tmp_path / "log.jsonl").mkdir()  # appending to a directory fails like a vanished mount
    with pytest.raises(OutputError, match="cannot append to .*log.jsonl"):
        aio.append_jsonl(tmp_path / "log.jsonl", {"task": 0})


BLOBS = ["--benchmark", "blobs", "--tasks", "3", "--subsample", "200", "--hidden", "16", "--epochs", "2",
         "--checkpoint-every", "1", "--threads", "1", "--quiet"]


def test_disk_full_mid_run_keeps_earlier_results_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("ckpt-000003.pt"):  # task 1, epoch 1: the disk fills up
            _enospc()
        return real_replace(src, dst, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(aio.os, "replace", replace)
        assert main(["run", "--method", "finetune", *BLOBS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ckpt-000003.pt: No space left on device; the previous file is intact" in err[0]
    # what was written before the failure is complete and valid
    assert [p.name for p in ck.list_checkpoints(out)] == ["ckpt-000002.pt", "ckpt-000001.pt"]
    assert not any(p.name.endswith(".tmp") for p in out.rglob("*"))
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    assert RunConfig.from_file(out / "config.yaml").stream.tasks == 3
    assert not (out / "metrics.json").exists()
    # space freed: the run continues and ends as if nothing happened
    assert main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    full = run(RunConfig.from_file(out / "config.yaml"), tmp_path / "full", quiet=True)
    np.testing.assert_array_equal(rundir.matrix(rundir.read_metrics(out)["acc_matrix"]), full.acc_matrix)


def test_json_writes_tensors_arrays_paths_and_sets_as_plain_values(tmp_path):
    import json

    import torch

    obj = {"t": torch.tensor([1.5, 2.0]), "a": np.arange(3), "f": np.float32(0.25), "i": np.int64(7),
           "p": tmp_path.parent / "x", "s": {3}, "tu": (1, 2)}
    got = json.loads(write_json(tmp_path / "m.json", obj).read_text())
    assert got == {"t": [1.5, 2.0], "a": [0, 1, 2], "f": 0.25, "i": 7, "p": str(tmp_path.parent / "x"), "s": [3], "tu": [1, 2]}


def test_an_unserialisable_value_leaves_the_previous_file_and_no_temp_file(tmp_path):
    path = write_json(tmp_path / "m.json", {"x": 1})
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        write_json(path, {"x": object()})
    assert path.read_text() == '{\n  "x": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_a_folder_that_cannot_be_made_is_one_output_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*file/sub/m\.json: Not a directory"):
        write_json(tmp_path / "file" / "sub" / "m.json", {"x": 1})
