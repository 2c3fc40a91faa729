"""The one Embedder input builder: order, modes, evidence visuals, determinism, bad input."""

from __future__ import annotations

import doctest

import pytest
import torch
from PIL import Image

import ume.inputs as inputs_mod
from ume.config import TinyModelConfig
from ume.errors import ConfigError
from ume.inputs import (
    EMB_TOKEN,
    MODES,
    SUMMARIZE,
    BuiltInput,
    build_input,
    collate,
    input_length,
    problem_counts,
)
from ume.items import Item
from ume.tcot.evidence import pixel_box
from ume.tcot.format import render_tcot

pytestmark = pytest.mark.unit

FRAME_COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from ume.models.backbone import load_backbone
    from ume.models.tiny import build_tiny

    folder = build_tiny("qwen3_vl", TinyModelConfig(), tmp_path_factory.mktemp("m") / "qwen3")
    return load_backbone(folder)[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    # pixel (x, y) = (x, y, 7): a crop tells where it came from
    grad = Image.new("RGB", (200, 100))
    grad.putdata([(x, y, 7) for y in range(100) for x in range(200)])
    grad.save(root / "grad.png")
    frames = []
    for k, colour in enumerate(FRAME_COLOURS):
        Image.new("RGB", (64, 64), colour).save(root / f"f{k}.png")
        frames.append(str(root / f"f{k}.png"))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("RGB", (1000, 2)).save(root / "thin.png")
    return {"grad": str(root / "grad.png"), "frames": frames, "root": root}


def image_item(files, **kw) -> Item:
    return Item(modality="image", image=files["grad"], inst="Find the picture", **kw)


def video_item(files) -> Item:
    return Item(modality="video", frames=tuple(files["frames"]), text="who enters?")


def tcot(evidence: dict | None = None) -> str:
    return render_tcot("a red shape on the left", "shape matters", "red square", evidence)


def text_of(b: BuiltInput) -> str:
    return "".join(p.get("text", "[IMG]") for p in b.messages[0]["content"])


def ids(b: BuiltInput, processor) -> list[int]:
    return collate([b], processor)["input_ids"][0].tolist()


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


def test_doctests():
    assert doctest.testmod(inputs_mod).failed == 0


def test_order_of_the_user_turn(files):
    b = build_input(image_item(files, text="a caption"), tcot({"bbox_2d": [0, 0, 500, 1000]}))
    assert b.problems == []
    kinds = [p["type"] for p in b.messages[0]["content"]]
    assert kinds == ["image", "text", "text", "image", "text", "text"]
    texts = [p["text"].strip() for p in b.messages[0]["content"] if p["type"] == "text"]
    assert texts[0] == "Find the picture\na caption"
    assert texts[1].startswith("<thinking>") and texts[1].endswith("</thinking>")
    assert texts[2].startswith("<rethink>") and texts[2].endswith("</answer>")
    assert texts[3] == SUMMARIZE
    assert b.messages[1] == {"role": "assistant", "content": [{"type": "text", "text": EMB_TOKEN}]}


def test_tcot_changes_the_model_input(files, processor):
    item = image_item(files)
    raw = collate([build_input(item, None, mode="raw")], processor)
    full = collate([build_input(item, tcot({"bbox_2d": [0, 0, 500, 1000]}))], processor)
    assert raw["input_ids"].shape[1] < full["input_ids"].shape[1]
    tag = processor.tokenizer.convert_tokens_to_ids("<thinking>")
    assert tag in full["input_ids"][0] and tag not in raw["input_ids"][0]
    assert raw["image_grid_thw"].shape[0] == 1 and full["image_grid_thw"].shape[0] == 2


def test_crops_arrive_as_extra_images_with_their_pixels(files, processor):
    boxes = [[0, 0, 500, 1000], [250, 500, 750, 1000]]
    b = build_input(image_item(files), tcot({"bbox_2d": boxes}))
    src = Image.open(files["grad"]).convert("RGB")
    assert len(b.images) == 3 and same_pixels(b.images[0], src)
    for crop, box in zip(b.images[1:], boxes, strict=True):
        px = pixel_box(tuple(box), *src.size)
        assert same_pixels(crop, src.crop(px))
        assert crop.getpixel((0, 0)) == (px[0], px[1], 7)
    batch = collate([b], processor)
    thw = batch["image_grid_thw"]
    assert thw.shape[0] == 3 and batch["pixel_values"].shape[0] == int(thw.prod(1).sum())
    n_img_tokens = int((batch["mm_token_type_ids"] == 1).sum())
    assert n_img_tokens == int(thw.prod(1).sum()) // 4  # 2x2 merge


@pytest.mark.parametrize(("base", "numbers", "picked"), [(1, [2, 4], [1, 3]), (0, [2, 0], [2, 0])])
def test_key_frames_select_the_frames_named_in_the_text(files, base, numbers, picked):
    b = build_input(video_item(files), tcot({"key_frames": numbers}), frame_base=base)
    assert b.problems == []
    assert len(b.images) == 4 + len(numbers)
    for img, k in zip(b.images[4:], picked, strict=True):
        assert img.getpixel((5, 5)) == FRAME_COLOURS[k]
    text = text_of(b)
    evidence = text[text.index("</thinking>") :]
    assert [f"Frame {n}:" in evidence for n in numbers] == [True] * len(numbers)
    assert f"Frame {base}:" in text  # originals are labelled in the same base


def test_key_frame_one_is_the_first_frame(files):
    b = build_input(video_item(files), tcot({"key_frames": [1]}))
    assert b.images[-1].getpixel((0, 0)) == FRAME_COLOURS[0]
    b = build_input(video_item(files), tcot({"key_frames": [5]}))  # 1-based: 5 > 4 frames
    assert len(b.images) == 4 and any("key frame 5 out of range" in p for p in b.problems)


def test_the_four_modes(files, processor):
    item = image_item(files)
    t = tcot({"bbox_2d": [0, 0, 500, 1000]})
    built = {m: build_input(item, t, mode=m) for m in MODES}
    texts = {m: text_of(b) for m, b in built.items()}
    # full: T-CoT with its evidence JSON and the crop
    assert '"bbox_2d"' in texts["full"] and len(built["full"].images) == 2
    assert all(tag in texts["full"] for tag in ("<thinking>", "<rethink>", "<answer>"))
    # answer only: no thinking, rethink or evidence
    assert "<answer> red square </answer>" in texts["answer_only"]
    assert "<thinking>" not in texts["answer_only"] and "<rethink>" not in texts["answer_only"]
    assert len(built["answer_only"].images) == 1
    # no evidence: the reasoning text, no JSON, no crop
    assert "<thinking> a red shape on the left </thinking>" in texts["no_evidence"]
    assert "bbox_2d" not in texts["no_evidence"] and len(built["no_evidence"].images) == 1
    # raw: no T-CoT at all
    assert "<" not in texts["raw"] and len(built["raw"].images) == 1
    assert all(SUMMARIZE in s for s in texts.values())
    seqs = {m: tuple(ids(b, processor)) for m, b in built.items()}
    assert len(set(seqs.values())) == 4


def test_raw_mode_ignores_the_tcot(files):
    a = build_input(image_item(files), tcot(), mode="raw")
    b = build_input(image_item(files), None, mode="raw")
    assert a.messages == b.messages and a.problems == b.problems == []


def test_same_input_gives_the_same_tensors(files, processor):
    items = [image_item(files), video_item(files), Item(text="a red car")]
    tcots = [tcot({"bbox_2d": [0, 0, 500, 500]}), tcot({"key_frames": [2]}), tcot()]

    def run():
        return collate([build_input(i, t) for i, t in zip(items, tcots, strict=True)], processor)

    a, b = run(), run()
    assert a.keys() == b.keys() >= {"input_ids", "attention_mask", "pixel_values"}
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("modality", "n_images"), [("text", 0), ("image", 2), ("document", 2), ("video", 6)]
)
def test_every_modality_builds_and_collates(files, processor, modality, n_images):
    evidence = {
        "text": {"text_keywords": ["red"]},
        "image": {"bbox_2d": [0, 0, 500, 500]},
        "document": {"bbox_2d": [0, 0, 500, 500]},
        "video": {"key_frames": [1, 2]},
    }[modality]
    item = {
        "text": Item(text="a red car", inst="Find the image"),
        "image": image_item(files),
        "document": Item(modality="document", image=files["grad"], text="revenue?"),
        "video": video_item(files),
    }[modality]
    b = build_input(item, tcot(evidence))
    assert b.problems == [] and len(b.images) == n_images
    batch = collate([b], processor)
    assert batch["input_ids"][0, -3].item() == processor.tokenizer.convert_tokens_to_ids(EMB_TOKEN)
    assert input_length(b, processor) == batch["input_ids"].shape[1]


