"""The synthetic visual-document task in the ``beir`` layout: two-page reports of
``key: value`` facts, near-duplicate reports as distractors, graded relevance."""

from __future__ import annotations

from pathlib import Path

from ume.config import SyntheticConfig
from ume.io import write_parquet
from ume.suites.base import task_dir
from ume.suites.synth.common import TABLE, write_sidecar
from ume.suites.synth.content import (
    doc_pages,
    doc_reports,
    ground_truth,
    task_rng,
)


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _write_visdoc(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """BEIR layout; each report has a page with the facts (grade 2) and a second page
    (grade 1); near-duplicate reports share two of colour / shape / count."""
    import pandas as pd

    rng, size = task_rng(cfg, name), cfg.doc_size
    folder = task_dir("beir", name, root)
    n_reports = max(1, cfg.eval_corpus // 2)
    reports = doc_reports(rng, n_reports)
    corpus, candidate_gt = [], {}
    for i, r in enumerate(reports):
        for p, (img, boxes, title, lines) in enumerate(doc_pages(r, i, size), start=1):
            cid = f"report{i:03d}_p{p}"
            corpus.append(
                {"corpus-id": cid, "image": {"bytes": _png_bytes(img), "path": f"{cid}.png"}}
            )
            facts = [1, 2, 3] if p == 1 else [2]
            candidate_gt[cid] = ground_truth(
                [boxes[k] for k in facts],
                None,
                [r["color"], r["shape"], str(r["count"])] if p == 1 else [r["color"], r["shape"]],
                f"{title}: " + "; ".join(lines),
            )
    targets = [int(i) for i in rng.permutation(n_reports)]
    queries, qrels, query_gt = [], [], {}
    for q in range(cfg.eval_queries):
        i = targets[q % n_reports]
        r = reports[i]
        qid = f"q{q:03d}"
        text = (
            f"Which report counts {r['count']} {r['color']} {r['shape']}s?"
            if q < n_reports
            else f"How many {r['color']} {r['shape']}s does the report with count {r['count']} list?"
        )
        queries.append({"query-id": qid, "query": text, "language": "english"})
        qrels += [
            {"query-id": qid, "corpus-id": f"report{i:03d}_p1", "score": 2},
            {"query-id": qid, "corpus-id": f"report{i:03d}_p2", "score": 1},
        ]
        query_gt[qid] = ground_truth(None, None, [r["color"], r["shape"], str(r["count"])], text)
    write_parquet(folder / "corpus" / TABLE, pd.DataFrame(corpus, columns=["corpus-id", "image"]))
    write_parquet(
        folder / "queries" / TABLE, pd.DataFrame(queries, columns=["query-id", "query", "language"])
    )
    write_parquet(
        folder / "qrels" / TABLE, pd.DataFrame(qrels, columns=["query-id", "corpus-id", "score"])
    )
    write_sidecar(folder, query_gt, candidate_gt)
