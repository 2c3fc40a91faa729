"""Ranking metrics for MMEB-V2 and UVRB, with graded relevance handled correctly.

Input: ``rankings`` ``{query_id: [candidate ids, best first]}`` and ``qrels``
``{query_id: {candidate_id: grade}}``. Output of :func:`compute_metrics`: a flat dict with
``hit@k``, ``precision@k``, ``recall@k``, ``f1@k``, ``ndcg_linear@k``,
``ndcg_exponential@k``, ``map@k``, ``mrr@k`` for each ``k`` (the keys of the MMEB
leaderboard's ``{task}_score.json``), plus ``num_pred`` and ``num_data``.

Definitions (correct mode, the default), per query, with ``R`` the items of grade > 0 and
ranks counted from 1:

- ``hit@k`` = 1 if any item of ``R`` is in the top k;
- ``precision@k`` = |R ∩ top k| / k;  ``recall@k`` = |R ∩ top k| / |R|
  (``recall_style="hit"``: UVRB's R@k, 1 if any item of R is in the top k);
- ``ndcg_linear@k`` = DCG/IDCG with gain ``grade / log2(rank + 1)``; IDCG from the grades
  sorted descending (top k); ``ndcg_exponential@k`` the same with gain ``2**grade - 1``;
- ``map@k`` = sum of precision@i at each relevant rank i <= k, divided by min(|R|, k)
  (the benchmark scorer's normalisation); ``mrr@k`` = 1 / rank of the first relevant item.

Queries in ``qrels`` without a ranking score 0 (``num_pred`` < ``num_data`` shows it);
queries with no item of grade > 0 are left out of the means and counted in
``num_no_relevant``; rankings for queries absent from ``qrels`` are ignored.
Duplicate ids in a ranking count once (first occurrence).

``scorer_compatible=True`` reproduces VLM2Vec's ``RankingMetrics.evaluate`` including its
defect: the query's relevant ids go through ``list(set(ids))`` (which reorders them) and
are then zipped with the grades in their original order, so grades can land on the wrong
items and NDCG changes when a query's relevant items carry different grades. Like the
original, its result then depends on Python's string hashing (``PYTHONHASHSEED``). Its other
conventions are kept too (every qrels entry counts as a label, whatever its grade; a query
with no labels scores recall 1 and 0 elsewhere). The output carries
``"scorer_compatible": True`` so it is never mistaken for the correct numbers.

>>> m = compute_metrics({"q": ["a", "b"]}, {"q": {"b": 1}}, ks=(1, 5))
>>> m["hit@1"], m["hit@5"], round(m["ndcg_linear@5"], 4)
(0.0, 1.0, 0.6309)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ume.errors import DataError

DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
METRIC_NAMES: tuple[str, ...] = (
    "hit",
    "ndcg_linear",
    "ndcg_exponential",
    "precision",
    "recall",
    "f1",
    "map",
    "mrr",
)

LabelOrder = Callable[[list[str]], list[str]]


def _python_set_order(ids: list[str]) -> list[str]:
    """The benchmark scorer's ``list(set(ids))``."""
    return list(set(ids))


def _dedupe(ranking: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for c in ranking:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def _dcg(gains: Sequence[float], exponential: bool) -> float:
    return sum(
        ((2.0**g - 1.0) if exponential else g) / math.log2(i + 2) for i, g in enumerate(gains)
    )


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(sorted(set(ks)))
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks!r}")
    return ks


def _query_correct(
    ranking: list[str], grades: Mapping[str, float], ks: tuple[int, ...], recall_style: str
) -> dict[str, float]:
    rel = {c: float(g) for c, g in grades.items() if float(g) > 0}
    ideal = sorted(rel.values(), reverse=True)
    out: dict[str, float] = {}
    for k in ks:
        top = ranking[:k]
        hit_ranks = [i for i, c in enumerate(top, start=1) if c in rel]
        n_hit = len(hit_ranks)
        hit = 1.0 if n_hit else 0.0
        prec = n_hit / k
        rec = hit if recall_style == "hit" else n_hit / len(rel)
        gains = [rel.get(c, 0.0) for c in top]
        out[f"hit@{k}"] = hit
        out[f"precision@{k}"] = prec
        out[f"recall@{k}"] = rec
        out[f"f1@{k}"] = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        for form, expo in (("linear", False), ("exponential", True)):
            idcg = _dcg(ideal[:k], expo)
            out[f"ndcg_{form}@{k}"] = _dcg(gains, expo) / idcg if idcg > 0 else 0.0
        out[f"map@{k}"] = sum((j + 1) / r for j, r in enumerate(hit_ranks)) / min(len(rel), k)
        out[f"mrr@{k}"] = 1.0 / hit_ranks[0] if hit_ranks else 0.0
    return out


