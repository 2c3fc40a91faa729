"""Atomic writes: an interrupted write leaves nothing; finished artifacts get umask modes."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from ume.io import Manifest, atomic_path, write_json, write_parquet

pytestmark = pytest.mark.unit


def test_a_write_that_fails_half_way_leaves_neither_target_nor_temporary(tmp_path, monkeypatch):
    target = tmp_path / "out.parquet"

    def half_then_fail(self, path, *a, **k):
        with open(path, "wb") as f:
            f.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # a killed stage

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        write_parquet(target, pd.DataFrame({"a": [1]}))
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_replaced_only_when_complete(tmp_path):
    folder = tmp_path / "model"
    with atomic_path(folder, is_dir=True) as tmp:
        (tmp / "w.bin").write_bytes(b"1")
    with pytest.raises(RuntimeError), atomic_path(folder, is_dir=True) as tmp:
        (tmp / "w.bin").write_bytes(b"2")
        raise RuntimeError("crash")
    assert (folder / "w.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_artifacts_get_the_modes_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        f = write_json(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "d", is_dir=True) as tmp:
            (tmp / "inner.txt").write_text("x")
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d/inner.txt").stat().st_mode & 0o777 == 0o644


def test_manifest_records_provenance(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("data")
    m = Manifest("stage", {"seed": 0}, [src])
    m.record(kept=3)
    data = __import__("json").loads(m.write(tmp_path / "out").read_text())
    assert data["stage"] == "stage" and data["kept"] == 3 and data["config"] == {"seed": 0}
    assert data["inputs"][str(src)] == __import__("hashlib").sha256(b"data").hexdigest()
    assert data["start"] <= data["end"] and "torch" in data["versions"]
