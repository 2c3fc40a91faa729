"""The tiny-backbone pretraining stage: trains the vision tower too, shares one run per family,
passes real backbones and unlisted roles through, and its loss covers the answer only."""

from __future__ import annotations

import json

import pytest
import torch

from ume.config import config_from_dict
from ume.models.stage import build_base_models, read_backbone
from ume.train.pretrain import LABEL_IGNORE, collate, encode_example, pretrain_models

pytestmark = pytest.mark.integration

PHASES = [{"steps": 2, "tasks": {"crop": 1.0, "caption": 1.0, "video": 1.0}}]


def _cfg(tmp_path, **pretrain):
    return config_from_dict(
        {
            "results_dir": str(tmp_path),
            "pretrain": {"phases": PHASES, "batch_size": 2, "probe_examples": 1, **pretrain},
        }
    )


def test_the_loss_is_on_the_answer_only():
    from ume.data.pretraining import example
    from ume.models.tiny import make_tiny

    _, processor = make_tiny("qwen3_vl")
    for task in ("caption", "video"):
        ex = example(task, 0, 1, image_size=64, doc_size=64, num_frames=4)
        enc = encode_example(ex, processor)
        kept = enc["labels"][enc["labels"] != LABEL_IGNORE]
        assert processor.tokenizer.decode(kept) == ex.target + "<|im_end|>"
        assert (
            int(
                (
                    enc["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
                ).sum()
            )
            > 0
        )
    rows = [
        encode_example(example("crop", 0, i, image_size=64, doc_size=64, num_frames=4), processor)
        for i in range(3)
    ]
    b = collate(rows, processor.tokenizer.pad_token_id)
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape
    assert b["image_grid_thw"].shape[0] == 3
    assert int(b["attention_mask"].sum()) == sum(len(r["input_ids"]) for r in rows)


def test_stage_pretrains_tiny_roles_and_passes_the_others_through(tmp_path):
    cfg = _cfg(tmp_path, roles=["embedder", "reasoner"])
    init, out = tmp_path / "init", tmp_path / "base"
    build_base_models(cfg, init, ("embedder", "reasoner", "annotator"))
    before = {n: p.clone() for n, p in _visual(init / "embedder")}
    records = pretrain_models(cfg, init, out)
    assert set(records) == {"embedder", "reasoner", "annotator"}
    emb, rea, ann = (
        read_backbone(out / r / "backbone.json") for r in ("embedder", "reasoner", "annotator")
    )
    # one Qwen3-VL run shared by the two roles; the annotator (not listed) keeps its weights
    assert emb["pretrained"] and rea["pretrained"] and emb["path"] == rea["path"]
    assert not ann["pretrained"] and "pretrain.roles" in ann["pretrain"]
    assert ann["path"] == read_backbone(init / "annotator" / "backbone.json")["path"]
    after = dict(_visual(out / "embedder"))
    assert any(not torch.equal(before[n], after[n]) for n in before), "vision tower not trained"
    man = json.loads((out / "manifest.json").read_text())
    run = man["pretraining"]["qwen3_vl"]
    assert run["steps"] == 2 and run["roles"] == ["embedder", "reasoner"]
    assert set(run["probe"]) == {"caption", "crop", "video"}
    assert "random_box_iou" not in run["probe"]["crop"]


def test_disabled_or_real_backbones_pass_through(tmp_path):
    cfg = _cfg(tmp_path, enabled=False)
    init, out = tmp_path / "init", tmp_path / "base"
    build_base_models(cfg, init, ("embedder",))
    rec = pretrain_models(cfg, init, out)["embedder"]
    assert not rec["pretrained"] and "pretrain.enabled is false" in rec["pretrain"]
    # a real backbone (source: path) is recorded as it is, whatever pretrain says
    real = tmp_path / "real"
    real_cfg = config_from_dict(
        {
            "models": {
                "embedder": {
                    "source": "path",
                    "path": read_backbone(init / "embedder" / "backbone.json")["path"],
                }
            }
        }
    )
    build_base_models(real_cfg, real, ("embedder",))
    rec = pretrain_models(_cfg(tmp_path), real, tmp_path / "real_base")["embedder"]
    assert not rec["pretrained"] and "real backbone (source: path)" in rec["pretrain"]


def _visual(role_dir):
    from ume.models.backbone import load_backbone

    model, _ = load_backbone(read_backbone(role_dir / "backbone.json")["path"])
    return [(n, p.detach()) for n, p in model.model.visual.named_parameters()]
