"""What text reaches the Embedder: no model-written special tokens, one summarize line; and
the EG-RL format reward checks key frames against the video the Reasoner saw."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ume.inputs import MODEL_WRITTEN_TOKENS, RESERVED_TOKENS, SUMMARIZE, build_input, strip_reserved
from ume.items import Item
from ume.tcot.format import render_tcot
from ume.train.rewards import FormatReward

pytestmark = pytest.mark.unit

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKENS = [
    *RESERVED_TOKENS,
    *MODEL_WRITTEN_TOKENS,
    "<|image_1|>",
    "<|image_12|>",
    "<IMAGE>",
    SUMMARIZE,
    "summarize the above content in one word",
]
words = st.text(alphabet="abc xyz,.()0123456789", max_size=8)
with_tokens = st.lists(st.sampled_from(TOKENS) | words, max_size=10).map("".join)


def _texts(built) -> list[str]:
    return [p["text"] for p in built.messages[0]["content"] if p["type"] == "text"]


@FAST
@given(inst=with_tokens, text=with_tokens, thinking=with_tokens, answer=with_tokens)
def test_no_special_or_model_written_token_reaches_the_embedder(inst, text, thinking, answer):
    tcot = render_tcot(thinking + " t", "r", answer + " a")
    built = build_input(Item(inst=inst, text=text), tcot)
    body = "\n".join(_texts(built))
    for tok in (*RESERVED_TOKENS, *MODEL_WRITTEN_TOKENS, "<|image_1|>", "<|image_12|>"):
        assert tok.lower() not in body.lower()
    assert body.lower().count(SUMMARIZE.lower().rstrip(":")) == 1  # the builder's, last
    assert _texts(built)[-1].strip() == SUMMARIZE
    if any(t.lower() in (inst + text + thinking + answer).lower() for t in TOKENS):
        assert any("reserved token" in p for p in built.problems)


def test_grounding_tokens_go_but_their_coordinates_stay():
    tcot = render_tcot("the <|object_ref_start|>cat<|object_ref_end|> at "
                       "<|box_start|>(10,20),(30,40)<|box_end|>", "r", "a cat")  # fmt: skip
    body = "\n".join(_texts(build_input(Item(text="q <image>"), tcot)))
    assert "the cat at (10,20),(30,40)" in body and "<image>" not in body
    assert strip_reserved("x <|image_3|> y")[1] == 1


@pytest.mark.parametrize(("key_frames", "reward"), [([2, 4], 1.0), ([5], 0.0), ([0], 0.0)])
def test_format_reward_passes_the_frame_count(key_frames, reward):
    side = json.dumps({"modality": "video", "frames": ["f1", "f2", "f3", "f4"]})
    text = render_tcot("t", "r", "a", {"key_frames": key_frames})
    r = FormatReward(variant="tags+evidence")
    assert r([[]], [text], item=[side]) == [reward]
