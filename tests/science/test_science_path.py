"""The science path: on a small miniature, each mechanism of the method moves its number.

Each test names the mechanism it guards and fails when that mechanism is broken (each was
seen to fail with it deliberately broken: the T-CoT dropped from the training input, the
evidence visuals not attached, rewards written to the other side or to another rollout, the
Discriminator's labels taken before its candidates were shuffled). Directions are asserted
with margins chosen from the values measured on
the miniature with seeds 0, 1 and 2 (``python -m tests.science.miniature``); each test says
what was seen and why its margin is safe. The tier runs seed 0 (``UME_SCIENCE_SEED``).
"""

from __future__ import annotations

from statistics import mean

import numpy as np
import pytest
from PIL import Image

from tests.science import miniature as M
from ume.inputs import build_input
from ume.items import Item
from ume.tcot.evidence import pixel_box
from ume.tcot.format import ANSWER_CLOSE, ANSWER_OPEN, THINK_OPEN, parse_tcot

pytestmark = [pytest.mark.science, pytest.mark.slow]


# --------------------------------------------------------------------------- the T-CoT
def _decoded(out, processor, side: int) -> list[str]:
    """The text of every input of one side of a built training batch, pads removed."""
    tok = processor.tokenizer
    texts = []
    for chunk in out["groups"][side]:
        for ids, mask in zip(chunk["input_ids"], chunk["attention_mask"], strict=True):
            texts.append(tok.decode(ids[mask.bool()], skip_special_tokens=False))
    return texts


def test_training_batches_carry_the_tcot(recorded):
    """Guards: the T-CoT reaches the Embedder's training input (the paper's release silently
    drops it). Direct: decode the batches the contrastive stage built and find each
    example's <answer> text (and its <thinking>) in its own input."""
    _, batches = recorded
    assert batches, "the contrastive stage built no batch"
    checked = 0
    for examples, out, processor in batches:
        for side_idx, side in enumerate(("qry", "pos")):
            texts = _decoded(out, processor, side_idx)
            assert len(texts) == len(examples)
            for ex, text in zip(examples, texts, strict=True):
                p = parse_tcot(ex[f"{side}_tcot"])
                if not p.answer:
                    continue
                assert f"{ANSWER_OPEN} {p.answer} {ANSWER_CLOSE}" in text, (ex["pair_id"], text)
                assert THINK_OPEN in text or not p.thinking
                checked += 1
    assert checked >= 20


def test_an_embedder_trained_with_the_tcot_uses_it(recorded, raw_trained, heldout):
    """Guards: the T-CoT is in the Embedder's training input. Held-out query -> positive
    top-1 accuracy among each dataset's 8 held-out pairs (chance 0.125), inputs with the
    annotated T-CoTs: the Embedder trained with them vs one trained on the raw input (what
    a trainer that drops the T-CoT produces).

    Measured (seeds 0/1/2, two sessions each: the oracle's noise draws depend on the media
    paths, so sessions differ): with 0.47-0.64, without 0.25-0.31; gap 0.18-0.38.
    Margin 0.08: under half the smallest gap seen.
    """
    embedder, _ = recorded
    with_tcot = M.retrieval_accuracy(embedder, heldout, "full")
    without = M.retrieval_accuracy(raw_trained, heldout, "full")
    assert with_tcot - without >= 0.08, (with_tcot, without)


# --------------------------------------------------------------------------- the evidence
def _expected_images(item: Item, tcot: str) -> int:
    """Originals + evidence visuals, from the spec (method.md) rather than the builder: a
    crop per box of at least 10 px a side and aspect <= 50, a frame per key frame."""
    n = {"image": 1, "document": 1, "video": len(item.frames)}.get(item.modality, 0)
    ev = parse_tcot(tcot, num_frames=len(item.frames) or None).evidence
    if ev.boxes and item.image:
        with Image.open(item.image) as im:
            w, h = im.size
        for b in ev.boxes:
            x1, y1, x2, y2 = pixel_box(b, w, h)
            side = min(x2 - x1, y2 - y1)
            n += side >= 10 and max(x2 - x1, y2 - y1) / side <= 50
    return n + len(ev.key_frames)


def test_training_batches_carry_the_evidence_visuals(recorded):
    """Guards: evidence crops and key frames are attached to the Embedder's training input.
    Direct: each chunk of a built batch holds as many images as its inputs' originals plus
    their evidence visuals."""
    _, batches = recorded
    with_evidence = 0
    for examples, out, _ in batches:
        for side_idx, side in enumerate(("qry", "pos")):
            want = [_expected_images(ex[side], ex[f"{side}_tcot"] or "") for ex in examples]
            originals = [_expected_images(ex[side], "") for ex in examples]
            with_evidence += sum(w > o for w, o in zip(want, originals, strict=True))
            got, k = [], 0
            for chunk in out["groups"][side_idx]:
                n = len(chunk["input_ids"])
                got.append(len(chunk.get("image_grid_thw", [])))
                assert got[-1] == sum(want[k : k + n]), (side, want[k : k + n])
                k += n
    assert with_evidence >= 5


