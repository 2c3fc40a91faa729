"""Contrastive training on the embedded default: the stage's outputs, and that it learns.

Trains the tiny Embedder with config/config.yaml's ``train_embedder`` section on the embedded
default's synthetic pairs (oracle T-CoTs, the few-class set excluded as the split does), then
ranks held-out synthetic pairs (another generator seed) with the untrained and the trained
model. Retrieval with raw input and with evidence off is measured and printed (``-s``), not
asserted: the proper ablation trains one model per input mode (benchmarks/contrastive_ablation.py).
"""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from tests.fixtures.retrieval_probe import annotated_synthetic_pairs, pair_retrieval
from tests.fixtures.tiny_run import SMALL_TINY
from ume.config import load_config
from ume.io import write_parquet
from ume.models.embedder import Embedder
from ume.models.stage import build_base_models, read_backbone
from ume.train.contrastive import CURVE_COLUMNS, train_embedder

pytestmark = pytest.mark.integration


# The small random tiny models and the Embedder settings of before the miniature (its
# pretrained h128 models train 100 steps: minutes); the stage's mechanics are under test.
SMALL_WORLD = {
    "models": {"tiny": SMALL_TINY},
    "data": {"synthetic": {"image_size": 64}},
    "train_embedder": {
        "max_steps": 30,
        "learning_rate": 1e-3,
        "temperature": 0.02,
        "warmup_steps": 2,
        "gradcache_chunk_size": 8,
        "gradcache": True,
    },
}


@pytest.fixture(scope="module")
def run(tmp_path_factory, repo):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the rule gets (OMP_NUM_THREADS=1); far faster on 2 busy cores
    try:
        root = tmp_path_factory.mktemp("contrastive")
        cfg = load_config(repo / "config" / "config.yaml", overrides=SMALL_WORLD)
        write_parquet(root / "contrastive.parquet", annotated_synthetic_pairs(cfg, root / "media"))
        build_base_models(cfg, root / "models", ("embedder",))
        backbone = root / "models" / "embedder" / "backbone.json"
        t0 = time.time()
        train_embedder(cfg, root / "contrastive.parquet", backbone, root / "out", root / "ckpt")
        wall = time.time() - t0
        heldout = annotated_synthetic_pairs(
            cfg,
            root / "heldout",
            cfg.data.synthetic.model_copy(update={"seed": 7, "train_pairs_per_dataset": 16}),
        )
        scores = {
            ("untrained", "full"): pair_retrieval(
                Embedder.from_pretrained(read_backbone(backbone)["path"]), heldout, mode="full"
            )
        }
        trained = Embedder.from_pretrained(root / "out" / "model")
        for mode in ("full", "no_evidence", "raw"):  # one model, three inputs (reported only)
            scores["trained", mode] = pair_retrieval(trained, heldout, mode=mode)
        yield {"root": root, "cfg": cfg, "wall": wall, "scores": scores}
    finally:
        torch.set_num_threads(threads)


def test_the_stage_writes_model_curves_and_manifest(run):
    out, cfg = run["root"] / "out", run["cfg"]
    steps = cfg.train_embedder.max_steps
    assert (out / "model" / "config.json").is_file()
    assert read_backbone(out / "backbone.json")["path"] == str((out / "model").resolve())
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    assert list(rows[0]) == list(CURVE_COLUMNS)
    assert all(int(r["pairs"]) == cfg.train_embedder.global_batch_size for r in rows)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"] == steps and m["resumed_from"] is None
    assert m["input_problems"]["inputs"] == 2 * steps * cfg.train_embedder.global_batch_size
    assert {"inputs_with_problems", "inputs_visual", "inputs_tcot", "inputs_evidence"} <= set(
        m["input_problems"]
    )
    assert sum(d["probability"] for d in m["datasets"].values()) == pytest.approx(1.0)
    assert not set(m["datasets"]) & set(cfg.split.exclude_from_contrastive)
    assert not (run["root"] / "ckpt").exists()  # a finished run drops its checkpoints
    print(
        f"\n[train_embedder] embedded default: {steps} steps, stage wall time {run['wall']:.1f} s"
    )


def test_training_lowers_the_loss(run):
    rows = list(csv.DictReader((run["root"] / "out" / "curves.csv").open()))
    loss = [float(r["loss"]) for r in rows]
    acc = [float(r["accuracy"]) for r in rows]
    assert sum(loss[-10:]) / 10 < sum(loss[:5]) / 5 - 0.3
    assert sum(acc[-10:]) / 10 > sum(acc[:5]) / 5


def test_retrieval_on_held_out_pairs_is_far_above_chance_and_the_untrained_model(run):
    s = run["scores"]
    full, base = s["trained", "full"], s["untrained", "full"]
    print(f"\n[train_embedder] held-out pair retrieval, top-1 (chance {full['chance']:.3f}):")
    for (name, mode), r in sorted(s.items()):
        print(f"  {name:9s} {mode:12s} {r['accuracy']:.3f}")
    assert full["accuracy"] >= 3 * full["chance"]
    assert full["accuracy"] >= base["accuracy"] + 0.1
