"""The local-MLLM annotator backend on a tiny random Qwen2-VL: real generate, real prompts."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ume.annotate.backends import local_annotator
from ume.annotate.stage import annotate_pairs, filter_pairs
from ume.config import TinyModelConfig, config_from_dict
from ume.items import Item, pair_row, pairs_frame
from ume.models.tiny import build_tiny

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny("qwen2_vl", TinyModelConfig(), tmp_path_factory.mktemp("m") / "annotator")


def test_hf_backend_writes_one_tcot_per_item_and_the_stage_records_problems(tiny_dir, tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (10, 200, 10)).save(img)
    frames = []
    for i in range(3):
        frames.append(str(tmp_path / f"f{i}.png"))
        Image.new("RGB", (56, 56), (i * 60, 0, 0)).save(frames[-1])
    rows = [
        pair_row(
            "d:0", "d", "image", Item("text", text="a green square"), Item("image", image=str(img))
        ),
        pair_row(
            "d:1",
            "d",
            "video",
            Item("text", text="it turns red"),
            Item("video", frames=tuple(frames)),
        ),
    ]
    pairs = tmp_path / "pairs.parquet"
    pairs_frame(rows).to_parquet(pairs)
    cfg = config_from_dict(
        {"annotate": {"backend": "hf", "hf": {"max_new_tokens": 8, "batch_size": 2}}}
    )
    ann = local_annotator(tiny_dir, batch_size=2, max_new_tokens=8, temperature=0.0)
    df = annotate_pairs(cfg, pairs, tmp_path / "a/tcot.parquet", annotator=ann)
    assert len(df) == 2 and df["qry_tcot"].map(type).eq(str).all()
    man = json.loads((tmp_path / "a/manifest.json").read_text())
    assert man["backend"] == "hf"
    # a random model writes no valid T-CoT: every one is recorded as having problems
    assert man["tcots_with_problems"] == {"qry": 2, "pos": 2}
    # greedy decoding is deterministic
    assert ann.tcot([Item("text", text="a green square")], ["query"]) == [df["qry_tcot"][0]]
    # the judge cannot read a random model's answer: unreadable verdicts keep the pair
    out = filter_pairs(cfg, tmp_path / "a/tcot.parquet", tmp_path / "f/f.parquet", annotator=ann)
    man = json.loads((tmp_path / "f/manifest.json").read_text())
    assert man["judge"] == "hf"
    assert man["unreadable_verdicts"] == 2 and man["kept"] == 2 and out["relevant"].all()