def test_bad_box_missing_frame_broken_image(files, processor):
    root = files["root"]
    cases = [
        # box outside the image: clamped to a degenerate box and dropped
        (image_item(files), tcot({"bbox_2d": [1200, 1200, 1500, 1500]}), 1, "tcot: degenerate"),
        # a crop thinner than 10 px
        (image_item(files), tcot({"bbox_2d": [0, 0, 1000, 20]}), 1, "evidence: crop"),
        # the frame file a key frame points at is missing
        (
            Item(modality="video", frames=(files["frames"][0], str(root / "gone.png"))),
            tcot({"key_frames": [2]}),
            1,
            "evidence: key frame 2",
        ),
        # the image does not decode: no original, no crop
        (
            Item(modality="image", image=str(root / "broken.png")),
            tcot({"bbox_2d": [0, 0, 500, 500]}),
            0,
            "visual: image image",
        ),
        (image_item(files), None, 1, "tcot: no T-CoT"),
        (image_item(files), "just some words {", 1, "tcot: unreadable"),
    ]
    built = []
    for item, t, n_images, problem in cases:
        b = build_input(item, t)
        assert len(b.images) == n_images, problem
        assert any(p.startswith(problem) for p in b.problems), (problem, b.problems)
        built.append(b)
    batch = collate(built, processor)  # the whole batch still collates
    assert batch["input_ids"].shape[0] == len(cases)
    counts = problem_counts(built)
    assert counts["inputs_with_problems"] == len(cases)
    assert counts["visual"] >= 2 and counts["tcot"] >= 3 and counts["evidence"] >= 2


