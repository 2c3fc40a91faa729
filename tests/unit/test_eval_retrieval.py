"""Ranking: faiss against a numpy brute force, approximate indexes, local ranking and ties."""

from __future__ import annotations

import numpy as np
import pytest

from ume.eval.retrieval import (
    IndexParams,
    brute_force_topk,
    effective_kind,
    rank_local,
    search,
    tie_order,
)

pytestmark = pytest.mark.unit


def unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_topk(q, c, k):
    s = q @ c.T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, axis=1), idx


@pytest.mark.parametrize(("n", "d", "k"), [(1, 4, 1), (50, 8, 10), (2000, 32, 10), (7, 16, 20)])
def test_exact_search_equals_numpy(n, d, k):
    rng = np.random.default_rng(n)
    c, q = unit(rng, n, d), unit(rng, 13, d)
    s, idx = search(q, c, k)
    ns, nidx = numpy_topk(q, c, min(k, n))
    assert idx.shape == (13, min(k, n))  # k capped at the corpus size
    assert np.array_equal(idx, nidx)
    assert np.allclose(s, ns, atol=1e-5)
    bs, bidx = brute_force_topk(q, c, k)
    assert np.array_equal(bidx, nidx) and np.allclose(bs, ns, atol=1e-5)


def test_empty_inputs():
    s, idx = search(np.zeros((2, 4), np.float32), np.zeros((0, 4), np.float32), 5)
    assert s.shape == (2, 0) and idx.shape == (2, 0)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall(kind):
    rng = np.random.default_rng(0)
    # clustered data, like embeddings: 100 centres, 5000 points
    centres = unit(rng, 100, 16)
    c = centres[rng.integers(0, 100, 5000)] + 0.2 * rng.normal(size=(5000, 16)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    q = c[:200] + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)
    p = IndexParams(kind=kind, min_corpus=1000, ivf_nprobe=16, hnsw_ef_search=64)
    assert effective_kind(len(c), p) == kind
    _, approx = search(q, c, 10, p)
    _, exact = search(q, c, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.9


def test_small_corpora_stay_exact():
    p = IndexParams(kind="hnsw", min_corpus=1000)
    assert effective_kind(999, p) == "exact" and effective_kind(1000, p) == "hnsw"
    with pytest.raises(ValueError, match="index kind"):
        effective_kind(10, IndexParams(kind="lsh"))


def test_index_params_from_config():
    from ume.config import EvalIndexConfig

    p = IndexParams.from_config(EvalIndexConfig(kind="ivf", ivf_nprobe=4))
    assert p.kind == "ivf" and p.ivf_nprobe == 4


def test_rank_local_matches_numpy_per_query():
    rng = np.random.default_rng(1)
    c, q = unit(rng, 30, 8), unit(rng, 4, 8)
    lists = [np.array([0, 5, 9]), np.arange(30), np.array([29]), np.array([3, 2, 1, 0])]
    out = rank_local(q, c, lists, k=None)
    for i, (rows, s) in enumerate(out):
        expect = lists[i][np.argsort(-(c[lists[i]] @ q[i]), kind="stable")]
        assert np.array_equal(rows, expect)
        assert np.all(np.diff(s) <= 0)
    top2 = rank_local(q, c, lists, k=2)
    assert [len(r) for r, _ in top2] == [2, 2, 1, 2]


def test_ties_are_not_broken_by_position():
    """An Embedder that cannot tell candidates apart must not get the positive (index 0) first."""
    ids = [f"cand-{i}" for i in range(50)]
    c = np.tile(np.array([[1.0, 0.0]], np.float32), (50, 1))  # all candidates identical
    q = np.array([[1.0, 0.0]], np.float32)
    tb = tie_order(ids)
    rows, _ = rank_local(q, c, [np.arange(50)], k=None, tiebreak=tb)[0]
    assert np.array_equal(rows, np.argsort(tb, kind="stable"))  # the ids' fixed order
    assert rows[0] != 0  # the positive of an MMEB list is not favoured
    assert np.array_equal(tie_order(ids), tb)
