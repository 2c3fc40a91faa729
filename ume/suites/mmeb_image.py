"""The ``mmeb_image`` layout: MMEB-V2's image tasks.

As a user has them (VLM2Vec ``dataset_hflocal_path.py``): the local snapshot of HF
``ziyjiang/MMEB_Test_Instruct`` as subsets of the annotation root,
``<annotation root>/<Task>/test-*.parquet``, with columns ``qry_inst, qry_text,
qry_img_path, tgt_inst, tgt_text (list), tgt_img_path (list)``; image paths are relative to
the image root. Both roots default to ``<mmeb_root>/image-tasks`` (the MMEB-V2 clone with
``mmeb_v1.tar.gz`` unpacked there); ``eval.mmeb_image_annotations`` / ``eval.mmeb_image_root``
move them apart. (A synthetic task keeps its table in ``MMEB_Test_Instruct/<Task>/``, the
kept-apart case.) Local ranking;
the positive is candidate 0. ``<|image_N|>`` markers are removed from instructions and
texts (the embedder inserts its own image token). Candidate id (as VLM2Vec's
``cand_names``): ``img_path + ":" + text`` when both are set (grounding-style tasks:
several objects share an image), else the image path, else the text.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ume.items import Item
from ume.suites.base import (
    EvalTask,
    TaskFiles,
    _as_list,
    _Ctx,
    _ItemError,
    _missing,
    _text,
    read_table,
)

_MARKER = re.compile(r"<\|image_\d+\|>")


def clean_text(s: Any) -> str:
    """Remove ``<|image_N|>`` markers and surrounding blank space."""
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return ""
    return _MARKER.sub("", str(s)).strip()


def candidate_id(img_path: str, text: str) -> str:
    """MMEB image-task candidate id: ``img_path:text`` (text without quotes), or either alone."""
    text = (text or "").strip().strip('"')
    if img_path and text:
        return f"{img_path}:{text}"
    return img_path or text


# --------------------------------------------------------------------------- MMEB image
IMAGE_COLUMNS = ("qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text", "tgt_img_path")


def _load_mmeb_image(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    name = files.name
    tables = files.tables()
    image_root = files.media
    for _, folder in tables:
        if not folder.is_dir():
            raise _missing(name, folder)
    rows = [
        r
        for _, folder in tables
        for r in read_table(folder, IMAGE_COLUMNS, "MMEB image-task", files.source.split)
    ]
    task_dir = tables[0][1]
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec) in enumerate(rows):
        try:
            q_img = _text(rec, "qry_img_path", required=False)
            q = Item(
                modality="image" if q_img else "text",
                inst=clean_text(rec.get("qry_inst")),
                text=clean_text(rec.get("qry_text")),
                image=ctx.image(image_root / q_img) if q_img else "",
            )
            texts = [("" if t is None else str(t)) for t in _as_list(rec["tgt_text"], "tgt_text")]
            imgs = [
                ("" if p is None else str(p)) for p in _as_list(rec["tgt_img_path"], "tgt_img_path")
            ]
            if texts and imgs and len(texts) != len(imgs):
                raise _ItemError(
                    f"tgt_text has {len(texts)} entries but tgt_img_path has {len(imgs)}"
                )
            n = max(len(texts), len(imgs))
            if n == 0:
                raise _ItemError("no candidates (tgt_text and tgt_img_path are empty)")
            texts = texts or [""] * n
            imgs = imgs or [""] * n
            t_inst = clean_text(rec.get("tgt_inst"))
            row_ids, row_items = [], {}
            for t, p in zip(texts, imgs, strict=True):
                cid = candidate_id(p, t)
                if not cid:
                    raise _ItemError("a candidate has neither text nor image")
                if cid in row_items:
                    continue
                row_items[cid] = Item(
                    modality="image" if p else "text",
                    inst=t_inst,
                    text=clean_text(t),
                    image=ctx.image(image_root / p) if p else "",
                )
                row_ids.append(cid)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        queries.append((qid, q))
        for cid, it in row_items.items():
            cands.setdefault(cid, it)
        query_candidates[qid] = row_ids
        qrels[qid] = {row_ids[0]: 1.0}
    return EvalTask(name, queries, cands, query_candidates, qrels, source=str(task_dir))
