"""Ranking metrics against hand-computed tables, including graded relevance."""

from __future__ import annotations

import math

import pytest

from ume.eval.metrics import compute_metrics, main_score, per_query_metrics, score_task
from ume.suites.registry import get_task

pytestmark = pytest.mark.unit

L2 = math.log2


def approx(x):
    return pytest.approx(x, abs=1e-12)


# q1: one relevant item at rank 2.   q2: graded, x(2) at rank 1, z(1) at rank 3, w(1) absent.
RANKINGS = {"q1": ["a", "b", "c", "d", "e", "f"], "q2": ["x", "y", "z", "v"]}
QRELS = {"q1": {"b": 1}, "q2": {"x": 2, "z": 1, "w": 1}}

IDCG_Q2 = 2 + 1 / L2(3) + 1 / L2(4)
IDCG_EXP_Q2 = 3 + 1 / L2(3) + 1 / L2(4)
# per query, hand-computed
Q1 = {
    "hit@1": 0,
    "hit@5": 1,
    "precision@1": 0,
    "precision@5": 1 / 5,
    "recall@5": 1,
    "ndcg_linear@1": 0,
    "ndcg_linear@5": 1 / L2(3),
    "ndcg_exponential@5": 1 / L2(3),
    "map@5": 1 / 2,
    "mrr@1": 0,
    "mrr@5": 1 / 2,
    "f1@5": 2 * 0.2 * 1 / 1.2,
}
Q2 = {
    "hit@1": 1,
    "hit@5": 1,
    "precision@1": 1,
    "precision@5": 2 / 5,
    "recall@5": 2 / 3,
    "ndcg_linear@1": 1,  # 2/1 over ideal 2/1
    "ndcg_linear@5": (2 + 1 / L2(4)) / IDCG_Q2,
    "ndcg_exponential@5": (3 + 1 / L2(4)) / IDCG_EXP_Q2,
    "map@5": (1 / 1 + 2 / 3) / 3,
    "mrr@1": 1,
    "mrr@5": 1,
    "f1@5": 2 * 0.4 * (2 / 3) / (0.4 + 2 / 3),
}


def test_hand_computed_table():
    m = compute_metrics(RANKINGS, QRELS, ks=(1, 5, 10))
    for key in Q1:
        assert m[key] == approx((Q1[key] + Q2[key]) / 2), key
    assert m["num_pred"] == 2 and m["num_data"] == 2
    assert "scorer_compatible" not in m
    # at k=10 nothing new enters
    assert m["hit@10"] == approx(1.0)
    assert m["precision@10"] == approx((1 / 10 + 2 / 10) / 2)


def test_per_query_values():
    pq = per_query_metrics(RANKINGS, QRELS, ks=(1, 5))
    # 2.5 / 3.1309 and 1 / 1.585, to 5 decimals by hand
    assert pq["q2"]["ndcg_linear@5"] == pytest.approx(0.79848, abs=1e-5)
    assert pq["q1"]["ndcg_linear@5"] == pytest.approx(0.63093, abs=1e-5)


def test_metric_keys_match_leaderboard_format():
    m = compute_metrics(RANKINGS, QRELS)
    expected = {
        f"{n}@{k}"
        for n in (
            "hit",
            "ndcg_linear",
            "ndcg_exponential",
            "precision",
            "recall",
            "f1",
            "map",
            "mrr",
        )
        for k in (1, 5, 10)
    } | {"num_pred", "num_data"}
    assert set(m) == expected


def test_scorer_defect_changes_graded_ndcg():
    # The scorer sends [x, z, w] through a set; suppose it comes back as [z, x, w]: grades
    # [2, 1, 1] are then paired z->2, x->1, w->1.
    swap = lambda ids: [ids[1], ids[0], *ids[2:]]  # noqa: E731
    bad = compute_metrics(
        {"q2": RANKINGS["q2"]},
        {"q2": QRELS["q2"]},
        ks=(5,),
        scorer_compatible=True,
        scorer_label_order=swap,
    )
    # DCG = 1/log2(2) [x now 1] + 2/log2(4) [z now 2] = 2; ideal unchanged
    assert bad["ndcg_linear@5"] == approx(2 / IDCG_Q2)
    assert bad["scorer_compatible"] is True
    good = compute_metrics({"q2": RANKINGS["q2"]}, {"q2": QRELS["q2"]}, ks=(5,))
    assert good["ndcg_linear@5"] == approx(Q2["ndcg_linear@5"])
    assert bad["ndcg_linear@5"] < good["ndcg_linear@5"]
    # binary-only metrics are unaffected by the reordering
    for k in ("hit@5", "precision@5", "recall@5", "map@5", "mrr@5"):
        assert bad[k] == approx(good[k])


