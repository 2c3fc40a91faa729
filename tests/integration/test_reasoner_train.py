"""SFT then EG-RL end to end through the stage entry points, on tiny random models: LoRA
weights change, the reward log is complete, the held-out outcome is recorded, the saved
Reasoner loads and generates."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from tests.fixtures.tiny_run import tiny_run
from ume.models.backbone import chat_generate, load_backbone
from ume.train.egrl import train_egrl
from ume.train.reasoner_common import model_folder, read_log
from ume.train.sft import train_sft

pytestmark = pytest.mark.integration

REWARD_COLUMNS = [
    "reward",
    "reward_std",
    *(f"rewards/{n}/{s}" for n in ("format", "process", "outcome") for s in ("mean", "std")),
    "completions/mean_length",
    "kl",
    "entropy",
    "step_time",
    "outcome/acc",
    "outcome/margin",
    "process/hit_rate",
    "process/invalid_rate",
]


def _weights(folder):
    return load_file(str(model_folder(folder) / "model.safetensors"))


def _changed(before, after):
    lm = [k for k in before if "language_model" in k and "proj" in k]
    vision = [k for k in before if "visual" in k]
    assert lm and vision
    return (
        sum(not torch.equal(before[k], after[k]) for k in lm),
        sum(not torch.equal(before[k], after[k]) for k in vision),
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """As under Snakemake (OMP_NUM_THREADS = the rule's threads, 1): tiny models run several
    times faster on one thread than on two contended ones."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # The release's rewards: its fraction-of-top-k Acc gives graded outcomes, so groups have
    # reward variance (GRPO's only signal) even with random models; the paper's all-or-nothing
    # Acc often gives none in two steps (its formulas are covered by tests/unit/test_rewards).
    return tiny_run(tmp_path_factory.mktemp("run"), layers=("config/ablations/release.yaml",))


def test_sft_then_egrl_train_lora_and_log_every_reward(run):
    sft_out = run.root / "models/reasoner-sft"
    rec = train_sft(run.cfg, run.contrastive, run.reasoner, sft_out)
    lm_changed, vision_changed = _changed(_weights(run.reasoner), _weights(sft_out))
    assert lm_changed > 0 and vision_changed == 0  # the language model only (full FT here)
    man = json.loads((sft_out / "manifest.json").read_text())
    assert man["steps"] == 6 and man["examples"] > 0 and rec["stage"] == "sft"
    assert len(read_log(sft_out / "train_log.csv")) == 6
    assert not (run.root / "models/reasoner-sft.checkpoints").exists()  # dropped at the end

    rl_out = run.root / "models/reasoner-rl"
    train_egrl(run.cfg, run.rl, sft_out, run.embedder, run.discriminator, rl_out)
    lm_changed, vision_changed = _changed(_weights(sft_out), _weights(rl_out))
    assert lm_changed > 0 and vision_changed == 0

    rows = read_log(rl_out / "train_log.csv")
    assert [r["step"] for r in rows] == [1.0, 2.0, 3.0]
    for r in rows:
        missing = [c for c in REWARD_COLUMNS if c not in r]
        assert not missing, missing
        assert all(math.isfinite(r[c]) for c in REWARD_COLUMNS)
        # the logged total is the weighted sum of the rewards' means (release weights)
        want = sum(
            w * r[f"rewards/{n}/mean"]
            for n, w in (("format", 0.05), ("process", 0.2), ("outcome", 0.8))
        )
        assert r["reward"] == pytest.approx(want, abs=1e-5)
    assert (rl_out / "train_log.png").stat().st_size > 1000

    held = json.loads((rl_out / "heldout.json").read_text())
    for k in ("start", "final"):
        assert held[k]["pairs"] > 0 and math.isfinite(held[k]["outcome_mean"])
    man = json.loads((rl_out / "manifest.json").read_text())
    assert man["rewards"] == {"format": 0.05, "process": 0.2, "outcome": 0.8}
    assert man["preset"] == "release"
    assert man["steps"] == 3 and man["scorer"]["batches"] >= 3
    # GRPO learns only from groups whose rollouts differ in reward: some did
    assert min(r["frac_reward_zero_std"] for r in rows) < 1
    sc = man["scorer"]  # a random Discriminator mostly names no number: logged misses
    assert (
        sc["process_calls"] > 0
        and sc["process_hits"] + sc["process_invalid"] <= sc["process_calls"]
    )

    model, proc = load_backbone(model_folder(rl_out), role="reasoner")
    out = chat_generate(
        model,
        proc,
        [[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]],
        max_new_tokens=4,
    )
    assert isinstance(out[0], str)
