"""Evidence materialisation: exact crops, dropped crops, bad images, frame selection."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import ume.tcot.evidence as evidence_mod
from ume.items import Item
from ume.tcot.evidence import materialise, pixel_box
from ume.tcot.format import Evidence, ParsedTCoT, parse_tcot, render_tcot
from ume.tcot.prompts import tcot_messages

pytestmark = pytest.mark.unit


def tcot(evidence: dict) -> ParsedTCoT:
    return parse_tcot(render_tcot("look", "keep", "thing", evidence))


@pytest.fixture
def gradient(tmp_path):
    """A 200x100 image whose pixel (x, y) is (x, y, 0): a crop shows where it came from."""
    img = Image.new("RGB", (200, 100))
    img.putdata([(x, y, 0) for y in range(100) for x in range(200)])
    path = tmp_path / "gradient.png"
    img.save(path)
    return str(path)


def test_doctests():
    assert doctest.testmod(evidence_mod).failed == 0


@pytest.mark.parametrize(
    ("box", "size", "pixels"),
    [
        ((0, 0, 1000, 1000), (200, 100), (0, 0, 200, 100)),
        ((0, 0, 1000, 1000), (333, 777), (0, 0, 333, 777)),
        ((250, 500, 750, 1000), (200, 100), (50, 50, 150, 100)),
        ((1, 1, 999, 999), (200, 100), (0, 0, 200, 100)),  # 0.2 -> 0, 199.8 -> 200
        ((5, 5, 995, 995), (100, 100), (1, 1, 100, 100)),  # halves round up
        ((333, 0, 667, 1000), (3, 1), (1, 0, 2, 1)),
    ],
)
def test_pixel_box(box, size, pixels):
    assert pixel_box(box, *size) == pixels


@settings(max_examples=200, deadline=None)
@given(
    x=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True),
    y=st.lists(st.integers(0, 1000), min_size=2, max_size=2, unique=True),
    w=st.integers(1, 5000),
    h=st.integers(1, 5000),
)
def test_pixel_box_stays_inside_the_image(x, y, w, h):
    (x1, x2), (y1, y2) = sorted(x), sorted(y)
    px1, py1, px2, py2 = pixel_box((x1, y1, x2, y2), w, h)
    assert 0 <= px1 <= px2 <= w and 0 <= py1 <= py2 <= h
    assert abs(px1 - x1 * w / 1000) <= 0.5 and abs(py2 - y2 * h / 1000) <= 0.5


def test_crops_are_exact(gradient):
    parsed = tcot({"bbox_2d": [[0, 0, 1000, 1000], [250, 500, 750, 1000]]})
    m = materialise(parsed, Item(modality="image", image=gradient))
    assert m.problems == []
    assert m.crop_boxes == [(0, 0, 200, 100), (50, 50, 150, 100)]
    assert [c.size for c in m.crops] == [(200, 100), (100, 50)]
    assert m.crops[1].getpixel((0, 0)) == (50, 50, 0)  # top-left of the crop is pixel (50, 50)
    assert m.crops[1].getpixel((99, 49)) == (149, 99, 0)
    assert all(c.mode == "RGB" for c in m.crops)


def test_document_boxes_crop_the_page(gradient):
    m = materialise(tcot({"bbox_2d": [0, 0, 500, 500]}), Item(modality="document", image=gradient))
    assert m.crop_boxes == [(0, 0, 100, 50)]


@pytest.mark.parametrize(
    ("box", "reason"),
    [
        ((0, 0, 40, 1000), "under 10 px"),  # 8 px wide
        ((0, 0, 1000, 80), "under 10 px"),  # 8 px high
        ((0, 0, 1000, 100), "aspect over 15"),  # 200 x 10 px: aspect 20
    ],
)
def test_small_and_thin_crops_are_dropped(tmp_path, box, reason):
    path = tmp_path / "wide.png"
    Image.new("RGB", (200, 100)).save(path)
    m = materialise(
        tcot({"bbox_2d": list(box)}), Item(modality="image", image=str(path)), max_aspect=15
    )
    assert m.crops == [] and m.crop_boxes == []
    assert len(m.problems) == 1 and reason.split()[0] in m.problems[0]


def test_aspect_limit_default(tmp_path):
    path = tmp_path / "strip.png"
    Image.new("RGB", (1100, 1000)).save(path)
    item = Item(modality="image", image=str(path))
    # 1100 x 20 px: aspect 55 > 50, dropped; 1100 x 30: aspect 36.7, kept
    m = materialise(tcot({"bbox_2d": [[0, 0, 1000, 20], [0, 0, 1000, 30]]}), item)
    assert m.crop_boxes == [(0, 0, 1100, 30)]
    assert len(m.problems) == 1 and "aspect over 50.0" in m.problems[0]
    # min_side is a parameter: 9 px passes when allowed
    m = materialise(tcot({"bbox_2d": [0, 0, 1000, 9]}), item, min_side=5, max_aspect=1000)
    assert m.crop_boxes == [(0, 0, 1100, 9)]


def test_missing_and_corrupt_images_are_recorded(tmp_path):
    parsed = tcot({"bbox_2d": [0, 0, 1000, 1000], "text_keywords": ["k"]})
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    truncated = tmp_path / "truncated.png"
    Image.new("RGB", (64, 64), "red").save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    for path in (tmp_path / "missing.png", corrupt, truncated, tmp_path):
        m = materialise(parsed, Item(modality="image", image=str(path)))
        assert m.crops == [] and m.crop_boxes == []
        assert len(m.problems) == 1 and "could not be read" in m.problems[0]
        assert m.keywords == ["k"]  # the rest of the evidence survives


def test_boxes_without_an_image():
    m = materialise(tcot({"bbox_2d": [0, 0, 10, 10]}), Item(modality="text", text="x"))
    assert m.crops == [] and "no image" in m.problems[0]


def test_no_evidence_is_no_work(tmp_path):
    # the image is not even opened when there are no boxes
    item = Item(modality="image", image=str(tmp_path / "missing.png"))
    m = materialise(parse_tcot("<thinking>a</thinking>"), item)
    assert (m.crops, m.frames, m.keywords, m.problems) == ([], [], [], [])


FRAMES = tuple(f"/v/frame_{i}.png" for i in range(8))


def test_key_frame_one_selects_the_first_frame():
    """Regression for the paper release's off-by-one: the text's 1 is frames[0]."""
    parsed = parse_tcot(render_tcot("a", "b", "c", {"key_frames": [1]}), num_frames=8)
    assert parsed.evidence.key_frames == (0,)
    m = materialise(parsed, Item(modality="video", frames=FRAMES))
    assert m.frames == [FRAMES[0]]


def test_key_frames_in_text_order_and_last_frame():
    parsed = parse_tcot(render_tcot("a", "b", "c", {"key_frames": [8, 3, 1]}), num_frames=8)
    m = materialise(parsed, Item(modality="video", frames=FRAMES))
    assert m.frames == [FRAMES[7], FRAMES[2], FRAMES[0]] and m.problems == []


def test_prompt_labels_and_selection_agree():
    """The frame the prompt labels "Frame k:" is the one key frame k selects."""
    item = Item(modality="video", frames=FRAMES)
    user = tcot_messages(item, "query")[1]["content"]
    label_to_path = {user[i]["text"]: user[i + 1]["image"] for i in range(0, 16, 2)}
    for k in range(1, 9):
        parsed = parse_tcot(render_tcot("a", "b", "c", {"key_frames": [k]}), num_frames=8)
        assert materialise(parsed, item).frames == [label_to_path[f"Frame {k}:"]]


def test_key_frames_without_frames_or_out_of_range():
    parsed = tcot({"key_frames": [2]})
    m = materialise(parsed, Item(modality="image", image="/x.png"))
    assert m.frames == [] and "no frames" in m.problems[0]
    # parsed without num_frames: the item's frame count still bounds the selection
    parsed = parse_tcot(render_tcot("a", "b", "c", {"key_frames": [2, 20]}))
    m = materialise(parsed, Item(modality="video", frames=FRAMES[:3]))
    assert m.frames == [FRAMES[1]] and "outside the item's 3 frames" in m.problems[0]


def test_keywords_pass_through():
    m = materialise(tcot({"text_keywords": ["red car", "tree"]}), Item(modality="text", text="x"))
    assert m.keywords == ["red car", "tree"] and m.problems == []


def test_evidence_object_directly():
    parsed = ParsedTCoT(evidence=Evidence(key_frames=(0, 7)))
    assert materialise(parsed, Item(modality="video", frames=FRAMES)).frames == [
        FRAMES[0],
        FRAMES[7],
    ]
