"""The MMEB-V2 video layouts: ``mmeb_video_ret``, ``mmeb_video_cls``, ``mmeb_video_qa``,
``mmeb_video_mret``.

As a user has them (VLM2Vec ``src/constant/dataset_hflocal_path.py``): each dataset's table
is a local snapshot of its HF repo, ``video-tasks/<Dataset>/[<subset>/]<split>-*.parquet``
(MSR-VTT subset ``test_1k``, NExTQA ``MC``, EgoSchema ``Subset``; split ``val`` for
YouCook2, ``train`` for MVBench, whose 20 subsets are read and concatenated); frames are
pre-extracted under ``video-tasks/frames/<kind>/<Dataset frame folder>/`` (the registry's
``frames``: ``K700`` for Kinetics-700, ``SSv2`` for SmthSmthV2, ``Charades_STA``).

Each dataset's columns and the frame folder of a row are VLM2Vec's parser's
(``src/data/eval_dataset/*.py``); a table of another name (the synthetic suite's) is read
with the generic columns given first below.

``mmeb_video_ret`` (text -> video, global ranking over the table's videos; ids: the video's
frame-folder name)
    generic / MSR-VTT ``{video_id, video, caption}``; MSVD ``{video_id, caption (list:
    first)}``; DiDeMo ``{video, caption}`` (folder: the file stem); YouCook2 ``{id,
    sentence}``; VATEX ``{videoID, enCap (list: first)}``.
``mmeb_video_cls``
    ``{video_id, pos_text}``; candidates are the full label list. The benchmark keeps that
    list in its code (``VIDEOCLS_LABEL_MAPPING``), not in the table: put it as
    ``labels.json`` (a JSON list of strings) next to the table. Without it the labels seen
    in the table are used and a note says so (``EvalTask.notes``). SmthSmthV2 rows carry
    their own candidates (``neg_text``, the positive among them): local ranking.
``mmeb_video_qa`` (local ranking over the row's options; candidate ids ``<qid>:<option>``)
    generic ``{question, options|candidates, answer}`` + a video id column (``video_id``,
    ``videoID`` or ``video``), answer as index, letter or option text; MVBench ``{question,
    video, candidates, answer (text)}`` per subset, frames ``<subset>/<video>``; Video-MME
    ``{videoID, question, options ("A. ..."), answer (letter)}``; NExTQA ``{video,
    question, answer (index), a0..a4}``; EgoSchema ``{video_idx, question, option, answer
    (index as text)}``; ActivityNetQA ``{video_name, question, answer (yes|no)}``, frames
    ``v_<video_name>``. The query text is built as VLM2Vec builds it for that dataset.
``mmeb_video_mret`` (local ranking)
    ``{query, video_path}`` (QVHighlight, Charades-STA): under ``<frames>/<video stem>/`` the
    sub-folder ``query/`` holds the query video's frames and every other sub-folder is a
    candidate clip; clips whose name starts with ``positive`` are relevant; ids
    ``<video stem>/<clip>``. MomentSeeker ``{query, input_frames, positive_frames,
    negative_frames}``: clips (``output_path`` of each entry) in
    ``<frames>/video_frames/<path, "/" -> "_", without .mp4>``; the query is text, an
    image ``<frames>/query_<input_frames>`` (``.jpg``) or a video (``.mp4``, frames in
    ``video_frames/`` as clips), with VLM2Vec's instruction for each kind.

Instructions the tables do not carry are VLM2Vec's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ume.errors import DataError
from ume.items import Item
from ume.suites.base import (
    EvalTask,
    TaskFiles,
    _as_list,
    _Ctx,
    _ItemError,
    _missing,
    _text,
    _video_item,
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
MOMENTSEEKER_INST = {
    "text": "Find the clip that corresponds to the given text:",
    "image": "Select the video clip that aligns with the given text and image:",
    "video": "Find the clip that corresponds to the given sentence and video segment:",
    "candidate": "Understand the content of the provided video clip.",
}


# --------------------------------------------------------------------------- tables
def _rows(
    files: TaskFiles, required: tuple[str, ...], what: str
) -> list[tuple[Path, int, dict, str]]:
    """``(file, row, record, subset)`` of every subset's table, in subset order."""
    out = []
    for subset, folder in files.tables():
        if not folder.is_dir():
            raise _missing(files.name, folder)
        for f, i, rec in read_table(folder, required, what, files.source.split):
            out.append((f, i, rec, subset))
    return out


def _frames_dir(files: TaskFiles) -> Path:
    if not files.media.is_dir():
        raise _missing(files.name, files.media)
    return files.media


