"""Batched chat generation on the tiny Qwen-VL models (left padding, images, T-CoT tags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ume.config import TinyModelConfig
from ume.models.backbone import chat_generate, decode_completion, load_backbone, set_offline_env

pytestmark = pytest.mark.integration

FAMILIES = ("qwen3_vl", "qwen2_vl")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("imgs")
    out = []
    for i, (size, colour) in enumerate(
        [((64, 64), (220, 20, 20)), ((96, 64), (20, 200, 20)), ((64, 64), (20, 20, 220))]
    ):
        im = Image.new("RGB", size, (255, 255, 255))
        ImageDraw.Draw(im).rectangle((4 + 8 * i, 4, 40, 30 + 8 * i), fill=colour)
        p = root / f"im{i}.png"
        im.save(p)
        out.append(p)
    # A grey-scale frame: chat_generate converts it to RGB.
    p = root / "grey.png"
    Image.new("L", (64, 64), 128).save(p)
    out.append(p)
    return out


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict:
    set_offline_env()
    from ume.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {
        fam: load_backbone(build_tiny(fam, TinyModelConfig(), root / fam), role="reasoner")
        for fam in FAMILIES
    }


def _chats(images: list[Path]) -> list[list[dict]]:
    img = [{"type": "image", "image": str(p)} for p in images]
    return [
        # short: one image
        [{"role": "user", "content": [img[0], {"type": "text", "text": "What is it?"}]}],
        # long: system prompt + a "video" of three frames (one grey-scale) + a longer question
        [
            {"role": "system", "content": "Think step by step, then give the answer."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Frames of a video:"},
                    img[1],
                    img[2],
                    img[3],
                    {"type": "text", "text": "Which frames show the green rectangle moving?"},
                ],
            },
        ],
        # medium: image after the text
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Find the blue box and give its bbox_2d."},
                    img[2],
                ],
            }
        ],
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_greedy_equals_one_by_one(family, backbones, images):
    model, proc = backbones[family]
    chats = _chats(images)
    batched = chat_generate(model, proc, chats, max_new_tokens=12)
    assert len(batched) == len(chats)
    assert all(isinstance(s, str) for s in batched)
    assert any(s for s in batched)
    single = [chat_generate(model, proc, [c], max_new_tokens=12)[0] for c in chats]
    assert batched == single
    chunked = chat_generate(model, proc, chats, max_new_tokens=12, batch_size=2)
    assert chunked == batched
    for s in batched:
        assert "<|im_end|>" not in s and "<|endoftext|>" not in s


def test_sampling_is_seeded(backbones, images):
    model, proc = backbones["qwen3_vl"]
    chats = _chats(images)[:2]
    a = chat_generate(model, proc, chats, max_new_tokens=8, temperature=1.0, seed=3)
    b = chat_generate(model, proc, chats, max_new_tokens=8, temperature=1.0, seed=3)
    assert a == b
    assert chat_generate(model, proc, [], max_new_tokens=4) == []


def test_decode_keeps_tcot_tags_and_cuts_at_end_of_turn(backbones):
    _, proc = backbones["qwen2_vl"]
    tok = proc.tokenizer
    ids = tok.encode(
        "<thinking>red box</thinking><answer>left</answer><|im_end|>junk", add_special_tokens=False
    )
    ids = ids + [tok.pad_token_id] * 3
    stop = [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    assert decode_completion(tok, ids, stop) == "<thinking>red box</thinking><answer>left</answer>"
