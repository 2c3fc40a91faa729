"""EG-RL with the paper preset's structure on tiny models: G = 8, several pairs per step,
gradient accumulation; the TRL arguments that reach the trainer, the rewards seeing whole
pairs, the Embedder's recorded input, budgets and DeepSpeed reaching the Reasoner stages, and
SFT examples that give up resolution instead of their T-CoT (issue 10, items 1, 2, 4)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.fixtures.tiny_run import tiny_run
from ume.inputs import PixelBudget, apply_budget
from ume.train import egrl as egrl_mod
from ume.train import reasoner_common
from ume.train.reasoner_common import model_folder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_run(
        tmp_path_factory.mktemp("run"),
        overrides={
            "split": {"rl_per_dataset": 4, "rl_datasets": ["synth_img_grounding", "synth_doc_ret"]},
            "egrl": {
                "num_generations": 8,  # G = 8, as the paper
                "pairs_per_device": 3,  # several pairs per step
                "max_steps": 1,
                "heldout_pairs_per_dataset": 0,
                "max_completion_length": 8,
            },
            "budgets": {"image_max_tokens": 12, "video_max_tokens": 8},
        },
    )


def test_one_egrl_step_with_the_paper_layout(run, monkeypatch, tmp_path):
    # a trained Embedder's record: the reward must read its input mode and token limit
    rec = json.loads(run.embedder.read_text())
    rec["path"] = str(model_folder(run.embedder))
    rec["input"] = {
        "tcot_input": "answer_only",
        "max_length": 400,
        "frame_base": 1,
        "budgets": run.cfg.budgets.model_dump(),
    }
    trained = tmp_path / "embedder"
    trained.mkdir()
    (trained / "backbone.json").write_text(json.dumps(rec))

    made, batches = [], []
    make_class = egrl_mod.egrl_trainer_class

    def recording_class():
        base = make_class()

        class Recording(base):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                made.append(self)

        return Recording

    monkeypatch.setattr(egrl_mod, "egrl_trainer_class", recording_class)
    real_score = egrl_mod.EGRLScorer.score

    def score(self, completions, pair_id, side, item, label=None):
        batches.append((list(pair_id), list(side), self.mode))
        return real_score(self, completions, pair_id, side, item, label)

    monkeypatch.setattr(egrl_mod.EGRLScorer, "score", score)
    out = run.root / "models/reasoner-rl-paper"
    egrl_mod.train_egrl(run.cfg, run.rl, run.reasoner, trained, run.discriminator, out)

    args = made[0].args
    assert (args.per_device_train_batch_size, args.num_generations) == (8, 8)  # one group
    assert args.gradient_accumulation_steps == args.steps_per_generation == 6  # 2 x 3 pairs
    assert args.generation_batch_size == 48  # 3 pairs x 2 sides x G, generated at once
    assert made[0].processing_class.ume_budget == PixelBudget.from_config(run.cfg.budgets)
    # the rewards saw one generation batch: whole pairs, G query and G positive rollouts each
    pid, side, mode = batches[0]
    assert len(pid) == 48 and mode == "answer_only"
    for p in set(pid):
        sides = [s for q, s in zip(pid, side, strict=True) if q == p]
        assert sides.count("qry") == sides.count("pos") == 8
    man = json.loads((out / "manifest.json").read_text())
    assert man["steps"] == 1 and man["rollouts_per_step"] == 48
    assert man["trl_batch"]["generation_batch_size"] == 48
    assert man["embedder_input"]["mode"] == "answer_only"
    assert man["embedder_input"]["max_length"] == 400


def test_deepspeed_reaches_sft_config(run, monkeypatch, tmp_path):
    import trl

    from ume.train.sft import train_sft

    seen = {}

    class Stop(Exception):
        pass

    def sft_config(**kw):
        seen.update(kw)
        raise Stop

    ds = tmp_path / "zero2.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    monkeypatch.setattr(trl, "SFTConfig", sft_config)
    real = reasoner_common.deepspeed_file
    monkeypatch.setattr(
        reasoner_common, "deepspeed_file", lambda key, value, gpu: real(key, value, True)
    )
    cfg = run.cfg.model_copy(deep=True)
    cfg.sft.deepspeed = str(ds)
    with pytest.raises(Stop):
        train_sft(cfg, run.contrastive, run.reasoner, tmp_path / "sft")
    assert seen["deepspeed"] == str(ds)


def test_sft_examples_give_up_resolution_not_their_tcot(run, tmp_path):
    from ume.models.backbone import load_processor

    proc = apply_budget(
        load_processor(model_folder(run.reasoner), role="reasoner"), PixelBudget(4, 64, 4, 16)
    )
    big = Image.new("RGB", (1024, 1024), (200, 30, 30))
    completion = "<thinking> " + "the red square on the left " * 12 + "</thinking>"
    completion += "<rethink> red </rethink><answer> a red square </answer>"

    def example():
        return {
            "prompt": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}],
                }
            ],
            "completion": [
                {"role": "assistant", "content": [{"type": "text", "text": completion}]}
            ],
            "images": [big],
        }

    n_completion = len(proc.tokenizer.encode(completion, add_special_tokens=False))
    limit = n_completion + 40  # room for the prompt and a small image, not a 64-token one
    collator = reasoner_common.vision_collator(proc, limit, "sft.max_length")
    out = collator([example()])
    assert out["input_ids"].shape[1] <= limit and collator.lowered == 1
    labels = out["labels"][0][out["labels"][0] != -100].tolist()
    assert proc.tokenizer.decode(labels).startswith(completion)  # the whole T-CoT is learned
    tight = reasoner_common.vision_collator(proc, n_completion + 2, "sft.max_length")
    text_only = {
        **example(),
        "prompt": [{"role": "user", "content": [{"type": "text", "text": "Which shape?"}]}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": "a square"}]}],
        "images": [],
    }
    out = tight([example(), text_only])
    assert tight.dropped == 1 and out["input_ids"].shape[0] == 1
