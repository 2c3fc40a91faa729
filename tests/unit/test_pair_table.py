"""THE pair table on disk: movable media paths, and the one row check every stage runs."""

from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from PIL import Image

from ume.errors import DataError
from ume.items import Item, pair_row, pairs_frame
from ume.pair_table import (
    SKIP_FIELDS,
    RowPolicy,
    check_pair_rows,
    read_pair_table,
    write_pair_table,
)
from ume.tcot.format import parse_tcot, render_tcot

pytestmark = pytest.mark.unit


def _table(run):
    """Three good pairs whose media lie in ``run/data/media`` (absolute paths in memory)."""
    media = run / "data/media"
    media.mkdir(parents=True)
    img = media / "a.png"
    Image.new("RGB", (8, 8), (200, 20, 20)).save(img)
    frames = []
    for i in range(2):
        frames.append(media / f"f{i}.jpg")
        Image.new("RGB", (8, 8)).save(frames[-1])
    rows = [
        pair_row("d:0", "d", "image", Item("text", text="red"), Item("image", image=str(img))),
        pair_row(
            "d:1",
            "d",
            "video",
            Item("text", text="x"),
            Item("video", frames=tuple(map(str, frames))),
        ),
        pair_row("d:2", "d", "image", Item("image", image=str(img)), Item("text", text="red")),
    ]
    return pairs_frame(rows)


def test_media_under_the_run_folder_are_stored_relative_and_read_back_absolute(tmp_path):
    df = _table(tmp_path / "run")
    elsewhere = tmp_path / "source.png"  # a real source's file, outside the run folder
    Image.new("RGB", (4, 4)).save(elsewhere)
    df.at[2, "qry_image"] = str(elsewhere)
    write_pair_table(tmp_path / "run/data/pairs.parquet", df)
    stored = pd.read_parquet(tmp_path / "run/data/pairs.parquet")
    assert stored.loc[0, "pos_image"] == "data/media/a.png"
    assert list(stored.loc[1, "pos_frames"]) == ["data/media/f0.jpg", "data/media/f1.jpg"]
    assert stored.loc[2, "qry_image"] == str(elsewhere)  # outside: absolute, as configured
    shutil.move(tmp_path / "run", tmp_path / "moved")
    back = read_pair_table(tmp_path / "moved/data/pairs.parquet", policy=RowPolicy()).df
    assert back.loc[0, "pos_image"] == str(tmp_path / "moved/data/media/a.png")
    assert back.loc[2, "qry_image"] == str(elsewhere)
    assert all(os.path.isfile(f) for f in back.loc[1, "pos_frames"])


BAD = [
    ("pos_image", None, "is null"),
    ("qry_text", float("nan"), "is null"),
    ("pos_image", "", "is empty but pos_modality is 'image'"),
    ("pos_modality", "audio", "'audio' is not one of"),
    ("qry_gt", "not json", "is not a JSON object"),
    ("pair_id", "d:1", "repeats row 1"),
    ("dataset", None, "is null"),
]


@pytest.mark.parametrize(("column", "value", "words"), BAD, ids=[b[0] + "-" + b[2] for b in BAD])
def test_a_bad_row_stops_naming_file_row_column_and_key_or_is_skipped(
    tmp_path, column, value, words
):
    df = _table(tmp_path / "run").astype(object)
    row = 2 if column == "pair_id" else 0  # a duplicate: row 2 takes row 1's id
    df.at[row, column] = value
    with pytest.raises(DataError) as e:
        check_pair_rows(df, "t.parquet", policy=RowPolicy("error", "data.on_bad_item"))
    msg = str(e.value)
    assert f"t.parquet: row {row} (0-based parquet row" in msg and f"column {column}: " in msg
    assert words in msg and "set data.on_bad_item: skip" in msg
    table = check_pair_rows(df, "t.parquet", policy=RowPolicy("skip"))
    assert len(table.df) == 2 and table.rows_read == 3
    (rec,) = table.skipped
    assert tuple(rec) == SKIP_FIELDS and (rec["row"], rec["column"]) == (row, column)
    assert table.manifest()["bad_rows"]["skipped"] == 1


def test_missing_and_undecodable_media(tmp_path):
    df = _table(tmp_path / "run")
    (tmp_path / "run/data/media/f1.jpg").write_bytes(b"not a jpeg")
    # a stage that never opens the files only needs them to exist
    assert not check_pair_rows(df, "t", policy=RowPolicy("skip"), media="exists").skipped
    table = check_pair_rows(df, "t", policy=RowPolicy("skip"), media="open")
    assert [(s["row"], s["column"]) for s in table.skipped] == [(1, "pos_frames")]
    assert "does not open as an image" in table.skipped[0]["reason"]
    (tmp_path / "run/data/media/a.png").unlink()
    table = check_pair_rows(df, "t", policy=RowPolicy("skip"), media="exists")
    assert [(s["row"], s["column"]) for s in table.skipped] == [(0, "pos_image"), (2, "qry_image")]
    assert "not found" in table.skipped[0]["reason"]


def test_tcot_columns_null_is_bad_imperfect_is_counted(tmp_path):
    good = render_tcot("a", "b", "c", {"text_keywords": ["red"]})
    df = _table(tmp_path / "run").assign(
        qry_tcot=[good, "no tags at all", None], pos_tcot=[good, good, good]
    )
    with pytest.raises(DataError, match=r"row 2 .*column qry_tcot: is null, not a T-CoT string"):
        check_pair_rows(df, "t", policy=RowPolicy(), needs=("qry_tcot", "pos_tcot"))
    table = check_pair_rows(
        df, "t", policy=RowPolicy("skip"), needs=("qry_tcot", "pos_tcot"), tcot_parser=parse_tcot
    )
    assert len(table.df) == 2 and table.tcot_problems == {"qry": 1, "pos": 0}
    df = df.drop(columns=["pos_tcot"])
    with pytest.raises(DataError, match=r"missing columns \['pos_tcot'\]"):
        check_pair_rows(df, "t", policy=RowPolicy(), needs=("qry_tcot", "pos_tcot"))


def test_relevant_is_checked_wherever_present(tmp_path):
    df = _table(tmp_path / "run").assign(relevant=[True, None, False])
    table = check_pair_rows(df, "t", policy=RowPolicy("skip"))
    assert [(s["row"], s["column"]) for s in table.skipped] == [(1, "relevant")]


def test_unreadable_or_foreign_tables_name_the_rule_to_rerun(tmp_path):
    with pytest.raises(DataError, match=r"contrastive.parquet: not found; run rule split_data"):
        read_pair_table(tmp_path / "split/contrastive.parquet", policy=RowPolicy())
    bad = tmp_path / "tcot.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"cannot read parquet .*rerun rule annotate_tcot"):
        read_pair_table(bad, policy=RowPolicy())
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "pairs.parquet")
    with pytest.raises(DataError, match=r"missing columns .*rerun rule prepare_pairs"):
        read_pair_table(tmp_path / "pairs.parquet", policy=RowPolicy())


def test_the_policy_names_its_key():
    with pytest.raises(DataError, match=r"data.on_bad_item: 'ignore' is not one of"):
        RowPolicy("ignore")
