"""A folder that cannot take a write (full, read-only, not creatable) is a StorageError naming
the folder and the config key that moves it, and leaves nothing half-written. Faults are real:
the tests run as root, so chmod would not stop a write; /sys and /proc refuse even root, and a
temporary file linked to /dev/full gets ENOSPC from the kernel."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from ume.errors import StorageError
from ume.io import atomic_path, folder_key, make_folder, name_folder, write_json, write_parquet

pytestmark = pytest.mark.unit


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Every temporary file under ``tmp_path/full`` is a link to /dev/full (ENOSPC on write)."""
    real = tempfile.mkstemp
    full = tmp_path / "full"

    def mkstemp(*a, dir=None, **k):
        fd, name = real(*a, dir=dir, **k)
        if Path(name).is_relative_to(full):
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return full


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ("/sys/ume-test/results/run/data/x.json", "is not writable"),  # read-only to root too
        ("/proc/ume-test/results/x.json", "cannot be created"),
    ],
)
def test_an_unwritable_results_folder_names_itself_and_results_dir(where, why):
    with pytest.raises(StorageError) as e:
        write_json(where, {"a": 1})
    msg = str(e.value)
    assert f"cannot write {where}" in msg and why in msg and "set results_dir" in msg
    assert "Nothing was left half-written" in msg
    assert not Path(where).parent.exists()


def test_a_full_disk_leaves_neither_target_nor_temporary_and_keeps_the_old_file(full_disk):
    target = full_disk / "cache/t.parquet"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"the previous, complete version")
    name_folder(full_disk / "cache", "eval.cache_dir")
    with pytest.raises(StorageError) as e:
        write_parquet(target, pd.DataFrame({"a": range(1000)}))
    msg = str(e.value)
    assert f"the folder {target.parent} is on a full disk" in msg and "set eval.cache_dir" in msg
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.parquet"]
    assert target.read_bytes() == b"the previous, complete version"


def test_a_full_disk_inside_a_folder_write(full_disk):
    folder = full_disk / "model"
    with (
        pytest.raises(StorageError, match="is on a full disk"),
        atomic_path(folder, is_dir=True) as tmp,
    ):
        os.symlink("/dev/full", tmp / "weights.bin")
        (tmp / "weights.bin").write_bytes(b"x" * 10)
    assert list(full_disk.iterdir()) == []


def test_an_error_about_another_file_is_not_this_folders(tmp_path):
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out.json"):
        raise PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.bin")
    with pytest.raises(ValueError), atomic_path(tmp_path / "out.json"):
        raise ValueError("not a storage problem")
    assert list(tmp_path.iterdir()) == []


def test_the_innermost_named_folder_gives_the_key(tmp_path):
    name_folder(tmp_path / "res", "results_dir")
    name_folder(tmp_path / "res/cache", "eval.cache_dir")
    assert folder_key(tmp_path / "res/cache/emb/x") == "eval.cache_dir"
    assert folder_key(tmp_path / "res/run/data") == "results_dir"
    assert folder_key("/somewhere/else") == "results_dir"


def test_make_folder():
    with pytest.raises(StorageError, match=r"/sys/ume-test/media .*set results_dir"):
        make_folder("/sys/ume-test/media")