def _first_text(rec: dict, col: str) -> str:
    """A caption column that is a string or a list of strings (the first is used)."""
    v = rec.get(col)
    if isinstance(v, str):
        if not v.strip():
            raise _ItemError(f"column {col} is empty")
        return v
    items = _as_list(v, col)
    if not items or not isinstance(items[0], str) or not items[0].strip():
        raise _ItemError(f"column {col} has no caption")
    return items[0]


# --------------------------------------------------------------------------- retrieval
# dataset -> (columns, row -> (frame folder name, caption))
_RET_SCHEMAS: dict[str, tuple[tuple[str, ...], Callable[[dict], tuple[str, str]]]] = {
    "MSVD": (("video_id", "caption"), lambda r: (_text(r, "video_id"), _first_text(r, "caption"))),
    "DiDeMo": (
        ("video", "caption"),
        lambda r: (Path(_text(r, "video")).stem, _first_text(r, "caption")),
    ),
    "YouCook2": (("id", "sentence"), lambda r: (_text(r, "id"), _first_text(r, "sentence"))),
    "VATEX": (("videoID", "enCap"), lambda r: (_text(r, "videoID"), _first_text(r, "enCap"))),
}
_RET_GENERIC = (("video_id", "caption"), lambda r: (_text(r, "video_id"), _text(r, "caption")))


