"""Prompts: every family builds a well-formed chat; the short-answer parsers."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ume.tcot.prompts as prompts
from ume.errors import DataError
from ume.items import Item
from ume.tcot.format import EVIDENCE_KEY, EVIDENCE_KEYS, TAG_STRINGS
from ume.tcot.prompts import (
    FAMILIES,
    discriminator_messages,
    family_of,
    parse_choice,
    parse_yes_no,
    relevance_messages,
    tcot_messages,
)

pytestmark = pytest.mark.unit

FRAMES = tuple(f"/data/v/frame_{i:02d}.png" for i in range(8))
ITEMS = {
    "text": Item(modality="text", inst="Find an image of", text="a dog catching a frisbee"),
    "image": Item(
        modality="image", inst="Represent the image for classification", image="/d/a.png"
    ),
    "image_text": Item(
        modality="image", inst="Answer:", text="what colour is the car?", image="/d/a.png"
    ),
    "video": Item(modality="video", frames=FRAMES),
    "video_text": Item(
        modality="video", inst="Find the moment", text="a man opens a door", frames=FRAMES
    ),
    "document": Item(modality="document", image="/d/page.png"),
    "document_text": Item(
        modality="document", text="What was the 2019 revenue?", image="/d/page.png"
    ),
}
EXPECTED_IMAGES = {"text": 0, "image": 1, "image_text": 1, "document": 1, "document_text": 1}


def test_doctests():
    assert doctest.testmod(prompts).failed == 0


def test_items_cover_every_family():
    assert {family_of(item) for item in ITEMS.values()} == set(FAMILIES)
    for family, item in ITEMS.items():
        assert family_of(item) == family


def _check_chat(msgs):
    assert isinstance(msgs, list) and msgs
    for m in msgs:
        assert set(m) == {"role", "content"}
        assert m["role"] in ("system", "user", "assistant")
        assert isinstance(m["content"], list) and m["content"]
        for part in m["content"]:
            assert part["type"] in ("text", "image")
            assert set(part) == {"type", part["type"]}
            assert isinstance(part[part["type"]], str) and part[part["type"]]
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"


@pytest.mark.parametrize("role", ["query", "candidate"])
@pytest.mark.parametrize("family", FAMILIES)
def test_family_messages(family, role):
    item = ITEMS[family]
    msgs = tcot_messages(item, role)
    _check_chat(msgs)
    assert len(msgs) == 2
    user = msgs[1]["content"]
    images = [p["image"] for p in user if p["type"] == "image"]
    assert images == (
        list(FRAMES) if item.modality == "video" else [item.image] * EXPECTED_IMAGES[family]
    )
    assert user[-1]["type"] == "text"  # visuals first, then the question
    prompt = user[-1]["text"]
    key = EVIDENCE_KEY[item.modality]
    assert f'"{key}"' in prompt
    for other in set(EVIDENCE_KEYS) - {key}:
        assert other not in prompt, f"{family} prompt names {other}"
    for tag in TAG_STRINGS:
        assert tag in prompt
    if key == "bbox_2d":
        assert "0 to 1000" in prompt
    if item.inst:
        assert item.inst in prompt
    if item.text:
        assert item.text in prompt
    assert role in prompt


def test_video_frames_are_labelled_from_one():
    user = tcot_messages(ITEMS["video"], "query")[1]["content"]
    labels = [p["text"] for p in user[:-1] if p["type"] == "text"]
    assert labels == [f"Frame {k}:" for k in range(1, 9)]
    for i in range(8):  # each label directly precedes its frame
        assert user[2 * i] == {"type": "text", "text": f"Frame {i + 1}:"}
        assert user[2 * i + 1] == {"type": "image", "image": FRAMES[i]}
    assert "1 to 8" in user[-1]["text"] and "Frame 1 is 1" in user[-1]["text"]


def test_query_and_candidate_prompts_differ():
    item = ITEMS["image_text"]
    assert tcot_messages(item, "query") != tcot_messages(item, "candidate")


def test_family_is_decided_by_content_text_not_instruction():
    assert family_of(Item(modality="image", image="/a.png", inst="Find it")) == "image"
    assert family_of(Item(modality="image", image="/a.png", text="  ")) == "image"
    assert family_of(Item(modality="document", image="/a.png", text="q")) == "document_text"
    assert family_of(Item(modality="text", text="")) == "text"


@pytest.mark.parametrize(
    "item",
    [Item(modality="image"), Item(modality="document", text="q"), Item(modality="video", text="q")],
)
def test_missing_visuals_raise_data_error(item):
    with pytest.raises(DataError):
        tcot_messages(item, "query")


def test_bad_role():
    with pytest.raises(ValueError, match="role"):
        tcot_messages(ITEMS["text"], "target")  # type: ignore[arg-type]


def test_relevance_messages():
    msgs = relevance_messages("<answer> a dog </answer>", "<answer> a cat </answer>")
    _check_chat(msgs)
    text = msgs[-1]["content"][0]["text"]
    assert "a dog" in text and "a cat" in text
    assert text.index("a dog") < text.index("a cat")
    assert "irrelevant" in text and "conflicting" in text and "Yes or No" in text


def test_discriminator_messages():
    msgs = discriminator_messages("query tcot", ["first", "second", "third"])
    _check_chat(msgs)
    text = msgs[-1]["content"][0]["text"]
    assert text.index("Candidate 1:\nfirst") < text.index("Candidate 2:\nsecond")
    assert "Candidate 3:\nthird" in text and "1 to 3" in text
    with pytest.raises(ValueError):
        discriminator_messages("q", [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No.", False),
        ("no", False),
        ("NO", False),
        ("**No**", False),
        ("Yes", True),
        ("yes!", True),
        ("Answer: Yes", True),
        ("Answer: no", False),
        ("The answer is No.", False),
        ("<answer> No </answer>", False),
        ("Yes, they conflict.", True),
        ("After comparing them, no.", False),
        ("I think the answer is yes, though one could say no", True),
        ("Not sure", None),
        ("Nope", None),
        ("Yesterday", None),
        ("yes or no", True),  # first word wins
        ("Both yes and no", None),
        ("", None),
        (None, None),
        (3, None),
    ],
)
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("2", 4, 1),
        ("1", 1, 0),
        (" 4 ", 4, 3),
        ("Candidate 3", 4, 2),
        ("**Candidate 3**", 4, 2),
        ("[2]", 4, 1),
        ("#2", 4, 1),
        ("Answer: 1", 4, 0),
        ("The answer is candidate 4.", 4, 3),
        ("Among the 4 candidates, candidate 2 fits best.", 4, 1),
        ("Candidate 2 is better than candidate 1", 4, 1),
        ("Answer: 3. Candidate 1 is close.", 4, 2),
        ("5", 4, None),
        ("0", 4, None),
        ("Candidate 12", 4, None),
        ("none of them", 4, None),
        ("", 4, None),
        (None, 4, None),
        ("1", 0, None),
        ("9" * 50, 4, None),
    ],
)
def test_parse_choice(text, n, expected):
    assert parse_choice(text, n) == expected


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=100), n=st.integers(-1, 20))
def test_short_answer_parsers_never_raise(text, n):
    assert parse_yes_no(text) in (True, False, None)
    choice = parse_choice(text, n)
    assert choice is None or 0 <= choice < n