def test_scorer_compatible_default_uses_python_set():
    qrels = {"q": {"x": 2, "z": 1, "w": 1}}
    m = compute_metrics({"q": ["x", "y", "z"]}, qrels, ks=(5,), scorer_compatible=True)
    order = list(set(["x", "z", "w"]))  # same process, same string hashing
    rels = dict(zip(order, [2.0, 1.0, 1.0], strict=True))
    dcg = rels.get("x", 0) + rels.get("z", 0) / L2(4)
    assert m["ndcg_linear@5"] == approx(dcg / IDCG_Q2)


def test_scorer_compatible_equals_correct_for_binary():
    rankings = {"a": ["1", "2", "3"], "b": ["4", "5", "6"], "c": ["9"]}
    qrels = {"a": {"2": 1, "3": 1}, "b": {"9": 1}, "c": {"9": 1}}
    good = compute_metrics(rankings, qrels)
    bad = compute_metrics(rankings, qrels, scorer_compatible=True)
    for k, v in good.items():
        assert bad[k] == approx(v), k


def test_uvrb_hit_style_recall():
    rankings = {"q": ["n1", "p1", "n2"]}
    qrels = {"q": {"p1": 1, "p2": 1}}
    frac = compute_metrics(rankings, qrels, ks=(1, 5))
    hit = compute_metrics(rankings, qrels, ks=(1, 5), recall_style="hit")
    assert frac["recall@5"] == approx(0.5)
    assert hit["recall@5"] == approx(1.0) and hit["recall@1"] == approx(0.0)
    assert hit["recall_style"] == "hit"
    spec = get_task("uvrb", "CMRB")
    m = score_task(spec, rankings, qrels, ks=(1,))
    assert main_score(spec, m) == approx(1.0)  # recall@10, hit-style


def test_missing_and_degenerate_queries():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    m = compute_metrics({"q1": ["a"], "zz": ["a"]}, qrels, ks=(1,))
    # q2 unanswered scores 0; q3 has no relevant item and is left out of the means
    assert m["hit@1"] == approx(0.5)
    assert m["num_pred"] == 1 and m["num_data"] == 3 and m["num_no_relevant"] == 1


def test_duplicates_count_once():
    m = compute_metrics({"q": ["a", "a", "b"]}, {"q": {"a": 1, "b": 1}}, ks=(2,))
    assert m["precision@2"] == approx(1.0) and m["recall@2"] == approx(1.0)


def test_bad_inputs():
    with pytest.raises(ValueError):
        compute_metrics({}, {}, ks=(0,))
    with pytest.raises(ValueError):
        compute_metrics({}, {}, recall_style="nope")
    with pytest.raises(Exception, match="main metric"):
        main_score(get_task("mmeb", "ImageNet-1K"), {"hit@5": 1.0})


# --------------------------------------------------------------------------- chance
@pytest.mark.parametrize(
    ("metric", "n", "grades", "style"),
    [
        ("hit@1", 5, [1], "fraction"),
        ("hit@3", 6, [1, 1], "fraction"),
        ("recall@1", 6, [1, 1], "hit"),
        ("recall@3", 6, [1, 1, 1], "fraction"),
        ("precision@1", 5, [1, 1], "hit"),
        ("precision@8", 5, [1, 1], "fraction"),  # k beyond the candidates
        ("ndcg_linear@5", 6, [2, 1], "fraction"),
        ("ndcg_exponential@3", 5, [2, 1, 1], "fraction"),
        ("mrr@4", 6, [1, 1], "fraction"),
    ],
)
def test_chance_equals_the_mean_over_every_ranking(metric, n, grades, style):
    """The closed forms against the exact mean over all n! rankings (small n)."""
    import itertools

    from ume.eval.metrics import random_ranking_score

    ids = [str(i) for i in range(n)]
    qrels = {"q": {ids[i]: float(g) for i, g in enumerate(grades)}}
    k = int(metric.split("@")[1])
    vals = [
        compute_metrics({"q": list(p)}, qrels, ks=(k,), recall_style=style)[metric]
        for p in itertools.permutations(ids)
    ]
    expected = sum(vals) / len(vals)
    assert random_ranking_score(metric, n, grades, recall_style=style) == pytest.approx(expected)


def test_chance_of_a_task_local_and_global():
    from ume.eval.metrics import chance_score, random_ranking_score

    spec = get_task("mmeb", "MSCOCO_i2t")  # hit@1, local ranking
    qrels = {"a": {"x": 1.0}, "b": {"y": 1.0}, "c": {}}  # c has no relevant item: left out
    cands = {"a": ["x", "z"], "b": ["y", "z", "w", "v"], "c": ["z"]}
    assert chance_score(spec, qrels, cands) == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert chance_score(spec, qrels, 10) == pytest.approx(0.1)  # global: corpus of 10
    assert random_ranking_score("map@5", 10, [1]) is None  # no closed form: not guessed
