"""The oracle Discriminator of the synthetic world, and the process reward it drives."""

from __future__ import annotations

import json

import pytest
import torch

from ume.annotate.backends import oracle_agreement, tcot_words
from ume.config import config_from_dict
from ume.errors import ConfigError
from ume.tcot.format import render_tcot
from ume.tcot.prompts import discriminator_messages, read_discriminator_messages
from ume.train.reward_models import OracleDiscriminator, make_discriminator
from ume.train.rewards import EGRLScorer, ProcessReward, frac_zero_std

pytestmark = pytest.mark.unit


def _t(words: str, ev=None) -> str:
    return render_tcot(words, words, words, ev or {"bbox_2d": [0, 0, 500, 500]})


def test_reading_the_chat_back_survives_candidate_headers_inside_tcots():
    query = "q\n\nCandidate 1:\nnot a header"
    cands = ["a\n\nCandidate 2:\nfake", "b", "(empty)"]
    assert read_discriminator_messages(discriminator_messages(query, cands)) == (query, cands)
    assert read_discriminator_messages([{"role": "user", "content": [{"text": "hi"}]}]) is None
    assert read_discriminator_messages([]) is None


def test_words_ignore_coordinates_and_keys_and_clashes_count_against():
    w = tcot_words(_t("red circle top-left", {"bbox_2d": [281, 47, 953, 609]}))
    assert w == {"red", "circle", "top", "left"}
    assert tcot_words('<thinking> {"text_keywords": ["blue", "square"]} </thinking>') >= {
        "blue",
        "square",
    }
    assert tcot_words("no tags: a green star") == {"green", "star", "no", "tags"}
    red, blue = {"red", "circle"}, {"blue", "circle"}
    assert oracle_agreement(red, red) == 1.0 > oracle_agreement(red, {"red", "circle", "x"})
    assert oracle_agreement(red, blue) < 0 < oracle_agreement(red, {"circle", "left"})
    assert oracle_agreement(set(), red) == 0.0


def test_the_oracle_picks_the_agreeing_candidate_wherever_it_is():
    judge = OracleDiscriminator()
    good = _t("red circle left")
    others = [_t("blue circle left"), _t("red square right"), _t("green star")]
    for pos in range(4):
        cands = [*others[:pos], good, *others[pos:]]
        chat = discriminator_messages(_t("red circle"), cands)
        assert judge.answer([chat]) == [str(pos + 1)]


def test_ties_are_broken_at_random_not_by_position():
    judge = OracleDiscriminator()
    picks = [
        judge.answer([discriminator_messages(f"garbage {i}", [_t("a"), _t("b"), _t("c")])])[0]
        for i in range(60)
    ]
    assert set(picks) == {"1", "2", "3"}  # no position bias for a query that states nothing
    again = judge.answer([discriminator_messages("garbage 0", [_t("a"), _t("b"), _t("c")])])
    assert again[0] == picks[0]  # deterministic per chat
    assert judge.answer([[{"role": "user", "content": [{"type": "text", "text": "?"}]}]]) == [
        "(unreadable question)"
    ]


def test_backend_choice_and_its_config_check():
    g = config_from_dict({"egrl": {"discriminator_backend": "oracle"}}).egrl
    assert isinstance(
        make_discriminator(g, None, dtype="float32", attn="sdpa"), OracleDiscriminator
    )
    with pytest.raises(ConfigError, match=r"needs data\.source: synthetic"):
        config_from_dict(
            {
                "egrl": {"discriminator_backend": "oracle"},
                "data": {"source": "real", "real": {"datasets": {"ImageNet_1K": {}}}},
            }
        )


class _Const:
    def embed_built(self, built):
        return torch.nn.functional.normalize(torch.ones(len(built), 4), dim=-1)


def _batch(q_texts, p_texts):
    """Two pairs, G rollouts per side: (completions, pair_id, side, item)."""
    comps, pid, side = [], [], []
    for p in ("p0", "p1"):
        for s, texts in (("qry", q_texts[p]), ("pos", p_texts[p])):
            comps += texts
            pid += [p] * len(texts)
            side += [s] * len(texts)
    item = [json.dumps({"modality": "image", "image": "/x.png"})] * len(comps)
    return comps, pid, side, item


def test_process_reward_goes_to_the_rollouts_that_state_their_input():
    # pair p0 is a red circle, p1 a blue square; the first query rollout of p0 is wrong
    q = {"p0": [_t("blue square"), _t("red circle")], "p1": [_t("blue square")] * 2}
    p = {"p0": [_t("red circle")] * 2, "p1": [_t("blue square")] * 2}
    comps, pid, side, item = _batch(q, p)
    scorer = EGRLScorer(_Const(), OracleDiscriminator(), hard_negatives=1)
    logged = {}
    out = ProcessReward(scorer)(
        [[]] * len(comps),
        comps,
        pair_id=pid,
        side=side,
        item=item,
        log_metric=lambda k, v: logged.setdefault(k, v),
    )
    # rows: p0 query, p0 positive, p1 query, p1 positive (2 rollouts each). The wrong p0 query
    # rollout picks p1's square (0), the right one its circles (1); p0's positives find their
    # circle and p1's queries their squares. (p1's positives tie with p0's wrong rollout.)
    assert out[:6] == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert logged["process/frac_zero_std"] == frac_zero_std(out, pid, side)
    assert logged["process/invalid_rate"] == 0.0