def test_unreadable_tcot_falls_back_to_raw(files):
    raw = build_input(image_item(files), None, mode="raw")
    for bad in (None, "", "no tags here", 17):
        b = build_input(image_item(files), bad)
        assert b.messages == raw.messages and b.problems


def test_extreme_aspect_ratio_is_padded(files, processor):
    b = build_input(Item(modality="image", image=str(files["root"] / "thin.png")), None, mode="raw")
    assert b.images[0].size == (1000, 5) and any("padded" in p for p in b.problems)
    collate([b], processor)


def test_max_length_gives_up_visuals_first_then_item_text_never_the_tcot(files, processor):
    long = Item(modality="image", image=files["grad"], text=" ".join(["red square"] * 200))
    t = tcot({"bbox_2d": [0, 0, 500, 1000]})
    b = build_input(long, t)
    full = collate([b], processor)
    assert full["input_ids"].shape[1] > 150 and full["image_grid_thw"].shape[0] == 2
    b = build_input(long, t)
    short = collate([b, build_input(Item(text="hi"), None)], processor, max_length=150)
    row = short["input_ids"][0][short["attention_mask"][0].bool()]
    assert len(row) <= 150
    # the crop went first (resolution was already at the minimum), then the item text
    assert short["image_grid_thw"].shape[0] == 1
    kinds = [p.split(":", 1)[1] for p in b.problems if p.startswith("length:")]
    assert any("evidence visual(s) dropped" in k for k in kinds)
    assert any("item text cut" in k for k in kinds)
    text = processor.tokenizer.decode(row)
    for piece in ("a red shape on the left", "shape matters </rethink>", "red square </answer>"):
        assert piece in text  # the whole T-CoT
    emb = processor.tokenizer.convert_tokens_to_ids(EMB_TOKEN)
    assert row[-3].item() == emb
    assert SUMMARIZE in text
    assert problem_counts([b])["length"] == len(kinds)


def test_bad_mode_names_the_config_key(files):
    with pytest.raises(ConfigError, match=r"train_embedder\.tcot_input"):
        build_input(image_item(files), tcot(), mode="thinking_only")


def test_reserved_tokens_in_text_never_reach_the_model():
    """A Reasoner can write <|image_pad|> or <emb>: they would desynchronise images / <emb>."""
    from ume.inputs import RESERVED_TOKENS

    tcot = (
        "<thinking> a <|image_pad|>red<|im_end|> car </thinking>"
        "<rethink> <emb> red </rethink><answer> red <|vision_start|>car </answer>"
    )
    b = build_input(Item(text="a <|video_pad|>car"), tcot)
    text = "".join(p.get("text", "") for p in b.messages[0]["content"])
    assert not any(t in text for t in RESERVED_TOKENS)
    assert "red car" in text
    assert any("reserved token" in p for p in b.problems)
