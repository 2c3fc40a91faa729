"""The training sources read what a batch of the cap walk needs: its row groups, its columns."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ume.data.sources import _ParquetTable

pytestmark = pytest.mark.unit


def test_rows_are_read_by_row_group_with_only_the_needed_columns(tmp_path):
    files = []
    for s in range(2):
        n = 100
        table = pa.table(
            {
                "query": [f"q{s}-{i}" for i in range(n)],
                "image": [{"bytes": bytes([i % 256]) * 1000, "path": None} for i in range(n)],
                "unused": [b"x" * 5000] * n,
            }
        )
        files.append(tmp_path / f"train-{s}.parquet")
        pq.write_table(table, files[-1], row_group_size=10)
    t = _ParquetTable(files, ("query", "image"), required=("query", "image"))
    assert t.total == 200
    got = list(t.rows([3, 7, 150]))
    assert [(i, r, rec["query"]) for i, _, r, rec in got] == [
        (3, 3, "q0-3"), (7, 7, "q0-7"), (150, 50, "q1-50")
    ]  # fmt: skip
    assert set(got[0][3]) == {"query", "image"}  # the unused column is not read
    assert t.row_groups_read == 2  # rows 3 and 7 share a row group; 150 is in another shard
    list(t.rows([42]))  # a refill batch reads its own row group only
    assert t.row_groups_read == 3
