"""The contrastive stage's plumbing without training: config checks, input building and
counting, curves, the errors that name what to fix."""

from __future__ import annotations

import pytest
from PIL import Image

from ume.config import config_from_dict
from ume.errors import ConfigError, DataError
from ume.io import write_parquet
from ume.items import Item, pair_row, pairs_frame
from ume.pair_table import RowPolicy
from ume.tcot.format import render_tcot
from ume.train.contrastive import (
    CURVE_COLUMNS,
    BatchBuilder,
    PairRows,
    _device_settings,
    curve_rows,
    read_contrastive,
    read_weights,
    write_curves,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("train", "match"),
    [
        ({"global_batch_size": 48, "sub_batch_size": 32}, "multiple of sub_batch_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"gradcache_chunk_size": 0}, "gradcache_chunk_size"),
        ({"dataloader_workers": -1}, "dataloader_workers"),
        ({"max_steps": 0}, "max_steps"),
        ({"tcot_input": "everything"}, "tcot_input"),
    ],
)
def test_bad_train_embedder_values_name_the_key(train, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"train_embedder": train})


def test_deepspeed_on_a_cpu_machine_is_a_config_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    cfg = config_from_dict({"train_embedder": {"deepspeed": "workflow/deepspeed/zero2.json"}})
    with pytest.raises(ConfigError, match=r"train_embedder\.deepspeed"):
        _device_settings(cfg)
    cfg = config_from_dict({"models": {"embedder": {"dtype": "bfloat16"}}})
    assert _device_settings(cfg).dtype == "float32"  # fp32 + sdpa on CPU


def _rows(tmp_path, tcot=True):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (200, 20, 20)).save(img)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = []
    for i, path in enumerate([img, broken, img]):
        q = Item("text", text=f"a red square {i}")
        p = Item("image", image=str(path))
        r = pair_row(f"d:{i}", "d", "image", q, p)
        if tcot:
            r |= {
                "qry_tcot": render_tcot("t", "r", "red", {"text_keywords": ["red"]}),
                "pos_tcot": render_tcot("b", "r", "red", {"bbox_2d": [2000, 0, 3000, 10]})
                if i == 2
                else None,
            }
        rows.append(r)
    df = pairs_frame(rows)
    if tcot:
        df = df.assign(
            qry_tcot=[r["qry_tcot"] for r in rows], pos_tcot=[r["pos_tcot"] for r in rows]
        )
    return df


def test_batch_builder_counts_problems_and_chunks_inputs(tmp_path):
    from ume.config import TinyModelConfig
    from ume.models.tiny import make_processor, train_tokenizer

    processor = make_processor("qwen3_vl", train_tokenizer(TinyModelConfig().vocab_size))
    ds = PairRows(_rows(tmp_path))
    ex = ds[1]
    assert ex["pair_id"] == "d:1" and ex["pos"].modality == "image" and ex["pos_tcot"] is None
    out = BatchBuilder(processor, chunk_size=2)([ds[i] for i in range(3)])
    assert [len(g) for g in out["groups"]] == [2, 2]  # 3 inputs per side in chunks of 2
    assert out["groups"][1][0]["input_ids"].shape[0] == 2
    p = out["problems"]
    assert p["inputs"] == 6 and out["pairs"] == 3
    # d:0 pos: no T-CoT; d:1 pos: no T-CoT and an undecodable image; d:2 pos: box outside
    assert p["inputs_with_problems"] == 3
    assert p["inputs_visual"] == 1 and p["inputs_tcot"] >= 2
    assert {e["pair_id"] for e in out["problem_examples"]} == {"d:0", "d:1", "d:2"}


def test_read_contrastive_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="rule split_data"):
        read_contrastive(tmp_path / "nope.parquet", need_tcot=True)
    write_parquet(tmp_path / "raw.parquet", _rows(tmp_path, tcot=False))
    with pytest.raises(DataError, match="tcot_input: raw"):
        read_contrastive(tmp_path / "raw.parquet", need_tcot=True)
    # row 1's image does not open: a bad row, stopped at or skipped by data.on_bad_item
    with pytest.raises(
        DataError, match=r"row 1 \(0-based parquet row.*pos_image.*data\.on_bad_item"
    ):
        read_contrastive(tmp_path / "raw.parquet", need_tcot=False)
    table = read_contrastive(tmp_path / "raw.parquet", need_tcot=False, policy=RowPolicy("skip"))
    assert len(table.df) == 2 and [s["row"] for s in table.skipped] == [1]
    write_parquet(tmp_path / "empty.parquet", pairs_frame([]))
    with pytest.raises(DataError, match="no pairs"):
        read_contrastive(tmp_path / "empty.parquet", need_tcot=False)


def test_read_weights(tmp_path):
    assert read_weights(None) == {}
    (tmp_path / "d.json").write_text('{"a": {"weight": 2.5, "kept": 3}, "b": {"kept": 1}}')
    assert read_weights(tmp_path / "d.json") == {"a": 2.5, "b": 1.0}


def test_curves_keep_the_last_entry_per_step_and_plot(tmp_path):
    hist = [
        {"loss": 3.0, "accuracy": 0.1, "step": 1, "learning_rate": 0.1},
        {"loss": 2.0, "accuracy": 0.2, "step": 2},
        {"loss": 2.5, "accuracy": 0.3, "step": 2},  # a resumed run's replay of step 2
        {"train_loss": 2.5, "step": 2},
    ]
    rows = curve_rows(hist)
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 3.0), (2, 2.5)]
    assert list(rows[0]) == list(CURVE_COLUMNS)
    write_curves(rows, tmp_path / "c.csv", tmp_path / "c.png")
    assert (tmp_path / "c.csv").read_text().splitlines()[0] == ",".join(CURVE_COLUMNS)
    assert (tmp_path / "c.png").stat().st_size > 1000
