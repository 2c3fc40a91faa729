"""The ``uvrb`` layout: UVRB's datasets.

``uvrb/<Dataset>/jsonl/{queries,corpus,instances}.jsonl``: ``{id, text?, video?,
image?}``, ``{id, video}``, ``{qid, pos: [corpus ids]}``; frames
``uvrb/<Dataset>/videos_frames/<video stem>/*.jpg|png``; query images relative to the
dataset folder or its ``images/``. Global ranking; every positive has grade 1. UVRB's
instructions are our choice (:data:`UVRB_INSTRUCTIONS`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ume.errors import DataError
from ume.items import Item
from ume.suites.base import (
    EvalTask,
    TaskFiles,
    _Ctx,
    _finish_global,
    _ItemError,
    _missing,
    _video_item,
)

UVRB_INSTRUCTIONS = {
    "text": "Find the video that matches the description:",
    "image": "Find the video that shows the content of the image:",
    "video": "Find the video that matches the given video:",
    "image+text": "Find the video that shows the image modified as described:",
    "video+text": "Find the video that shows the given video modified as described:",
    "candidate": "Understand the content of the provided video.",
}


def read_jsonl(path: Path, ctx: _Ctx, required: Iterable[str]) -> list[tuple[int, dict]]:
    """``(line number, record)`` of a JSONL file; bad lines go through ``ctx.bad``."""
    if not path.is_file():
        raise DataError(f"{path}: file missing; the UVRB layout needs jsonl/{path.name}")
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                ctx.bad(path, n, f"not valid JSON ({e})", unit="line")
                continue
            if not isinstance(rec, dict):
                ctx.bad(path, n, "not a JSON object", unit="line")
                continue
            missing = [k for k in required if k not in rec]
            if missing:
                ctx.bad(path, n, f"missing key(s) {missing}", unit="line")
                continue
            out.append((n, rec))
    return out


# --------------------------------------------------------------------------- UVRB
def _load_uvrb(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    name, ds = files.name, files.annotations
    if not ds.is_dir():
        raise _missing(name, ds)
    jdir, fdir = ds / "jsonl", files.media
    cfile, qfile, ifile = jdir / "corpus.jsonl", jdir / "queries.jsonl", jdir / "instances.jsonl"
    cands: dict[str, Item] = {}
    bad_cands: set[str] = set()
    for n, rec in read_jsonl(cfile, ctx, ("id", "video")):
        cid = str(rec["id"])
        try:
            cands[cid] = _video_item(
                ctx, fdir / Path(str(rec["video"])).stem, UVRB_INSTRUCTIONS["candidate"]
            )
        except _ItemError as e:
            bad_cands.add(cid)
            ctx.bad(cfile, n, str(e), unit="line")
    query_rows: dict[str, tuple[Path, int, Item]] = {}
    for n, rec in read_jsonl(qfile, ctx, ("id",)):
        try:
            query_rows[str(rec["id"])] = (qfile, n, _uvrb_query(rec, ds, fdir, ctx))
        except _ItemError as e:
            ctx.bad(qfile, n, str(e), unit="line")
    qrels: dict[str, dict[str, float]] = {}
    for n, rec in read_jsonl(ifile, ctx, ("qid", "pos")):
        pos = rec["pos"]
        if not isinstance(pos, list):
            ctx.bad(ifile, n, "pos should be a list of corpus ids", unit="line")
            continue
        qid = str(rec["qid"])
        if qid not in query_rows:
            ctx.bad(
                ifile, n, f"qid {qid!r} is not in {qfile.name} (or its line was bad)", unit="line"
            )
            continue
        unknown = [str(p) for p in pos if str(p) not in cands and str(p) not in bad_cands]
        if unknown:
            ctx.bad(ifile, n, f"corpus id(s) {unknown[:5]} not in {cfile.name}", unit="line")
            continue
        for p in pos:
            if str(p) in cands:
                qrels.setdefault(qid, {})[str(p)] = 1.0
    return _finish_global(name, query_rows, qrels, cands, ds, ctx)


def _uvrb_query(rec: dict, ds: Path, fdir: Path, ctx: _Ctx) -> Item:
    text = rec.get("text") or ""
    if not isinstance(text, str):
        raise _ItemError(f"text should be a string, got {type(text).__name__}")
    video, image = rec.get("video"), rec.get("image")
    if video:
        kind = "video+text" if text else "video"
        return Item(
            modality="video",
            inst=UVRB_INSTRUCTIONS[kind],
            text=text,
            frames=ctx.frames(fdir / Path(str(video)).stem),
        )
    if image:
        p = ds / str(image)
        if not p.is_file() and (ds / "images" / str(image)).is_file():
            p = ds / "images" / str(image)
        kind = "image+text" if text else "image"
        return Item(modality="image", inst=UVRB_INSTRUCTIONS[kind], text=text, image=ctx.image(p))
    if not text:
        raise _ItemError("query has neither text, video nor image")
    return Item(modality="text", inst=UVRB_INSTRUCTIONS["text"], text=text)
