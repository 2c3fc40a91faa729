"""A Reasoner stage (SFT) resumes only from checkpoints of its own config and inputs, and a
resumed run keeps the earlier steps' log rows even when its output folder was deleted."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from tests.fixtures.tiny_run import tiny_run
from ume.train import sft as sft_mod
from ume.train.reasoner_common import read_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_run(tmp_path_factory.mktemp("run"), overrides={"sft": {"save_steps": 1}})
    torch.set_num_threads(n)


def _killed_after_training(run, cfg, out, ckpt, monkeypatch):
    def killed(*a, **k):  # the job dies after training, before the model is saved
        raise RuntimeError("killed")

    monkeypatch.setattr(sft_mod.reasoner_common, "save_reasoner", killed)
    with pytest.raises(RuntimeError, match="killed"):
        sft_mod.train_sft(cfg, run.contrastive, run.reasoner, out, ckpt)
    monkeypatch.undo()
    assert (ckpt / "checkpoint-1" / "trainer_state.json").is_file()


def test_sft_resumes_only_checkpoints_of_the_same_config(run, monkeypatch):
    out, ckpt = run.root / "models/reasoner-sft", run.root / "checkpoints/sft"
    cfg = copy.deepcopy(run.cfg)
    cfg.sft.max_steps = 1
    _killed_after_training(run, cfg, out, ckpt, monkeypatch)

    other = copy.deepcopy(cfg)  # another config: its checkpoint is cleared, not resumed
    other.sft.learning_rate = cfg.sft.learning_rate * 2
    sft_mod.train_sft(other, run.contrastive, run.reasoner, out, ckpt)
    man = json.loads((out / "manifest.json").read_text())
    assert man["resumed_from"] is None and man["steps"] == 1

    # the same config (a longer run: max_steps is no part of the fingerprint) resumes, and
    # the log rows of the steps before the checkpoint survive the output folder's deletion
    _killed_after_training(run, cfg, out, ckpt, monkeypatch)
    shutil.rmtree(out)  # what Snakemake does with a failed job's outputs
    cfg.sft.max_steps = 2
    sft_mod.train_sft(cfg, run.contrastive, run.reasoner, out, ckpt)
    man = json.loads((out / "manifest.json").read_text())
    assert man["resumed_from"].endswith("checkpoint-1") and man["steps"] == 2
    rows = read_log(out / "train_log.csv")
    assert [r["step"] for r in rows] == [1.0, 2.0]
    assert all("loss" in r and "wall_s" in r for r in rows)
    assert rows[0]["wall_s"] <= rows[1]["wall_s"]
    assert not ckpt.exists()
