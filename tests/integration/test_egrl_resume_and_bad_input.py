"""EG-RL resumes from its last checkpoint; the rewards survive bad rollouts with the real
(tiny) Embedder and Discriminator in the loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from tests.fixtures.tiny_run import tiny_run
from ume.items import Item
from ume.models.chat import LocalChatModel
from ume.tcot.format import render_tcot
from ume.train import egrl as egrl_mod
from ume.train.reasoner_common import model_folder, read_log
from ume.train.reward_models import Discriminator, LocalEmbedder
from ume.train.rewards import (
    EGRLScorer,
    FormatReward,
    OutcomeReward,
    ProcessReward,
    item_json,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    # two RL datasets, no held-out pairs: the resumption test runs 3 steps in all
    return tiny_run(
        tmp_path_factory.mktemp("run"),
        overrides={
            "split": {"rl_datasets": ["synth_img_grounding", "synth_vid_ret"]},
            "egrl": {"heldout_pairs_per_dataset": 0, "save_steps": 1, "max_completion_length": 12},
        },
    )


def test_egrl_resumes_from_the_last_checkpoint(run, monkeypatch):
    out = run.root / "models/reasoner-rl"
    ckpt = run.root / "checkpoints/egrl"
    cfg = run.cfg
    cfg.egrl.max_steps = 1

    def interrupted(*a, **k):  # the job dies after training, before the model is saved
        raise RuntimeError("killed")

    monkeypatch.setattr(egrl_mod.reasoner_common, "save_reasoner", interrupted)
    with pytest.raises(RuntimeError, match="killed"):
        egrl_mod.train_egrl(cfg, run.rl, run.reasoner, run.embedder, run.discriminator, out, ckpt)
    assert (ckpt / "checkpoint-1").is_dir()
    monkeypatch.undo()

    cfg.egrl.max_steps = 2
    egrl_mod.train_egrl(cfg, run.rl, run.reasoner, run.embedder, run.discriminator, out, ckpt)
    man = json.loads((out / "manifest.json").read_text())
    assert man["resumed_from"].endswith("checkpoint-1") and man["steps"] == 2
    assert [r["step"] for r in read_log(out / "train_log.csv")] == [1.0, 2.0]
    assert not ckpt.exists()  # removed once the model is saved
    assert (model_folder(out) / "config.json").is_file()


def _image(path, colour):
    im = Image.new("RGB", (64, 64), (250, 250, 250))
    im.paste(colour, (8, 8, 40, 40))
    im.save(path)
    return str(path)


def test_bad_rollouts_get_format_zero_and_a_finite_outcome(run, tmp_path):
    img = _image(tmp_path / "a.png", (200, 0, 0))
    frames = tuple(_image(tmp_path / f"f{i}.png", (0, 60 * i, 0)) for i in range(3))
    good = render_tcot("a red square", "red", "a red square", {"bbox_2d": [100, 100, 600, 600]})
    bad = [
        "",
        "{{{ <thinking",  # unparseable
        good + " filler" * 20_000,  # absurdly long
        '<thinking> x <|image_pad|><|vision_start|> {"bbox_2d": [0, 0, 5000, -3]} </thinking>'
        "<rethink></rethink><answer><|im_end|><emb></answer>",  # special tokens, broken box
    ]
    q_items = [Item("image", image=img, text="what colour?"), Item("video", frames=frames)]
    p_items = [Item("text", text="red"), Item("text", text="green")]
    completions, pair_id, side, item = [], [], [], []
    for p, (qi, pi) in enumerate(zip(q_items, p_items, strict=True)):
        for s, it, texts in (
            ("qry", qi, [good, *bad[:2]] if p == 0 else [*bad[2:], good]),
            ("pos", pi, [good, bad[0], good] if p == 0 else [bad[1], good, good]),
        ):
            for t in texts:
                completions.append([{"role": "assistant", "content": t}])
                pair_id.append(f"p{p}")
                side.append(s)
                item.append(item_json(it))
    cols = {"pair_id": pair_id, "side": side, "item": item}
    n = len(completions)
    emb = LocalEmbedder(model_folder(run.embedder))
    dis = Discriminator(
        LocalChatModel(model_folder(run.discriminator), role="discriminator"), max_new_tokens=4
    )
    scorer = EGRLScorer(emb, dis, max_chars=32 * 64)
    logged = {}

    def log_metric(k, v):
        logged[k] = v

    fmt = FormatReward("tags", max_chars=32 * 64)([[]] * n, completions)
    outcome = OutcomeReward(scorer)([[]] * n, completions, log_metric=log_metric, **cols)
    process = ProcessReward(scorer)([[]] * n, completions, log_metric=log_metric, **cols)
    texts = [c[0]["content"] for c in completions]
    # only the good rollout passes: bad[3] has its tags in order around special tokens and a
    # broken box, but a blank <rethink> (the parser flags blank sections since 85fdafc)
    assert fmt == [1.0 if t == good else 0.0 for t in texts]
    assert FormatReward("tags+evidence")([[]], [bad[3]], item=[item_json(q_items[0])]) == [0.0]
    assert len(outcome) == len(process) == n
    assert all(math.isfinite(x) for x in outcome + process)
    assert logged["outcome/embed_failures"] == 0  # every rollout could be embedded
    assert 0.0 <= logged["process/invalid_rate"] <= 1.0

    # the real Embedder reads the evidence: moving the box changes the query's embedding
    from ume.inputs import build_input

    other = render_tcot("a red square", "red", "a red square", {"bbox_2d": [500, 500, 1000, 1000]})
    z = emb.embed_built([build_input(q_items[0], good), build_input(q_items[0], other)])
    assert not torch.allclose(z[0], z[1])
