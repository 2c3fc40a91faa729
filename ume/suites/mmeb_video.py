"""The MMEB-V2 video layouts: ``mmeb_video_ret``, ``mmeb_video_cls``, ``mmeb_video_qa``,
``mmeb_video_mret``.

``mmeb_video_ret``
    ``mmeb/video-tasks/data/<Dataset>/*.parquet`` ``{video_id, video, caption}`` (MSR-VTT,
    ``msrvtt_dataset.py``); frames ``mmeb/video-tasks/frames/video_ret/<Dataset>/<video_id>/``.
    Text -> video, global ranking over the table's videos (ids: ``video_id``).
``mmeb_video_cls``
    ``{video_id, pos_text}``; frames under ``frames/video_cls``; candidates are the full label
    list. The benchmark keeps that list in its code (``VIDEOCLS_LABEL_MAPPING``), not in the
    table: put it as ``labels.json`` (a JSON list of strings) next to the table. Without it
    the labels seen in the table are used and a note says so (``EvalTask.notes``).
``mmeb_video_qa``
    ``{question, options, answer}`` plus a video id column (first of ``video_id``,
    ``videoID``, ``video``); ``candidates`` is accepted for ``options`` (MVBench). ``answer``
    is the option text, its letter (``"B"``, Video-MME) or its index (NExT-QA). Frames under
    ``frames/video_qa/<Dataset>/<video id>/``; local ranking over the row's options, candidate
    ids ``<qid>:<option index>``; a leading ``"A. "`` / ``"(A) "`` is removed from options.
``mmeb_video_mret``
    ``{query, video_path}`` (``moment_retrieval_datasets.py``); under
    ``frames/video_mret/<Dataset>/<video stem>/`` the sub-folder ``query/`` holds the query
    video's frames and every other sub-folder is a candidate clip; clips whose name starts
    with ``positive`` are relevant. Local ranking; candidate ids ``<video stem>/<clip>``.

Instructions the tables do not carry are VLM2Vec's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ume.errors import DataError
from ume.items import Item
from ume.suites.base import (
    VIDEO_KINDS,
    EvalTask,
    _as_list,
    _Ctx,
    _ItemError,
    _missing,
    _text,
    _video_item,
    mmeb_dir,
    natural_key,
    read_table,
)

# Instructions VLM2Vec uses where the tables carry none.
VIDEO_RET_INST = (
    "Find a video that contains the following visual content:",
    "Understand the content of the provided video.",
)
VIDEO_CLS_INST = "Recognize the category of the video content."
VIDEO_QA_INST = (
    "Given a video and a question, select the most accurate answer from the provided "
    "candidates. Return only the exact text of your chosen answer. Question:"
)
VIDEO_MRET_INST = (
    "Find the clip that corresponds to the described scene in the given video:",
    "Understand the content of the provided video.",
)


# --------------------------------------------------------------------------- MMEB video
def _video_dirs(name: str, root: Path, layout: str, frames_name: str | None) -> tuple[Path, Path]:
    data = mmeb_dir(root) / "video-tasks" / "data" / name
    frames = mmeb_dir(root) / "video-tasks" / "frames" / VIDEO_KINDS[layout] / (frames_name or name)
    if not data.is_dir():
        raise _missing(name, data)
    return data, frames


def _load_video_ret(
    name: str, root: Path, ctx: _Ctx, *, frames_name: str | None = None, **_: Any
) -> EvalTask:
    data, frames = _video_dirs(name, root, "mmeb_video_ret", frames_name)
    queries, cands, qrels = [], {}, {}
    rows = read_table(data, ("video_id", "caption"), "MMEB video retrieval")
    for k, (f, i, rec) in enumerate(rows):
        try:
            vid = _text(rec, "video_id")
            caption = _text(rec, "caption")
            if vid not in cands:
                cands[vid] = _video_item(ctx, frames / vid, VIDEO_RET_INST[1])
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        queries.append((qid, Item(modality="text", inst=VIDEO_RET_INST[0], text=caption)))
        qrels[qid] = {vid: 1.0}
    return EvalTask(name, queries, cands, None, qrels, source=str(data))


def _load_video_cls(
    name: str, root: Path, ctx: _Ctx, *, frames_name: str | None = None, **_: Any
) -> EvalTask:
    data, frames = _video_dirs(name, root, "mmeb_video_cls", frames_name)
    rows = read_table(data, ("video_id", "pos_text"), "MMEB video classification")
    notes = []
    labels_file = data / "labels.json"
    if labels_file.is_file():
        try:
            labels = json.loads(labels_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{labels_file}: not valid JSON ({e}); write a JSON list of labels"
            ) from e
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{labels_file}: must be a JSON list of label strings")
    else:
        labels = sorted({str(r["pos_text"]) for _, _, r in rows if r.get("pos_text") is not None})
        notes.append(
            f"{labels_file} missing: candidates are the {len(labels)} labels seen in the table, "
            "not the benchmark's full label list"
        )
    cands = {lab: Item(modality="text", text=lab) for lab in dict.fromkeys(labels)}
    queries, qrels = [], {}
    for k, (f, i, rec) in enumerate(rows):
        try:
            vid = _text(rec, "video_id")
            label = _text(rec, "pos_text")
            if label not in cands:
                raise _ItemError(f"label {label!r} is not in the label list ({labels_file})")
            q = _video_item(ctx, frames / vid, VIDEO_CLS_INST)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        queries.append((qid, q))
        qrels[qid] = {label: 1.0}
    return EvalTask(name, queries, cands, None, qrels, source=str(data), notes=notes)


_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][.)]\s+")


def _load_video_qa(
    name: str, root: Path, ctx: _Ctx, *, frames_name: str | None = None, **_: Any
) -> EvalTask:
    data, frames = _video_dirs(name, root, "mmeb_video_qa", frames_name)
    rows = read_table(data, ("question", "answer"), "MMEB video QA")
    if rows:
        cols = rows[0][2].keys()
        opt_col = next((c for c in ("options", "candidates") if c in cols), None)
        vid_col = next((c for c in ("video_id", "videoID", "video") if c in cols), None)
        if opt_col is None or vid_col is None:
            need = "options (or candidates)" if opt_col is None else "video_id (or videoID, video)"
            raise DataError(
                f"{rows[0][0]}: missing column {need} of the MMEB video QA layout; it has {list(cols)}"
            )
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec) in enumerate(rows):
        qid = str(k)
        try:
            vid = _text(rec, vid_col)
            question = _text(rec, "question")
            options = [
                _OPTION_PREFIX.sub("", str(o)).strip() for o in _as_list(rec[opt_col], opt_col)
            ]
            if len(options) < 2:
                raise _ItemError(f"{opt_col} has {len(options)} option(s); at least 2 are needed")
            ans = rec["answer"]
            if isinstance(ans, int | np.integer):
                k = int(ans)
            elif isinstance(ans, str) and len(ans.strip()) == 1 and ans.strip().isupper():
                k = ord(ans.strip()) - ord("A")
            elif isinstance(ans, str) and _OPTION_PREFIX.sub("", ans).strip() in options:
                k = options.index(_OPTION_PREFIX.sub("", ans).strip())
            else:
                raise _ItemError(f"answer {ans!r} is none of the options {options}")
            if not 0 <= k < len(options):
                raise _ItemError(f"answer {ans!r} points past the {len(options)} options")
            text = (
                question
                + "\nOptions:\n"
                + "\n".join(f"({chr(65 + j)}) {o}" for j, o in enumerate(options))
            )
            q = _video_item(ctx, frames / vid, VIDEO_QA_INST, text)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        ids = [f"{qid}:{j}" for j in range(len(options))]
        for cid, o in zip(ids, options, strict=True):
            cands[cid] = Item(modality="text", text=o)
        queries.append((qid, q))
        query_candidates[qid] = ids
        qrels[qid] = {ids[k]: 1.0}
    return EvalTask(name, queries, cands, query_candidates, qrels, source=str(data))


def _load_video_mret(
    name: str, root: Path, ctx: _Ctx, *, frames_name: str | None = None, **_: Any
) -> EvalTask:
    data, frames = _video_dirs(name, root, "mmeb_video_mret", frames_name)
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    rows = read_table(data, ("query", "video_path"), "MMEB moment retrieval")
    for k, (f, i, rec) in enumerate(rows):
        qid = str(k)
        try:
            text = _text(rec, "query")
            stem = Path(_text(rec, "video_path")).stem
            vdir = frames / stem
            if not vdir.is_dir():
                raise _ItemError(f"frame folder {vdir} missing")
            q = _video_item(ctx, vdir / "query", VIDEO_MRET_INST[0], text)
            clips = sorted(
                (p.name for p in vdir.iterdir() if p.is_dir() and p.name != "query"),
                key=natural_key,
            )
            if not clips:
                raise _ItemError(f"no candidate clip folders under {vdir}")
            pos = [c for c in clips if c.startswith("positive")]
            if not pos:
                raise _ItemError(f"no clip folder named positive* under {vdir}")
            row = {f"{stem}/{c}": _video_item(ctx, vdir / c, VIDEO_MRET_INST[1]) for c in clips}
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        cands.update(row)
        queries.append((qid, q))
        query_candidates[qid] = list(row)
        qrels[qid] = {f"{stem}/{c}": 1.0 for c in pos}
    return EvalTask(name, queries, cands, query_candidates, qrels, source=str(data))
