"""Ranking speed and exactness: faiss vs numpy brute force, and an approximate index at 1M.

1. Exact: faiss ``IndexFlatIP`` (``ume.eval.retrieval.search``) vs a numpy brute force
   (full score matrix + argpartition) at 100k candidates x 1k queries, dim 64: the top-10
   lists must be identical and faiss not slower (goal: ratio numpy/faiss >= 1.0).
2. Approximate: IVF (``kind: ivf``, nlist = sqrt(N)) at 1M candidates x 1k queries: the
   smallest ``nprobe`` whose recall@10 against the exact top-10 is >= 0.95, and its speed-up
   over exact faiss search (goal >= 10x). Index build time is reported apart (paid once per
   corpus). The corpus is random unit vectors with cluster structure (2000 random centres,
   within-cluster spread 0.8, queries = corpus points + noise), as embeddings have;
   ``--uniform`` also measures structureless uniform vectors, where no inverted-file index
   can reach that recall cheaply in 64 dimensions (reported, not a goal).

    python benchmarks/retrieval.py [--out FILE] [--uniform] [--n-approx 1000000]

Prints one JSON line. Memory: about 1.5 GB at 1M x 64.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ume.eval.retrieval import IndexParams, brute_force_topk, build_index, search


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng, n: int, d: int, centres: int = 2000, spread: float = 0.8) -> np.ndarray:
    cent = unit(rng.normal(size=(centres, d)).astype(np.float32))
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 200_000):  # bounded temporaries
        e = min(n, s + 200_000)
        noise = rng.standard_normal((e - s, d), dtype=np.float32) * (spread / np.sqrt(d))
        out[s:e] = unit(cent[rng.integers(0, centres, e - s)] + noise)
    return out


def near(rng, corpus: np.ndarray, nq: int, noise: float = 0.3) -> np.ndarray:
    d = corpus.shape[1]
    pick = corpus[rng.choice(len(corpus), nq, replace=False)]
    return unit(pick + rng.standard_normal((nq, d), dtype=np.float32) * (noise / np.sqrt(d)))


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def recall_at(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact, strict=True)]))


def exact_vs_numpy(rng, n: int, nq: int, d: int) -> dict:
    c, q = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(nq, d)))
    search(q[:10], c, 10)  # warm-up (threads, BLAS)
    t_faiss, (_, i_faiss) = timed(lambda: search(q, c, 10), repeat=3)
    t_np, (_, i_np) = timed(lambda: brute_force_topk(q, c, 10), repeat=3)
    return {
        "candidates": n,
        "queries": nq,
        "dim": d,
        "top10_identical": bool(np.array_equal(i_faiss, i_np)),
        "faiss_s": round(t_faiss, 4),
        "numpy_s": round(t_np, 4),
        "numpy_over_faiss": round(t_np / t_faiss, 2),
    }


def approximate(rng, corpus: np.ndarray, queries: np.ndarray, label: str) -> dict:
    exact_index = build_index(corpus, IndexParams(kind="exact", gpu=False))
    t_exact, (_, i_exact) = timed(lambda: exact_index.search(queries, 10))
    params = IndexParams(kind="ivf", min_corpus=1, ivf_nlist=int(np.sqrt(len(corpus))), gpu=False)
    t_build, ivf = timed(lambda: build_index(corpus, params))
    sweep = []
    for nprobe in (4, 8, 16, 32, 64, 128):
        ivf.nprobe = nprobe
        t, (_, i) = timed(lambda ivf=ivf: ivf.search(queries, 10), repeat=2)
        sweep.append(
            {"nprobe": nprobe, "recall@10": round(recall_at(i, i_exact), 4),
             "s": round(t, 4), "speedup": round(t_exact / t, 1)}
        )  # fmt: skip
    ok = [s for s in sweep if s["recall@10"] >= 0.95]
    best = ok[0] if ok else max(sweep, key=lambda s: s["recall@10"])
    return {
        "data": label,
        "candidates": len(corpus),
        "queries": len(queries),
        "exact_s": round(t_exact, 3),
        "ivf_nlist": params.ivf_nlist,
        "ivf_build_s": round(t_build, 2),
        "chosen": best,
        "goal_met": bool(ok) and best["speedup"] >= 10,
        "sweep": sweep,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-exact", type=int, default=100_000)
    ap.add_argument("--n-approx", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--uniform", action="store_true", help="also the structureless case")
    ap.add_argument("--out")
    args = ap.parse_args()
    import faiss

    rng = np.random.default_rng(0)
    res = {"faiss": faiss.__version__, "threads": faiss.omp_get_max_threads()}
    res["exact"] = exact_vs_numpy(rng, args.n_exact, args.queries, args.dim)
    corpus = clustered(rng, args.n_approx, args.dim)
    res["approximate"] = approximate(rng, corpus, near(rng, corpus, args.queries), "clustered")
    if args.uniform:
        corpus = unit(rng.standard_normal((args.n_approx, args.dim), dtype=np.float32))
        q = unit(rng.standard_normal((args.queries, args.dim), dtype=np.float32))
        res["approximate_uniform"] = approximate(rng, corpus, q, "uniform")
    line = json.dumps(res)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
