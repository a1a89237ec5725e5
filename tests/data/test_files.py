"""Where data sets live (``resolve_data_dir``: the argument, else ``$ANPYC_DATA``, else the
home cache, each with ``~`` expanded), creating a data folder (``make_data_folder``: a
``DataError`` naming it when it cannot be) and a download's failure as a ``DataError``.
No network: a download is read from a ``file://`` URL."""

import pytest

from anpyc.data.files import download, make_data_folder, resolve_data_dir
from anpyc.errors import DataError


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home folder of the test's own (``~`` and ``Path.home()`` both point there)."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("ANPYC_DATA", raising=False)
    return folder


def test_an_empty_argument_or_environment_counts_as_unset(home, monkeypatch):
    # `--data-dir ""` or `export ANPYC_DATA=` must not resolve to the current folder
    monkeypatch.setenv("ANPYC_DATA", "")
    assert resolve_data_dir("") == home / ".cache" / "anpyc"


def test_a_tilde_is_expanded_in_the_argument_and_in_the_environment(home, monkeypatch):
    monkeypatch.setenv("ANPYC_DATA", "~/from-env")
    assert resolve_data_dir() == home / "from-env"
    assert resolve_data_dir("~/data") == home / "data"  # the argument still wins


def test_make_data_folder_creates_the_parents_and_accepts_an_existing_folder(tmp_path):
    folder = tmp_path / "a" / "b" / "mnist"
    assert make_data_folder(folder) == folder and folder.is_dir()
    (folder / "kept").write_text("x")
    assert make_data_folder(folder) == folder and (folder / "kept").read_text() == "x"  # left as it was


def test_make_data_folder_through_a_file_is_a_data_error_naming_the_folder(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    folder = tmp_path / "a-file" / "mnist"
    with pytest.raises(DataError, match=f"cannot create the data folder {folder}: ") as err:
        make_data_folder(folder)
    assert err.value.__cause__ is None and "\n" not in str(err.value)  # one line, no OSError chained


def test_download_reads_the_bytes_of_a_url(tmp_path):
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01anpyc")
    assert download((tmp_path / "blob.bin").as_uri()) == b"\x00\x01anpyc"


@pytest.mark.parametrize("url", ["not a url", "file:///no/such/anpyc-file.gz"])
def test_a_failed_download_is_a_data_error_naming_the_url(url):
    with pytest.raises(DataError, match=f"download failed: {url}: "):
        download(url)

