"""A quick retrieval probe on held-out pairs: does the Embedder find each query's positive?

For every dataset of a pair table, each query is ranked against the positives of all pairs of
that dataset (top-1). A retrieved candidate counts as correct when its content equals the gold
positive (identical class labels or answers are the same candidate), and the chance level is
computed the same way: the expected top-1 hit rate of a random ranking.

Used by the integration tests and ``benchmarks/contrastive_ablation.py``; the benchmark suites
(MMEB-V2, UVRB, synthetic) are evaluated by :mod:`ume.eval`.
"""

from __future__ import annotations

from typing import Any

import torch

from ume.items import Item


def annotated_synthetic_pairs(cfg, media_root, synthetic=None):
    """The synthetic training pairs of ``synthetic`` (default ``cfg.data.synthetic``) with
    oracle T-CoTs (``cfg.annotate.oracle``), the split's excluded datasets left out: what
    the data stages give the embedded default, without the filter and the RL hold-out."""
    from ume.annotate.backends import OracleAnnotator
    from ume.data.synthetic_pairs import write_training_pairs

    df = write_training_pairs(synthetic or cfg.data.synthetic, media_root)
    recs = df.to_dict("records")
    items = [Item.from_row(r, "qry") for r in recs] + [Item.from_row(r, "pos") for r in recs]
    roles = ["query"] * len(recs) + ["candidate"] * len(recs)
    tcots = OracleAnnotator(cfg.annotate.oracle).tcot(items, roles)
    df = df.assign(qry_tcot=tcots[: len(recs)], pos_tcot=tcots[len(recs) :])
    return df[~df["dataset"].isin(cfg.split.exclude_from_contrastive)].reset_index(drop=True)


def _tcot(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def pair_retrieval(embedder, df, *, mode: str = "full", batch_size: int = 16) -> dict[str, Any]:
    """``{"accuracy", "chance", "queries", "per_dataset": {name: {accuracy, chance, n}}}``."""
    recs = df.to_dict("records")
    qry = [Item.from_row(r, "qry") for r in recs]
    pos = [Item.from_row(r, "pos") for r in recs]
    need = mode != "raw"
    qt = [_tcot(r.get("qry_tcot")) if need else None for r in recs]
    pt = [_tcot(r.get("pos_tcot")) if need else None for r in recs]
    zq = embedder.encode(qry, qt, mode=mode, batch_size=batch_size)  # [N, D]
    zp = embedder.encode(pos, pt, mode=mode, batch_size=batch_size)  # [N, D]
    per: dict[str, dict[str, float]] = {}
    hits = chance = 0.0
    datasets = [r["dataset"] for r in recs]
    for name in sorted(set(datasets)):
        idx = [i for i, d in enumerate(datasets) if d == name]
        sim = zq[idx] @ zp[idx].T  # [n, n]
        top = sim.argmax(dim=1).tolist()
        same = torch.tensor([[pos[i] == pos[j] for j in idx] for i in idx])  # [n, n] bool
        h = sum(bool(same[k, top[k]]) for k in range(len(idx)))
        c = float(same.float().mean(dim=1).sum())
        per[name] = {"accuracy": h / len(idx), "chance": c / len(idx), "n": len(idx)}
        hits += h
        chance += c
    n = len(recs)
    return {"accuracy": hits / n, "chance": chance / n, "queries": n, "per_dataset": per}
