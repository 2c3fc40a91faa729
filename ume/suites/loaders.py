"""Loaders of the real MMEB-V2 and UVRB layouts (the synthetic suite is written in the same ones).

``load_task(layout, name, root)`` reads one task under a benchmark root and returns an
:class:`EvalTask` of :class:`~ume.items.Item` s with absolute paths. Layouts, relative
to ``root`` (see ``docs/benchmarks.md`` of the shared docs for the benchmarks' own facts):

``mmeb_image``
    ``mmeb/MMEB_Test_Instruct/<Task>/*.parquet`` (HF ``ziyjiang/MMEB_Test_Instruct``, split
    ``test``) with columns ``qry_inst, qry_text, qry_img_path, tgt_inst, tgt_text (list),
    tgt_img_path (list)``; image paths are relative to ``mmeb/image-tasks/``. Local ranking;
    the positive is candidate 0. ``<|image_N|>`` markers are removed from instructions and
    texts (the embedder inserts its own image token). Candidate id (as VLM2Vec's
    ``cand_names``): ``img_path + ":" + text`` when both are set (grounding-style tasks:
    several objects share an image), else the image path, else the text.
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
``beir``
    ``mmeb/visdoc-tasks/<Task>/{queries,corpus,qrels}/*.parquet``: queries (``query-id``,
    ``query``[, ``language``]), corpus (``corpus-id``, ``image`` as the HF Image struct
    ``{bytes, path}``), qrels (``query-id``, ``corpus-id``, ``score``; graded). Corpus
    images are extracted once into ``<Task>/_cache/corpus_images/`` (atomic writes; or
    ``cache_dir``). Global ranking; qrels with score <= 0 are not relevant.
``uvrb``
    ``uvrb/<Dataset>/jsonl/{queries,corpus,instances}.jsonl``: ``{id, text?, video?,
    image?}``, ``{id, video}``, ``{qid, pos: [corpus ids]}``; frames
    ``uvrb/<Dataset>/videos_frames/<video stem>/*.jpg|png``; query images relative to the
    dataset folder or its ``images/``. Global ranking; every positive has grade 1.

Video items carry ``num_frames`` frames sampled uniformly as VLM2Vec does
(``np.linspace(0, n - 1, num_frames)``, natural filename order; all frames when fewer).
Instructions the tables do not carry are VLM2Vec's (video, visdoc); UVRB's are our choice
(:data:`UVRB_INSTRUCTIONS`).

Bad input: a missing task folder raises ``DataError("task X missing at PATH")``; an
unreadable file or a missing column raises a :class:`DataError` naming the file. A bad item
(corrupt or missing image, missing or empty frame folder, malformed row or JSONL line,
unknown id) raises a :class:`DataError` naming the file and row, or with
``on_bad_item="skip"`` is recorded in ``EvalTask.skipped`` as ``{file, row, reason}``
(``row``: 0-based parquet row, or 1-based JSONL line) and left out, together with what
depends on it (a local query whose candidate is bad; a global query left without any
relevant candidate). Queries that have no relevant item at all are always listed in
``skipped``, never dropped silently.

Synthetic tasks carry a sidecar ``_synth_gt.json`` (ground truth of every query and
candidate, for the oracle annotator); when present its entries are attached as ``Item.gt``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ume.errors import DataError
from ume.io import atomic_path
from ume.items import Item

LAYOUTS = (
    "mmeb_image",
    "mmeb_video_ret",
    "mmeb_video_cls",
    "mmeb_video_qa",
    "mmeb_video_mret",
    "beir",
    "uvrb",
)
VIDEO_KINDS = {
    "mmeb_video_ret": "video_ret",
    "mmeb_video_cls": "video_cls",
    "mmeb_video_qa": "video_qa",
    "mmeb_video_mret": "video_mret",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
GT_SIDECAR = "_synth_gt.json"
SKIP_HINT = (
    "fix or remove it, or set data.on_bad_item: skip to skip such items (they are counted "
    "and listed)"
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
VISDOC_INST = (
    "Find a document image that matches the given query:",
    "Understand the content of the provided document image.",
)
UVRB_INSTRUCTIONS = {
    "text": "Find the video that matches the description:",
    "image": "Find the video that shows the content of the image:",
    "video": "Find the video that matches the given video:",
    "image+text": "Find the video that shows the image modified as described:",
    "video+text": "Find the video that shows the given video modified as described:",
    "candidate": "Understand the content of the provided video.",
}


@dataclass
class EvalTask:
    """One benchmark task, ready to embed and rank."""

    name: str
    queries: list[tuple[str, Item]]
    candidates: dict[str, Item]
    query_candidates: dict[str, list[str]] | None  # local ranking; None: global
    qrels: dict[str, dict[str, float]]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    layout: str = ""
    source: str = ""  # the folder the task was read from
    notes: list[str] = field(default_factory=list)

    @property
    def ranking(self) -> str:
        return "global" if self.query_candidates is None else "local"

    def summary(self) -> dict[str, Any]:
        return {
            "queries": len(self.queries),
            "candidates": len(self.candidates),
            "skipped": len(self.skipped),
            "ranking": self.ranking,
        }


class _ItemError(Exception):
    """A problem with one item; becomes a DataError naming the file and row (or a skip)."""


class _Ctx:
    """Per-load state: bad-item policy, the skipped list and media check caches."""

    def __init__(self, on_bad_item: str, num_frames: int, verify_media: bool) -> None:
        if on_bad_item not in ("error", "skip"):
            raise DataError(f"on_bad_item: {on_bad_item!r} is not one of 'error', 'skip'")
        if num_frames < 1:
            raise DataError(f"num_frames must be at least 1, got {num_frames}")
        self.on_bad_item = on_bad_item
        self.num_frames = num_frames
        self.verify = verify_media
        self.skipped: list[dict[str, Any]] = []
        self._images: dict[str, str | None] = {}
        self._frames: dict[str, tuple[str, ...] | str] = {}

    def bad(self, file: Path | str, row: int | None, reason: str, unit: str = "row") -> None:
        if self.on_bad_item == "error":
            where = f"{file}: {unit} {row}: " if row is not None else f"{file}: "
            raise DataError(f"{where}{reason}; {SKIP_HINT}")
        self.skipped.append({"file": str(file), "row": row, "reason": reason})

    def image(self, path: Path) -> str:
        key = str(path)
        if key not in self._images:
            self._images[key] = _check_image(path, self.verify)
        err = self._images[key]
        if err:
            raise _ItemError(err)
        return key

    def frames(self, folder: Path) -> tuple[str, ...]:
        key = str(folder)
        if key not in self._frames:
            try:
                paths = sample_frames(list_frames(folder), self.num_frames)
                for p in paths:
                    self.image(Path(p))
                self._frames[key] = tuple(paths)
            except _ItemError as e:
                self._frames[key] = str(e)
        got = self._frames[key]
        if isinstance(got, str):
            raise _ItemError(got)
        return got


def _check_image(path: Path, verify: bool) -> str | None:
    if not path.is_file():
        return f"image {path} not found"
    if not verify:
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as e:  # PIL raises many types for corrupt files
        return (
            f"image {path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not an image"
        )
    return None


# --------------------------------------------------------------------------- frames
def natural_key(name: str) -> list[Any]:
    """Sort key of natural order (``2.jpg`` before ``10.jpg``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> list[str]:
    """Image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _ItemError(f"frame folder {folder} missing")
    names = sorted(
        (n.name for n in folder.iterdir() if n.suffix.lower() in IMAGE_EXTENSIONS and n.is_file()),
        key=natural_key,
    )
    if not names:
        raise _ItemError(f"frame folder {folder} holds no .jpg/.jpeg/.png frames")
    return [str(folder / n) for n in names]


def sample_frames(frames: list[str], num_frames: int) -> list[str]:
    """``num_frames`` frames sampled uniformly (VLM2Vec ``sample_frames``); all if fewer."""
    if num_frames >= len(frames):
        return list(frames)
    idx = np.linspace(0, len(frames) - 1, num_frames, dtype=int)
    return [frames[i] for i in idx.tolist()]


# --------------------------------------------------------------------------- readers
def _parquet_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise DataError(
            f"{folder}: no parquet file; expected e.g. {folder / 'test-00000-of-00001.parquet'}"
        )
    return files


def read_table(folder: Path, required: Iterable[str], what: str) -> list[tuple[Path, int, dict]]:
    """Rows ``(file, row index, record)`` of every parquet in ``folder``; checks columns."""
    import pandas as pd

    out = []
    for f in _parquet_files(folder):
        try:
            df = pd.read_parquet(f)
        except Exception as e:
            raise DataError(
                f"{f}: not a readable parquet file ({type(e).__name__}: {e}); "
                "download it again or remove it"
            ) from e
        missing = [c for c in required if c not in df.columns]
        if missing:
            raise DataError(
                f"{f}: missing column(s) {missing} of the {what} layout; it has "
                f"{list(df.columns)}; see docs/benchmarks.md for the expected schema"
            )
        for i, rec in enumerate(df.to_dict("records")):
            out.append((f, i, rec))
    return out


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


def _as_list(v: Any, col: str) -> list:
    if v is None:
        return []
    if isinstance(v, str):
        raise _ItemError(f"column {col} should be a list, got a string {v[:40]!r}")
    try:
        return list(v)
    except TypeError:
        raise _ItemError(f"column {col} should be a list, got {type(v).__name__}") from None


def _text(rec: dict, col: str, required: bool = True) -> str:
    v = rec.get(col)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        if required:
            raise _ItemError(f"column {col} is empty")
        return ""
    if not isinstance(v, str | int | np.integer):
        raise _ItemError(f"column {col} should be text, got {type(v).__name__}")
    return str(v)


def _missing(name: str, path: Path) -> DataError:
    return DataError(
        f"task {name} missing at {path}; download the benchmark into the data root "
        "(see docs/benchmarks.md) or drop the task from the evaluation"
    )


# --------------------------------------------------------------------------- MMEB image
def _load_mmeb_image(name: str, root: Path, ctx: _Ctx, **_: Any) -> EvalTask:
    task_dir = mmeb_dir(root) / "MMEB_Test_Instruct" / name
    image_root = mmeb_dir(root) / "image-tasks"
    if not task_dir.is_dir():
        raise _missing(name, task_dir)
    cols = ("qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text", "tgt_img_path")
    queries, cands, qc, qrels = [], {}, {}, {}
    for k, (f, i, rec) in enumerate(read_table(task_dir, cols, "MMEB image-task")):
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
        qc[qid] = row_ids
        qrels[qid] = {row_ids[0]: 1.0}
    return EvalTask(name, queries, cands, qc, qrels, source=str(task_dir))


# --------------------------------------------------------------------------- MMEB video
def _video_dirs(name: str, root: Path, layout: str, frames_name: str | None) -> tuple[Path, Path]:
    data = mmeb_dir(root) / "video-tasks" / "data" / name
    frames = mmeb_dir(root) / "video-tasks" / "frames" / VIDEO_KINDS[layout] / (frames_name or name)
    if not data.is_dir():
        raise _missing(name, data)
    return data, frames


def _video_item(ctx: _Ctx, folder: Path, inst: str, text: str = "") -> Item:
    return Item(modality="video", inst=inst, text=text, frames=ctx.frames(folder))


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
    queries, cands, qc, qrels = [], {}, {}, {}
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
        qc[qid] = ids
        qrels[qid] = {ids[k]: 1.0}
    return EvalTask(name, queries, cands, qc, qrels, source=str(data))


def _load_video_mret(
    name: str, root: Path, ctx: _Ctx, *, frames_name: str | None = None, **_: Any
) -> EvalTask:
    data, frames = _video_dirs(name, root, "mmeb_video_mret", frames_name)
    queries, cands, qc, qrels = [], {}, {}, {}
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
        qc[qid] = list(row)
        qrels[qid] = {f"{stem}/{c}": 1.0 for c in pos}
    return EvalTask(name, queries, cands, qc, qrels, source=str(data))


# --------------------------------------------------------------------------- BEIR visdoc
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe_name(s: str) -> str:
    safe = _SAFE.sub("_", s)[:100]
    if safe != s:
        safe += "-" + hashlib.sha1(s.encode()).hexdigest()[:8]
    return safe


def _extract_image(value: Any, task_dir: Path, cache: Path, cid: str, ctx: _Ctx) -> str:
    """Path of a corpus image given as HF Image struct {bytes, path}, raw bytes, or a path."""
    data, rel = None, None
    if isinstance(value, dict):
        data, rel = value.get("bytes"), value.get("path")
    elif isinstance(value, bytes | bytearray):
        data = value
    elif isinstance(value, str):
        rel = value
    else:
        raise _ItemError(
            f"image of corpus-id {cid!r} is {type(value).__name__}, not {{bytes, path}}"
        )
    if data:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "PNG").lower()
                im.verify()
        except Exception as e:
            raise _ItemError(
                f"image bytes of corpus-id {cid!r} cannot be read ({type(e).__name__}: {e}); corrupt"
            ) from None
        ext = {"jpeg": ".jpg"}.get(fmt, "." + fmt)
        out = cache / f"{_safe_name(cid)}{ext}"
        if not (out.is_file() and out.stat().st_size == len(data)):
            try:
                with atomic_path(out) as tmp:
                    tmp.write_bytes(bytes(data))
            except OSError as e:
                raise DataError(
                    f"cannot write the corpus image cache {cache} ({e}); pass a writable cache_dir"
                ) from e
        return str(out)
    if rel:
        p = Path(rel)
        return ctx.image(p if p.is_absolute() else task_dir / p)
    raise _ItemError(f"image of corpus-id {cid!r} has neither bytes nor path")


def _load_beir(
    name: str,
    root: Path,
    ctx: _Ctx,
    *,
    language: str | None = None,
    cache_dir: Path | None = None,
    **_: Any,
) -> EvalTask:
    task_dir = mmeb_dir(root) / "visdoc-tasks" / name
    if not task_dir.is_dir():
        raise _missing(name, task_dir)
    cache = Path(cache_dir) / name if cache_dir else task_dir / "_cache" / "corpus_images"
    cands: dict[str, Item] = {}
    bad_cands: set[str] = set()
    for f, i, rec in read_table(task_dir / "corpus", ("corpus-id", "image"), "BEIR corpus"):
        cid = str(rec.get("corpus-id"))
        try:
            cid = _text(rec, "corpus-id")
            path = _extract_image(rec["image"], task_dir, cache, cid, ctx)
        except _ItemError as e:
            bad_cands.add(cid)
            ctx.bad(f, i, str(e))
            continue
        cands[cid] = Item(modality="document", inst=VISDOC_INST[1], image=path)
    qsrc: dict[str, tuple[Path, int, Item]] = {}
    for f, i, rec in read_table(task_dir / "queries", ("query-id", "query"), "BEIR queries"):
        if language is not None and rec.get("language") != language:
            continue
        try:
            text = _text(rec, "query")
            qsrc[_text(rec, "query-id")] = (
                f,
                i,
                Item(modality="text", inst=VISDOC_INST[0], text=text),
            )
        except _ItemError as e:
            ctx.bad(f, i, str(e))
    qrels: dict[str, dict[str, float]] = {}
    for f, i, rec in read_table(
        task_dir / "qrels", ("query-id", "corpus-id", "score"), "BEIR qrels"
    ):
        try:
            qid, cid = _text(rec, "query-id"), _text(rec, "corpus-id")
            score = float(rec["score"])
        except (_ItemError, TypeError, ValueError) as e:
            ctx.bad(f, i, f"malformed qrels row ({e})")
            continue
        if score <= 0:
            continue
        if qid not in qsrc:
            if language is None:  # with a language filter, other languages' qrels are expected
                ctx.bad(f, i, f"query-id {qid!r} is not in the queries (or its row was bad)")
            continue
        if cid not in cands:
            if cid not in bad_cands:
                ctx.bad(f, i, f"corpus-id {cid!r} is not in the corpus")
            continue
        qrels.setdefault(qid, {})[cid] = score
    return _finish_global(name, qsrc, qrels, cands, task_dir, ctx)


def _finish_global(
    name: str,
    qsrc: dict[str, tuple[Path, int, Item]],
    qrels: dict[str, dict[str, float]],
    cands: dict[str, Item],
    task_dir: Path,
    ctx: _Ctx,
) -> EvalTask:
    """Queries with at least one relevant candidate; the others are listed in skipped."""
    queries = []
    for qid, (f, row, item) in qsrc.items():
        if not qrels.get(qid):
            ctx.skipped.append(
                {"file": str(f), "row": row, "reason": f"query {qid!r} has no relevant candidate"}
            )
            continue
        queries.append((qid, item))
    keep = {q for q, _ in queries}
    qrels = {q: r for q, r in qrels.items() if q in keep}
    return EvalTask(name, queries, cands, None, qrels, source=str(task_dir))


# --------------------------------------------------------------------------- UVRB
def _load_uvrb(name: str, root: Path, ctx: _Ctx, **_: Any) -> EvalTask:
    ds = uvrb_dir(root) / name
    if not ds.is_dir():
        raise _missing(name, ds)
    jdir, fdir = ds / "jsonl", ds / "videos_frames"
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
    qsrc: dict[str, tuple[Path, int, Item]] = {}
    for n, rec in read_jsonl(qfile, ctx, ("id",)):
        try:
            qsrc[str(rec["id"])] = (qfile, n, _uvrb_query(rec, ds, fdir, ctx))
        except _ItemError as e:
            ctx.bad(qfile, n, str(e), unit="line")
    qrels: dict[str, dict[str, float]] = {}
    for n, rec in read_jsonl(ifile, ctx, ("qid", "pos")):
        pos = rec["pos"]
        if not isinstance(pos, list):
            ctx.bad(ifile, n, "pos should be a list of corpus ids", unit="line")
            continue
        qid = str(rec["qid"])
        if qid not in qsrc:
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
    return _finish_global(name, qsrc, qrels, cands, ds, ctx)


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


# --------------------------------------------------------------------------- entry point
_LOADERS: dict[str, Callable[..., EvalTask]] = {
    "mmeb_image": _load_mmeb_image,
    "mmeb_video_ret": _load_video_ret,
    "mmeb_video_cls": _load_video_cls,
    "mmeb_video_qa": _load_video_qa,
    "mmeb_video_mret": _load_video_mret,
    "beir": _load_beir,
    "uvrb": _load_uvrb,
}


def mmeb_dir(root: str | Path) -> Path:
    """The MMEB-V2 root under ``root``: ``root/mmeb`` in a combined benchmark root (the
    synthetic benchmark's layout, which holds ``mmeb/`` and ``uvrb/``), else ``root`` itself
    (a clone of MMEB-V2 with ``MMEB_Test_Instruct/``, ``image-tasks/``, ``video-tasks/``,
    ``visdoc-tasks/`` at its top, as ``eval.mmeb_root`` names it)."""
    root = Path(root)
    return root / "mmeb" if (root / "mmeb").is_dir() else root


def uvrb_dir(root: str | Path) -> Path:
    """The UVRB root under ``root`` (``root/uvrb`` in a combined root, else ``root``)."""
    root = Path(root)
    return root / "uvrb" if (root / "uvrb").is_dir() else root


def task_dir(layout: str, name: str, root: Path) -> Path:
    """The folder ``load_task`` reads for a task (its annotation folder)."""
    root = Path(root)
    if layout == "mmeb_image":
        return mmeb_dir(root) / "MMEB_Test_Instruct" / name
    if layout in VIDEO_KINDS:
        return mmeb_dir(root) / "video-tasks" / "data" / name
    if layout == "beir":
        return mmeb_dir(root) / "visdoc-tasks" / name
    if layout == "uvrb":
        return uvrb_dir(root) / name
    raise DataError(f"unknown layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")


def load_task(
    layout: str,
    name: str,
    root: Path,
    *,
    num_frames: int = 8,
    on_bad_item: str = "error",
    verify_media: bool = True,
    language: str | None = None,
    cache_dir: Path | None = None,
    frames_name: str | None = None,
) -> EvalTask:
    """Read task ``name`` in ``layout`` under the benchmark root ``root`` (see module doc).

    ``verify_media`` opens every referenced image and sampled frame once (PIL ``verify``) so
    a corrupt file is reported at load time, naming the file and row. ``language`` keeps only
    BEIR queries of that language; ``cache_dir`` replaces ``<Task>/_cache/corpus_images``;
    ``frames_name`` names the MMEB video frame folder when it differs from the table's
    (``K700`` frames for the ``Kinetics-700`` table, ``Charades_STA``).
    """
    if layout not in _LOADERS:
        raise DataError(
            f"unknown layout {layout!r} for task {name!r}; known layouts: {', '.join(LAYOUTS)}"
        )
    root = Path(root).resolve()
    ctx = _Ctx(on_bad_item, num_frames, verify_media)
    task = _LOADERS[layout](
        name, root, ctx, language=language, cache_dir=cache_dir, frames_name=frames_name
    )
    task.layout = layout
    task.skipped = ctx.skipped
    _attach_gt(task, task_dir(layout, name, root))
    return task


def _attach_gt(task: EvalTask, folder: Path) -> None:
    side = folder / GT_SIDECAR
    if not side.is_file():
        return
    try:
        gt = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{side}: not valid JSON ({e}); regenerate the synthetic benchmark") from e
    qgt, cgt = gt.get("queries", {}), gt.get("candidates", {})
    task.queries = [(q, _with_gt(it, qgt.get(q))) for q, it in task.queries]
    task.candidates = {c: _with_gt(it, cgt.get(c)) for c, it in task.candidates.items()}


def _with_gt(item: Item, gt: dict | None) -> Item:
    if not gt:
        return item
    from dataclasses import replace

    return replace(item, gt=dict(gt))


def load_spec(spec: Any, root: Path, **kw: Any) -> EvalTask:
    """``load_task`` for a registry ``TaskSpec``: its layout and ``data_name``; for MMEB video
    tasks the frame folder is the last part of ``spec.data_path`` when that is a frames path."""
    frames_name = None
    data_path = getattr(spec, "data_path", "") or ""
    if spec.layout in VIDEO_KINDS and "/frames/" in f"/{data_path}":
        frames_name = Path(data_path).name
    name = getattr(spec, "data_name", "") or spec.name
    task = load_task(spec.layout, name, root, frames_name=frames_name, **kw)
    task.name = spec.name
    return task