def _query_scorer_compatible(
    ranking: list[str],
    grades: Mapping[str, float],
    ks: tuple[int, ...],
    recall_style: str,
    label_order: LabelOrder,
) -> dict[str, float]:
    """VLM2Vec ``RankingMetrics.evaluate`` for one query, defect included."""
    labels_in = [str(c) for c in grades]
    rel_scores = [float(g) for g in grades.values()]
    labels = label_order(labels_in)  # the scorer's list(set(labels)): reordered
    label_set = set(labels)
    out: dict[str, float] = {}
    for k in ks:
        top = ranking[:k]
        n_hit = len(set(top) & label_set)
        hit = 1.0 if (labels and n_hit) else 0.0
        prec = n_hit / k if labels else 0.0
        rec_frac = n_hit / len(labels) if labels else 1.0
        rec = hit if recall_style == "hit" else rec_frac
        out[f"hit@{k}"] = hit
        out[f"precision@{k}"] = prec
        out[f"recall@{k}"] = rec
        out[f"f1@{k}"] = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
        # the defect: reordered ids zipped with grades in their original order
        label_rels = dict(zip(labels, rel_scores, strict=False))
        relevance = [label_rels.get(c, 0.0) for c in top]
        ideal = sorted(label_rels.values(), reverse=True)[:k]
        for form, expo in (("linear", False), ("exponential", True)):
            idcg = _dcg(ideal, expo) if ideal else 1.0
            out[f"ndcg_{form}@{k}"] = _dcg(relevance, expo) / idcg if idcg > 0 else 0.0
        score, n = 0.0, 0
        first = 0.0
        for i, c in enumerate(top):
            if c in label_set:
                n += 1
                score += n / (i + 1.0)
                if n == 1:
                    first = 1.0 / (i + 1)
        out[f"map@{k}"] = score / min(len(labels), k) if (labels and n) else 0.0
        out[f"mrr@{k}"] = first if labels else 0.0
    return out


