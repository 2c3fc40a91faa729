"""Contrastive training: resume after an interruption, stale checkpoints, bad inputs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.contrastive_pairs import small_pairs
from ume.config import load_config
from ume.errors import DataError
from ume.launch.resumable import last_checkpoint
from ume.models.stage import build_base_models
from ume.train.contrastive import TrainingInterrupted, train_embedder

pytestmark = pytest.mark.integration

SMALL = {
    "train_embedder": {
        "max_steps": 6,
        "save_steps": 2,
        "global_batch_size": 8,
        "sub_batch_size": 4,
        "gradcache_chunk_size": 4,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},  # dropout: resume must replay its masks
    },
    "split": {"exclude_from_contrastive": []},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, repo):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("resume")
        cfg = load_config(repo / "config" / "config.yaml", overrides=SMALL)
        build_base_models(cfg, root / "models", ("embedder",))
        yield {
            "root": root,
            "cfg": cfg,
            "backbone": root / "models" / "embedder" / "backbone.json",
            "pairs": small_pairs(root / "data"),
        }
    finally:
        torch.set_num_threads(threads)


def _weights(out):
    return load_file(str(out / "model" / "model.safetensors"))


def _curve(out):
    return {int(r["step"]): float(r["loss"]) for r in csv.DictReader((out / "curves.csv").open())}


def test_resume_after_an_interruption_gives_the_uninterrupted_result(setup):
    s = setup
    full = s["root"] / "full"
    train_embedder(s["cfg"], s["pairs"], s["backbone"], full, s["root"] / "ck_full")
    out, ck = s["root"] / "cut", s["root"] / "ck_cut"
    with pytest.raises(TrainingInterrupted):
        train_embedder(s["cfg"], s["pairs"], s["backbone"], out, ck, interrupt_after=4)
    assert last_checkpoint(ck).endswith("checkpoint-4")
    assert not (out / "model").exists()
    train_embedder(s["cfg"], s["pairs"], s["backbone"], out, ck)
    m = json.loads((out / "manifest.json").read_text())
    assert m["resumed_from"] == "checkpoint-4" and m["steps"] == 6
    assert _curve(out) == pytest.approx(_curve(full), abs=1e-6)  # steps 1-4 from the checkpoint
    a, b = _weights(full), _weights(out)
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"\n[train_embedder] resumed vs uninterrupted: max |weight difference| = {worst:.2e}")
    assert worst < 1e-5


def _cfg(repo, **train):
    over = SMALL | {"train_embedder": SMALL["train_embedder"] | train}
    return load_config(repo / "config" / "config.yaml", overrides=over)


def test_checkpoints_of_another_config_are_not_resumed(setup, repo):
    s = setup
    ck = s["root"] / "ck_stale"
    with pytest.raises(TrainingInterrupted):
        train_embedder(s["cfg"], s["pairs"], s["backbone"], s["root"] / "a", ck, interrupt_after=2)
    assert last_checkpoint(ck)
    train_embedder(_cfg(repo, learning_rate=0.003), s["pairs"], s["backbone"], s["root"] / "b", ck)
    m = json.loads((s["root"] / "b" / "manifest.json").read_text())
    assert m["resumed_from"] is None and m["steps"] == 6


def test_bad_inputs_are_counted_and_never_stop_training(setup, repo):
    """Imperfect T-CoTs (boxes outside the image, key frames past the end, unreadable JSON)
    are counted by the input builder; rows whose media are gone or do not decode are bad rows,
    checked on entry: they stop the stage, or under data.on_bad_item: skip are left out."""
    s = setup
    pairs = small_pairs(s["root"] / "bad", bad=True)
    cfg = _cfg(repo, max_steps=3, global_batch_size=24, sub_batch_size=12)
    out = s["root"] / "bad_out"
    with pytest.raises(DataError, match=r"row 3 \(0-based parquet row, pair_id 'vid:1'\)"):
        train_embedder(cfg, pairs, s["backbone"], out, s["root"] / "ck_bad")
    assert not out.exists()
    # 11 good pairs per dataset are left: batches of 22 in single-dataset sub-batches of 11
    train = SMALL["train_embedder"] | {
        "max_steps": 3,
        "global_batch_size": 22,
        "sub_batch_size": 11,
    }
    over = SMALL | {"train_embedder": train, "data": {"on_bad_item": "skip"}}
    cfg = load_config(repo / "config" / "config.yaml", overrides=over)
    train_embedder(cfg, pairs, s["backbone"], out, s["root"] / "ck_bad")
    m = json.loads((out / "manifest.json").read_text())
    assert [(r["pair_id"], r["column"]) for r in m["bad_rows"]["rows"]] == [
        ("vid:1", "qry_frames"),
        ("img:2", "qry_image"),
    ]
    p = m["input_problems"]
    assert p["inputs"] == 3 * 2 * 22
    assert p["inputs_tcot"] > 0  # imperfect T-CoTs reach training, counted
    assert p["inputs_visual"] == 0  # the rows whose media are bad never do
    text = json.dumps(m["problem_examples"])
    for pid in ("img:0", "vid:0", "vid:2"):
        assert pid in text, pid


def test_an_excluded_dataset_in_the_contrastive_set_stops_the_stage(setup, repo):
    s = setup
    over = SMALL | {"split": {"exclude_from_contrastive": ["vid"]}}
    cfg = load_config(repo / "config" / "config.yaml", overrides=over)
    with pytest.raises(DataError, match="exclude_from_contrastive"):
        train_embedder(cfg, s["pairs"], s["backbone"], s["root"] / "x", s["root"] / "ck_x")
