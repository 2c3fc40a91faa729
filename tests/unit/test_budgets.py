"""Pixel budgets reach every role's processor, and a too-long input gives up visual tokens,
never its T-CoT (issue 10, item 1 and its bad input)."""

from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from ume.config import TinyModelConfig, config_from_dict, load_config
from ume.errors import ConfigError, DataError
from ume.inputs import (
    EMB_TOKEN,
    PixelBudget,
    apply_budget,
    build_input,
    check_tcot_fits,
    collate,
    fit_chat_images,
    fit_chat_to_length,
    problem_counts,
    tokens_of,
)
from ume.items import Item
from ume.tcot.format import render_tcot

pytestmark = pytest.mark.unit

PAPER = PixelBudget(128, 768, 128, 300)  # method.md: image 128..768, video 128..300 per frame
# what a real Qwen3-VL checkpoint's preprocessor_config.json allows: up to 16,384 tokens
REAL_BOUNDS = {"shortest_edge": 65536, "longest_edge": 16777216}
WORDS = [
    "the",
    "red",
    "circle",
    "moves",
    "to",
    "the",
    "left",
    "corner",
    "while",
    "the",
    "blue",
    "square",
    "stays",
    "near",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from ume.models.tiny import build_tiny

    return build_tiny("qwen3_vl", TinyModelConfig(), tmp_path_factory.mktemp("m") / "qwen3")


def real_like(folder, budget: PixelBudget | None):
    """The tiny processor with a real checkpoint's pixel bounds, then the budget (if any)."""
    from ume.models.backbone import load_processor

    proc = load_processor(folder, role="embedder")
    proc.image_processor.size = dict(REAL_BOUNDS)
    return apply_budget(proc, budget)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    out = []
    for k in range(8):
        p = root / f"f{k}.png"
        Image.new("RGB", (1280, 720), (30 * k, 255 - 30 * k, 90)).save(p)
        out.append(str(p))
    return tuple(out)


def long_tcot(n_words: int) -> tuple[str, str]:
    """A T-CoT whose thinking has ``n_words`` numbered words (every token of it is checkable),
    with key frames 1, 3, 5 and 8; (the T-CoT, its thinking text)."""
    thinking = " ".join(f"{w} {i}" for i, w in zip(range(n_words), itertools.cycle(WORDS)))
    return render_tcot(
        thinking, "the frames 3 and 5", "a circle moves left", {"key_frames": [1, 3, 5, 8]}
    ), thinking


def decoded(batch, processor, row: int = 0) -> tuple[list[int], str]:
    ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    return ids, processor.tokenizer.decode(ids)


def test_a_long_tcot_with_eight_frames_and_key_frames_keeps_every_tcot_token(folder, frames):
    """At the paper's max_length (8192) and budgets, 8 HD frames + 4 key frames + a T-CoT of
    about 2,000 tokens fit whole: the frames take the per-frame budget (<= 300 tokens)."""
    cfg = load_config("config/config.yaml", "config/paper.yaml")
    max_length = cfg.train_embedder.max_length
    budget = PixelBudget.from_config(cfg.budgets)
    assert (max_length, budget) == (8192, PAPER)
    proc = real_like(folder, budget)
    tcot, thinking = long_tcot(600)
    b = build_input(Item(modality="video", frames=frames, text="a video"), tcot)
    assert len(b.images) == 12 and b.problems == []
    batch = collate([b], proc, max_length=max_length)
    ids, text = decoded(batch, proc)
    assert len(ids) <= max_length
    for piece in (thinking, "<rethink> the frames 3 and 5 </rethink>", "a circle moves left"):
        assert piece in text
    assert ids[-3] == proc.tokenizer.convert_tokens_to_ids(EMB_TOKEN)  # <emb><|im_end|>\n
    thw = batch["image_grid_thw"]
    assert thw.shape[0] == 12  # nothing dropped
    per_image = (thw.prod(1) // 4).tolist()
    assert all(128 <= n <= 300 for n in per_image)  # the per-frame budget
    assert not [p for p in b.problems if p.startswith("length")]


def test_over_the_limit_visual_tokens_give_way_in_order_and_are_counted(folder, frames):
    proc = real_like(folder, PAPER)
    tcot, thinking = long_tcot(1700)  # about 6,700 tokens of T-CoT
    b = build_input(Item(modality="video", frames=frames, text="a video"), tcot)
    batch = collate([b], proc, max_length=8192)
    ids, text = decoded(batch, proc)
    assert len(ids) <= 8192
    assert thinking in text and "a circle moves left </answer>" in text
    assert ids[-3] == proc.tokenizer.convert_tokens_to_ids(EMB_TOKEN)
    notes = [p for p in b.problems if p.startswith("length:")]
    # resolution first (down to the 128-token minimum), then the evidence key frames
    assert "visuals lowered" in notes[0]
    assert any("evidence visual(s) dropped" in n for n in notes)
    assert problem_counts([b])["length"] == len(notes)
    thw = batch["image_grid_thw"]
    assert 1 <= thw.shape[0] < 12
    assert all(n <= 300 for n in (thw.prod(1) // 4).tolist())


def test_without_budgets_the_real_bounds_overflow_and_the_rule_still_keeps_the_tcot(folder, frames):
    """The failure the budgets prevent: 8 HD frames at a real checkpoint's bounds are ~900
    tokens each. The length rule then lowers them; the T-CoT stays whole."""
    proc = real_like(folder, None)
    tcot, thinking = long_tcot(600)
    b = build_input(Item(modality="video", frames=frames), tcot)
    batch = collate([b], proc, max_length=8192)
    _, text = decoded(batch, proc)
    assert thinking in text
    assert any(p.startswith("length: visuals lowered") for p in b.problems)


def test_a_tcot_that_cannot_fit_is_an_error_naming_the_keys(folder, frames):
    proc = real_like(folder, PAPER)
    tcot, _ = long_tcot(3000)  # about 10,000 tokens
    b = build_input(Item(modality="video", frames=frames), tcot)
    with pytest.raises(DataError, match=r"train_embedder\.max_length = 8192.*T-CoT is never cut"):
        collate([b], proc, max_length=8192)
    # the config that allows it stops before any stage: the keys are named
    with pytest.raises(ConfigError) as e:
        check_tcot_fits(
            2000, {"eval.max_new_tokens": 2048, "egrl.max_completion_length": 512}, PAPER
        )
    msg = str(e.value)
    assert "train_embedder.max_length = 2000" in msg and "eval.max_new_tokens" in msg
    assert "budgets.image_min_tokens" in msg and "at least 2240" in msg
    from ume import plan

    cfg = load_config("config/config.yaml", "config/paper.yaml")
    plan.check(cfg)  # the paper preset fits
    small = config_from_dict(
        {"train_embedder": {"max_length": 100}, "eval": {"max_new_tokens": 120}}
    )
    with pytest.raises(
        ConfigError, match=r"train_embedder\.max_length = 100 .*eval\.max_new_tokens"
    ):
        plan.check(small)


def test_every_image_is_fitted_to_its_kind(folder, tmp_path):
    proc = real_like(folder, PAPER)
    big = Image.new("RGB", (2000, 2000), (200, 10, 10))
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "Frame 1:"},
                {"type": "image"},
                {"type": "text", "text": "what is it?"},
            ],
        }
    ]
    img, frame = fit_chat_images(chat, [big, big], proc)
    assert tokens_of(img, 32) <= 768 and tokens_of(frame, 32) <= 300
    assert tokens_of(img, 32) > 300
    # the processor itself holds the widest budget (a path that bypasses the builders)
    out = proc.image_processor(images=[big], return_tensors="pt")
    assert int(out["image_grid_thw"].prod()) // 4 <= 768
    # a prompt over its limit lowers its images toward the minimum, or names the key
    lowered, note = fit_chat_to_length(chat, [big, big], proc, 600, key="egrl.max_prompt_length")
    assert note and sum(tokens_of(i, 32) for i in lowered) <= 600
    with pytest.raises(DataError, match=r"egrl\.max_prompt_length = 100"):
        fit_chat_to_length(chat, [big, big], proc, 100, key="egrl.max_prompt_length")