def per_query_metrics(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    scorer_compatible: bool = False,
    recall_style: str = "fraction",
    scorer_label_order: LabelOrder | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics for each scored query (``qid -> {metric@k: value}``); see module doc."""
    if recall_style not in ("fraction", "hit"):
        raise ValueError(f"recall_style must be 'fraction' or 'hit', got {recall_style!r}")
    ks = _check_ks(ks)
    order = scorer_label_order or _python_set_order
    out: dict[str, dict[str, float]] = {}
    for qid, grades in qrels.items():
        if not isinstance(grades, Mapping):
            raise DataError(
                f"qrels[{qid!r}] must map candidate id -> grade, got {type(grades).__name__}"
            )
        ranking = _dedupe([str(c) for c in rankings.get(qid, ())])
        if scorer_compatible:
            out[qid] = _query_scorer_compatible(ranking, grades, ks, recall_style, order)
        elif any(float(g) > 0 for g in grades.values()):
            out[qid] = _query_correct(ranking, grades, ks, recall_style)
    return out


def metric_keys(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """Metric keys in the leaderboard's order (hit, ndcg_linear, ..., per k)."""
    ks = _check_ks(ks)
    return [f"{m}@{k}" for m in METRIC_NAMES for k in ks]


def compute_metrics(
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    scorer_compatible: bool = False,
    recall_style: str = "fraction",
    scorer_label_order: LabelOrder | None = None,
) -> dict[str, Any]:
    """Mean metrics over the queries of ``qrels``; see the module doc for definitions.

    ``scorer_label_order`` (scorer-compatible mode only) replaces the ``list(set(ids))``
    reordering, e.g. to pin the permutation in a test.
    """
    per_q = per_query_metrics(
        rankings,
        qrels,
        ks,
        scorer_compatible=scorer_compatible,
        recall_style=recall_style,
        scorer_label_order=scorer_label_order,
    )
    keys = metric_keys(ks)
    n = len(per_q)
    out: dict[str, Any] = {k: (sum(q[k] for q in per_q.values()) / n if n else 0.0) for k in keys}
    out["num_pred"] = sum(1 for q in qrels if q in rankings)
    out["num_data"] = len(qrels)
    if not scorer_compatible and n < len(qrels):
        out["num_no_relevant"] = len(qrels) - n
    if recall_style == "hit":
        out["recall_style"] = "hit"
    if scorer_compatible:
        out["scorer_compatible"] = True
    return out


def score_task(
    spec,
    rankings: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    scorer_compatible: bool = False,
) -> dict[str, Any]:
    """:func:`compute_metrics` with the task's recall style; ``ks`` widened to cover its metric."""
    k_main = int(spec.metric.split("@")[1])
    return compute_metrics(
        rankings,
        qrels,
        tuple(set(ks) | {k_main}),
        scorer_compatible=scorer_compatible,
        recall_style=spec.recall_style,
    )


def main_score(spec, metrics: Mapping[str, float]) -> float:
    """The task's main metric from a metrics dict (raises DataError if absent)."""
    try:
        return float(metrics[spec.metric])
    except KeyError:
        raise DataError(
            f"metrics for task {spec.name!r} lack its main metric {spec.metric!r}; "
            f"have {sorted(metrics)}"
        ) from None


# --------------------------------------------------------------------------- chance
def random_ranking_score(
    metric: str, n: int, grades: Sequence[float], *, recall_style: str = "fraction"
) -> float | None:
    """Expected ``metric`` (``name@k``) of one query whose ``n`` candidates are ranked
    uniformly at random; ``grades`` are those of its relevant candidates (grade > 0) among
    them. None for a query without relevant candidates (left out of means, as in scoring)
    and for metrics without a closed form here (``map``, ``f1``).

    Exact, by linearity of expectation: each rank holds a relevant candidate with
    probability ``r / n``; the top k miss all of them with probability C(n-r, k) / C(n, k).

    >>> random_ranking_score("hit@1", 8, [1.0])
    0.125
    >>> round(random_ranking_score("ndcg_linear@5", 32, [2.0, 1.0]), 4)
    0.1051
    """
    name, _, k_txt = metric.partition("@")
    k = int(k_txt)
    grades = [float(g) for g in grades if float(g) > 0]
    r = len(grades)
    if r == 0 or n <= 0:
        return None
    r = min(r, n)
    k_eff = min(k, n)
    hit = 1.0 - math.comb(n - r, k_eff) / math.comb(n, k_eff)
    if name == "hit" or (name == "recall" and recall_style == "hit"):
        return hit
    if name == "precision":
        return k_eff * r / n / k
    if name == "recall":
        return k_eff / n
    if name in ("ndcg_linear", "ndcg_exponential"):
        expo = name == "ndcg_exponential"
        gains = [(2.0**g - 1.0) if expo else g for g in grades]
        mean_gain = sum(gains) / n
        idcg = _dcg(sorted(grades, reverse=True)[:k], expo)
        return sum(mean_gain / math.log2(i + 2) for i in range(k_eff)) / idcg
    if name == "mrr":  # P(first relevant at rank j) = C(n-j, r-1) / C(n, r)
        return sum(math.comb(n - j, r - 1) / math.comb(n, r) / j for j in range(1, k_eff + 1))
    return None


def chance_score(
    spec,
    qrels: Mapping[str, Mapping[str, float]],
    candidates: Mapping[str, Sequence[str]] | int,
) -> float | None:
    """Expected main metric of ``spec`` under a uniformly random ranking: the mean over the
    queries with a relevant candidate of :func:`random_ranking_score`. ``candidates``: each
    query's candidate ids (local ranking) or the corpus size (global ranking)."""
    vals = []
    for qid, grades in qrels.items():
        if isinstance(candidates, int):
            n, rel = candidates, list(grades.values())
        else:
            cands = set(candidates.get(qid, ()))
            n, rel = len(cands), [g for c, g in grades.items() if c in cands]
        v = random_ranking_score(spec.metric, n, rel, recall_style=spec.recall_style)
        if v is not None:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None
