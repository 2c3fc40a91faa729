"""Ranking by inner product of unit-norm embeddings (= cosine), with faiss.

* **global** ranking (each query against the whole candidate set): :func:`search` builds a
  faiss index -- exact (``IndexFlatIP``) by default; for large corpora an approximate one
  (``ivf``: ``IndexIVFFlat``, ``hnsw``: ``IndexHNSWFlat``) once the corpus reaches
  ``min_corpus`` -- on the GPU when faiss has one (``gpu=True``; flat and IVF indexes);
* **local** ranking (each query against its own candidate list, MMEB image/QA tasks):
  :func:`rank_local`, a small matrix product per query.

In local ranking, ties are broken by a fixed pseudo-random order of the candidate ids, never
by position: MMEB puts the positive first in every candidate list, so a position tie-break
would reward an Embedder that cannot tell candidates apart. In global ranking faiss breaks
exact ties by corpus index (corpora are not ordered by relevance).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> c = rng.normal(size=(100, 8)).astype("float32"); q = c[:3] + 0.01
>>> search(q, c, 1)[1][:, 0].tolist()
[0, 1, 2]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class IndexParams:
    kind: str = "exact"  # "exact" | "ivf" | "hnsw"
    min_corpus: int = 100_000  # approximate kinds only from this corpus size on
    ivf_nlist: int | None = None  # None: about sqrt(N)
    ivf_nprobe: int = 32
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    gpu: bool = True  # use faiss GPUs when present

    @classmethod
    def from_config(cls, cfg) -> IndexParams:
        return cls(**{k: getattr(cfg, k) for k in cls.__dataclass_fields__})


def _faiss():
    import faiss

    return faiss


def num_gpus() -> int:
    faiss = _faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def effective_kind(n: int, params: IndexParams) -> str:
    """The index kind used for a corpus of ``n`` vectors (exact below ``min_corpus``)."""
    if params.kind not in ("exact", "ivf", "hnsw"):
        raise ValueError(f"index kind must be exact, ivf or hnsw, got {params.kind!r}")
    return params.kind if params.kind != "exact" and n >= params.min_corpus else "exact"


def build_index(corpus: np.ndarray, params: IndexParams | None = None):
    """A faiss inner-product index over ``corpus`` [N, D] (see module doc)."""
    faiss = _faiss()
    params = params or IndexParams()
    corpus = _as_f32(corpus)
    n, d = corpus.shape
    kind = effective_kind(n, params)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction
        index.hnsw.efSearch = params.hnsw_ef_search
        index.add(corpus)
        return index  # HNSW has no GPU version
    if kind == "ivf":
        nlist = min(n, params.ivf_nlist or max(1, int(math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        # train on a sample: k-means over 1M vectors is needless; ~64 points per list suffice
        rng = np.random.default_rng(0)
        sample = corpus[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(sample)
        index.add(corpus)
        index.nprobe = min(params.ivf_nprobe, nlist)
    else:
        index = faiss.IndexFlatIP(d)
        index.add(corpus)
    if params.gpu and num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    return index


def search(
    queries: np.ndarray, corpus: np.ndarray, k: int, params: IndexParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(scores [Q, k], indices [Q, k])`` of each query in ``corpus``, best first.

    ``k`` is capped at the corpus size.
    """
    queries, corpus = _as_f32(queries), _as_f32(corpus)
    if corpus.shape[0] == 0 or queries.shape[0] == 0:
        return np.zeros((queries.shape[0], 0), np.float32), np.zeros((queries.shape[0], 0), int)
    k = min(k, corpus.shape[0])
    index = build_index(corpus, params)
    scores, idx = index.search(queries, k)
    return scores, idx


def brute_force_topk(
    queries: np.ndarray, corpus: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference of :func:`search` (exact): full score matrix, argpartition."""
    s = _as_f32(queries) @ _as_f32(corpus).T  # [Q, N]
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    ps = np.take_along_axis(s, part, axis=1)
    order = np.argsort(-ps, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(s, idx, axis=1), idx


def tie_order(ids: Sequence[str]) -> np.ndarray:
    """A fixed pseudo-random rank per id (the tie-break of :func:`rank_local`)."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(c).encode(), digest_size=8).digest(), "big")
            for c in ids
        ],
        dtype=np.uint64,
    )


def rank_local(
    queries: np.ndarray,
    candidates: np.ndarray,
    lists: Sequence[np.ndarray],
    k: int | None,
    tiebreak: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each query ``i`` against the candidate rows ``lists[i]``: ``(rows, scores)`` best first.

    ``queries`` [Q, D], ``candidates`` [N, D]; ``tiebreak`` [N] orders equal scores
    (default: row order); ``k`` keeps the top k (None: all).
    """
    queries, candidates = _as_f32(queries), _as_f32(candidates)
    out = []
    for i, rows in enumerate(lists):
        rows = np.asarray(rows, dtype=np.int64)
        s = candidates[rows] @ queries[i]  # [len(rows)]
        tb = tiebreak[rows] if tiebreak is not None else np.arange(len(rows))
        order = np.lexsort((tb, -s))  # by score desc, then tie-break
        if k is not None:
            order = order[:k]
        out.append((rows[order], s[order]))
    return out