def test_the_budget_reaches_every_role(folder, tmp_path):
    """Embedder (training, reward, evaluation), Reasoner (evaluation), Discriminator and
    annotator load their processor with the config's budget."""
    from ume.annotate.backends import make_annotator
    from ume.eval.encode import make_encoder
    from ume.eval.reason import hf_reasoner
    from ume.models.backbone import load_backbone
    from ume.models.chat import LocalChatModel
    from ume.models.embedder import Embedder
    from ume.train.reward_models import LocalEmbedder

    budget = PixelBudget(8, 24, 6, 12)
    want = {"shortest_edge": 6 * 32 * 32, "longest_edge": 24 * 32 * 32}

    def bounds(processor):
        s = processor.image_processor.size
        return {"shortest_edge": s["shortest_edge"], "longest_edge": s["longest_edge"]}

    _, proc = load_backbone(folder, budget=budget)
    assert bounds(proc) == want and proc.ume_budget == budget
    assert Embedder.from_pretrained(folder, budget=budget).processor.ume_budget == budget
    assert LocalEmbedder(folder, budget=budget).model.processor.ume_budget == budget
    chat = LocalChatModel(folder, role="discriminator", budget=budget)
    assert chat.loaded()[1].ume_budget == budget
    cfg = config_from_dict(
        {
            "budgets": {
                "image_min_tokens": 8,
                "image_max_tokens": 24,
                "video_min_tokens": 6,
                "video_max_tokens": 12,
            },
            "annotate": {"backend": "hf"},
        }
    )
    enc = make_encoder(cfg, folder, None)
    assert enc.embedder.processor.ume_budget == budget
    reasoner = hf_reasoner(cfg, folder, identity_memo=None)
    assert reasoner.params["budgets"] == budget.to_dict()  # the T-CoT cache key holds it
    assert reasoner.model.loaded()[1].ume_budget == budget
    other = make_encoder(config_from_dict({}), folder, None)
    assert other.identity != enc.identity  # the embedding cache key holds it
    ann = make_annotator(cfg, "hf", folder)
    assert ann.model.budget == budget and ":px8-24/6-12" in ann.identity
    torch.manual_seed(0)