def test_evidence_visuals_are_the_crop_and_the_key_frames(heldout):
    """Guards: what is attached is the evidence itself: the crop of the T-CoT's box and the
    frames it names, after the original visuals; nothing in no_evidence mode."""
    recs = heldout.to_dict("records")
    img = next(
        r for r in recs if r["qry_modality"] == "image" and parse_tcot(r["qry_tcot"]).evidence.boxes
    )
    item, tcot = Item.from_row(img, "qry"), img["qry_tcot"]
    b = build_input(item, tcot, mode="full")
    with Image.open(item.image) as im:
        original = im.convert("RGB")
        box = pixel_box(parse_tcot(tcot).evidence.boxes[0], *im.size)
    assert len(b.images) == 2
    assert np.array_equal(np.asarray(b.images[1]), np.asarray(original.crop(box)))
    assert len(build_input(item, tcot, mode="no_evidence").images) == 1

    vid = next(
        r for r in recs if r["qry_modality"] == "video" and "key_frames" in (r["qry_tcot"] or "")
    )
    item, tcot = Item.from_row(vid, "qry"), vid["qry_tcot"]
    keys = parse_tcot(tcot, num_frames=len(item.frames)).evidence.key_frames
    b = build_input(item, tcot, mode="full")
    assert keys and len(b.images) == len(item.frames) + len(keys)
    for k, extra in zip(keys, b.images[len(item.frames) :], strict=True):
        with Image.open(item.frames[k]) as im:
            assert np.array_equal(np.asarray(extra), np.asarray(im.convert("RGB")))


def test_evidence_crops_carry_what_the_tcot_text_does_not(crop_world):
    """Guards: evidence crops reach the Embedder (training and inference). Crop-only pairs:
    an image of several shapes whose T-CoT names no colour, only the box of the object meant;
    the positive is the colour's name. Held-out accuracy among groups of up to 6 pairs of
    distinct colours (chance about 0.17-0.33): trained and read with the crops (full) vs
    without (no_evidence, the ablation's input).

    Measured (seeds 0/1/2, two sessions each): full 0.50-0.72, no_evidence 0.10-0.31;
    gap 0.18-0.62. Margin 0.08: under half the smallest gap seen.
    """
    full, noev, groups = crop_world
    with_crops = M.retrieval_accuracy(full, groups, "full")
    without = M.retrieval_accuracy(noev, groups, "no_evidence")
    assert with_crops - without >= 0.08, (with_crops, without)


# --------------------------------------------------------------------------- the rewards
@pytest.mark.parametrize("corrupt", ["qry", "pos"])
def test_rewards_go_to_the_rollouts_that_earned_them(recorded, heldout, corrupt):
    """Guards: outcome and process rewards are paired with their own rollout and side. On
    one side, half of each group's rollouts are replaced by a T-CoT of a pair outside the
    batch; those must get less reward than the rollouts that describe their own input. A
    reward handed to the wrong rollout, or to the other side's, evens the two out.

    Measured (seeds 0/1/2, mean over the 9 datasets): outcome gap 0.028-0.032 (query side),
    0.025-0.035 (positive side); process gap 0.60-0.69 and 0.55-0.63.
    Margins: outcome 0.01, process 0.25 (each under half the smallest mean seen).
    """
    embedder, _ = recorded
    outcome, process = M.reward_gaps(embedder, heldout, corrupt)
    assert outcome >= 0.01, outcome
    assert process >= 0.25, process


def test_the_discriminator_judges_the_candidates_it_is_shown(heldout):
    """Guards: the Discriminator's candidates are aligned with their labels (which ones are
    the rollout's positives). Every rollout is its side's annotated T-CoT; the oracle
    Discriminator names the candidate that agrees with the query, so a correct alignment
    scores a hit nearly always; misaligned labels (labels of another order than the
    candidates shown) fall to chance: G / (G + 4 hardest negatives) = 0.5.

    Measured (seeds 0/1/2, mean hit rate over the 9 datasets): 0.88-0.90 (lowest dataset
    0.60-0.73). Margin: a mean of at least 0.75, halfway between chance and the lowest seen.
    """
    rates = M.hit_rates(heldout)
    assert mean(rates) >= 0.75, rates