def _load_video_ret(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    cols, parse = _RET_SCHEMAS.get(files.name, _RET_GENERIC)
    rows = _rows(files, cols, "MMEB video retrieval")
    frames = _frames_dir(files)
    queries, cands, qrels = [], {}, {}
    for k, (f, i, rec, _) in enumerate(rows):
        try:
            vid, caption = parse(rec)
            if vid not in cands:
                cands[vid] = _video_item(ctx, frames / vid, VIDEO_RET_INST[1])
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        inst = files.source.instruction or VIDEO_RET_INST[0]  # VLM2Vec's, per dataset
        queries.append((qid, Item(modality="text", inst=inst, text=caption)))
        qrels[qid] = {vid: 1.0}
    return EvalTask(files.name, queries, cands, None, qrels, source=str(files.annotations))


# --------------------------------------------------------------------------- classification
def _load_video_cls(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    per_row = files.name == "SmthSmthV2"  # ssv2_dataset.py: candidates per row
    cols = ("video_id", "pos_text", "neg_text") if per_row else ("video_id", "pos_text")
    rows = _rows(files, cols, "MMEB video classification")
    frames = _frames_dir(files)
    data = files.tables()[0][1]
    if per_row:
        return _cls_per_row(files, rows, frames, ctx)
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
        labels = sorted(
            {str(r["pos_text"]) for _, _, r, _ in rows if r.get("pos_text") is not None}
        )
        notes.append(
            f"{labels_file} missing: candidates are the {len(labels)} labels seen in the table, "
            "not the benchmark's full label list"
        )
    cands = {lab: Item(modality="text", text=lab) for lab in dict.fromkeys(labels)}
    queries, qrels = [], {}
    for k, (f, i, rec, _) in enumerate(rows):
        try:
            vid = _text(rec, "video_id")
            label = _text(rec, "pos_text")
            if label not in cands:
                raise _ItemError(f"label {label!r} is not in the label list ({labels_file})")
            q = _video_item(ctx, frames / vid, files.source.instruction or VIDEO_CLS_INST)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        queries.append((qid, q))
        qrels[qid] = {label: 1.0}
    return EvalTask(files.name, queries, cands, None, qrels, source=str(data), notes=notes)


def _cls_per_row(files: TaskFiles, rows, frames: Path, ctx: _Ctx) -> EvalTask:
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec, _) in enumerate(rows):
        try:
            vid = _text(rec, "video_id")
            label = _text(rec, "pos_text")
            options = [str(o) for o in _as_list(rec["neg_text"], "neg_text") if o is not None]
            if label not in options:
                raise _ItemError(f"pos_text {label!r} is not among the row's neg_text candidates")
            q = _video_item(ctx, frames / vid, files.source.instruction or VIDEO_CLS_INST)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        qid = str(k)
        ids = list(dict.fromkeys(options))  # labels are shared across rows (VLM2Vec dedups)
        for lab in ids:
            cands.setdefault(lab, Item(modality="text", text=lab))
        queries.append((qid, q))
        query_candidates[qid] = ids
        qrels[qid] = {label: 1.0}
    return EvalTask(
        files.name, queries, cands, query_candidates, qrels, source=str(files.annotations)
    )


# --------------------------------------------------------------------------- QA
_OPTION_PREFIX = re.compile(r"^\s*\(?[A-Z][.)]\s+")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _options_template(question: str, options: list[str]) -> str:
    """VLM2Vec's ``qa_template``: the question, then ``Options:`` and ``(A) ...`` lines."""
    return (
        question + "\nOptions:\n" + "\n".join(f"({_LETTERS[j]}) {o}" for j, o in enumerate(options))
    ).rstrip()


def _after_letter(option: str) -> str:
    """``"A. a dog"`` -> ``"a dog"`` (VLM2Vec strips up to the first ``". "``)."""
    k = option.find(". ")
    return option[k + 2 :].strip() if k >= 0 else option.strip()


def _index(answer: Any, n: int) -> int:
    if isinstance(answer, bool):
        raise _ItemError(f"answer {answer!r} is not an option index")
    try:
        k = int(answer)
    except (TypeError, ValueError):
        raise _ItemError(f"answer {answer!r} is not an option index") from None
    if not 0 <= k < n:
        raise _ItemError(f"answer {answer!r} points past the {n} options")
    return k


# A QA parser: (record, subset) -> (frame folder relative to the frames root, query text,
# candidate texts, index of the answer).
_QA = Callable[[dict, str], tuple[str, str, list[str], int]]


def _qa_mvbench(r: dict, subset: str) -> tuple[str, str, list[str], int]:
    cands = [str(c) for c in _as_list(r["candidates"], "candidates")]
    answer = _text(r, "answer")
    if answer not in cands:
        raise _ItemError(f"answer {answer!r} is none of the candidates {cands}")
    labelled = [f"({_LETTERS[j]}) {c}" for j, c in enumerate(cands)]  # qa_template's options
    return (
        f"{subset}/{_text(r, 'video')}",
        _options_template(_text(r, "question"), cands),
        labelled,
        cands.index(answer),
    )


def _qa_videomme(r: dict, subset: str) -> tuple[str, str, list[str], int]:
    options = [str(o) for o in _as_list(r["options"], "options")]
    letter = _text(r, "answer").strip()
    if len(letter) != 1 or letter not in _LETTERS[: len(options)]:
        raise _ItemError(f"answer {letter!r} is not the letter of one of {len(options)} options")
    text = _text(r, "question") + "\n" + "\n".join(options)
    return _text(r, "videoID"), text, [_after_letter(o) for o in options], _LETTERS.index(letter)


def _qa_nextqa(r: dict, subset: str) -> tuple[str, str, list[str], int]:
    options = [_text(r, f"a{j}") for j in range(5)]
    text = _options_template(_text(r, "question"), options)
    return _text(r, "video"), text, options, _index(r.get("answer"), len(options))


def _qa_egoschema(r: dict, subset: str) -> tuple[str, str, list[str], int]:
    options = [str(o) for o in _as_list(r["option"], "option")]
    # egoschema_dataset.py joins the question and the options without a separator
    text = _text(r, "question") + " ".join(options)
    return (
        _text(r, "video_idx"),
        text,
        [_after_letter(o) for o in options],
        _index(r.get("answer"), len(options)),
    )


def _qa_activitynet(r: dict, subset: str) -> tuple[str, str, list[str], int]:
    answer = _text(r, "answer").strip()
    if answer not in ("yes", "no"):
        raise _ItemError(f"answer {answer!r} is not 'yes' or 'no'")
    text = _text(r, "question") + "? (A) yes; (B) no."
    return f"v_{_text(r, 'video_name')}", text, ["yes", "no"], ["yes", "no"].index(answer)


_QA_SCHEMAS: dict[str, tuple[tuple[str, ...], _QA]] = {
    "MVBench": (("question", "video", "candidates", "answer"), _qa_mvbench),
    "Video-MME": (("videoID", "question", "options", "answer"), _qa_videomme),
    "NExTQA": (("video", "question", "answer", "a0", "a1", "a2", "a3", "a4"), _qa_nextqa),
    "EgoSchema": (("video_idx", "question", "option", "answer"), _qa_egoschema),
    "ActivityNetQA": (("video_name", "question", "answer"), _qa_activitynet),
}


def _generic_qa(opt_col: str, vid_col: str) -> _QA:
    def parse(r: dict, subset: str) -> tuple[str, str, list[str], int]:
        options = [_OPTION_PREFIX.sub("", str(o)).strip() for o in _as_list(r[opt_col], opt_col)]
        if len(options) < 2:
            raise _ItemError(f"{opt_col} has {len(options)} option(s); at least 2 are needed")
        ans = r["answer"]
        if isinstance(ans, int | np.integer) and not isinstance(ans, bool):
            k = int(ans)
        elif isinstance(ans, str) and len(ans.strip()) == 1 and ans.strip().isupper():
            k = ord(ans.strip()) - ord("A")
        elif isinstance(ans, str) and _OPTION_PREFIX.sub("", ans).strip() in options:
            k = options.index(_OPTION_PREFIX.sub("", ans).strip())
        else:
            raise _ItemError(f"answer {ans!r} is none of the options {options}")
        if not 0 <= k < len(options):
            raise _ItemError(f"answer {ans!r} points past the {len(options)} options")
        return _text(r, vid_col), _options_template(_text(r, "question"), options), options, k

    return parse


def _load_video_qa(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    if files.name in _QA_SCHEMAS:
        cols, parse = _QA_SCHEMAS[files.name]
        rows = _rows(files, cols, f"MMEB video QA ({files.name})")
    else:
        rows = _rows(files, ("question", "answer"), "MMEB video QA")
        parse = _generic_qa(*_qa_columns(rows))
    frames = _frames_dir(files)
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec, subset) in enumerate(rows):
        qid = str(k)
        try:
            folder, text, options, answer = parse(rec, subset)
            if len(options) < 2:
                raise _ItemError(f"{len(options)} option(s); at least 2 are needed")
            q = _video_item(ctx, frames / folder, VIDEO_QA_INST, text)
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        ids = [f"{qid}:{j}" for j in range(len(options))]
        for cid, o in zip(ids, options, strict=True):
            cands[cid] = Item(modality="text", text=o)
        queries.append((qid, q))
        query_candidates[qid] = ids
        qrels[qid] = {ids[answer]: 1.0}
    return EvalTask(
        files.name, queries, cands, query_candidates, qrels, source=str(files.annotations)
    )


def _qa_columns(rows: list) -> tuple[str, str]:
    if not rows:
        return "options", "video_id"
    cols = rows[0][2].keys()
    opt_col = next((c for c in ("options", "candidates") if c in cols), None)
    vid_col = next((c for c in ("video_id", "videoID", "video") if c in cols), None)
    if opt_col is None or vid_col is None:
        need = "options (or candidates)" if opt_col is None else "video_id (or videoID, video)"
        raise DataError(
            f"{rows[0][0]}: missing column {need} of the MMEB video QA layout; it has {list(cols)}"
        )
    return opt_col, vid_col


# --------------------------------------------------------------------------- moment retrieval
def _load_video_mret(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    if files.name == "MomentSeeker":
        return _load_momentseeker(files, ctx)
    rows = _rows(files, ("query", "video_path"), "MMEB moment retrieval")
    frames = _frames_dir(files)
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec, _) in enumerate(rows):
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
    return EvalTask(
        files.name, queries, cands, query_candidates, qrels, source=str(files.annotations)
    )


def _clip_name(path: str) -> str:
    """momentseeker_dataset.py: ``path.replace("/", "_").split(".mp4")[0]``."""
    return path.replace("/", "_").split(".mp4")[0]


def _clip_paths(value: Any, col: str) -> list[str]:
    out = []
    for entry in _as_list(value, col):
        path = entry.get("output_path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not path:
            raise _ItemError(f"an entry of {col} has no output_path")
        out.append(path)
    return out


def _load_momentseeker(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    cols = ("query", "input_frames", "positive_frames", "negative_frames")
    rows = _rows(files, cols, "MMEB moment retrieval (MomentSeeker)")
    frames = _frames_dir(files)
    clips_root = frames / "video_frames"
    queries, cands, query_candidates, qrels = [], {}, {}, {}
    for k, (f, i, rec, _) in enumerate(rows):
        qid = str(k)
        try:
            text = _text(rec, "query")
            given = _text(rec, "input_frames", required=False)
            if given.endswith(".mp4"):
                q = _video_item(
                    ctx, clips_root / _clip_name(given), MOMENTSEEKER_INST["video"], text
                )
            elif given.endswith(".jpg"):
                q = Item(
                    modality="image",
                    inst=MOMENTSEEKER_INST["image"],
                    text=text,
                    image=ctx.image(frames / f"query_{given}"),
                )
            else:
                q = Item(modality="text", inst=MOMENTSEEKER_INST["text"], text=text)
            pos = [_clip_name(p) for p in _clip_paths(rec["positive_frames"], "positive_frames")]
            neg = [_clip_name(p) for p in _clip_paths(rec["negative_frames"], "negative_frames")]
            if not pos:
                raise _ItemError("positive_frames is empty")
            row = {
                c: _video_item(ctx, clips_root / c, MOMENTSEEKER_INST["candidate"])
                for c in dict.fromkeys(pos + neg)
            }
        except _ItemError as e:
            ctx.bad(f, i, str(e))
            continue
        cands.update(row)
        queries.append((qid, q))
        query_candidates[qid] = list(row)
        qrels[qid] = dict.fromkeys(pos, 1.0)
    return EvalTask(
        files.name, queries, cands, query_candidates, qrels, source=str(files.annotations)
    )
