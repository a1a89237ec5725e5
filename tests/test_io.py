import os

import pytest

from anpyc.errors import OutputError
from anpyc.io import atomic_write_text, write_json


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
