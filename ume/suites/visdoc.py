"""The ``beir`` layout: MMEB-V2's visual-document retrieval tasks.

``mmeb/visdoc-tasks/<Task>/{queries,corpus,qrels}/*.parquet``: queries (``query-id``,
``query``[, ``language``]), corpus (``corpus-id``, ``image`` as the HF Image struct
``{bytes, path}``), qrels (``query-id``, ``corpus-id``, ``score``; graded). Corpus
images are extracted once into ``<Task>/_cache/corpus_images/`` (atomic writes; or
``cache_dir``). Global ranking; qrels with score <= 0 are not relevant. Instructions are
VLM2Vec's.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.io import atomic_path
from ume.items import Item
from ume.suites.base import (
    EvalTask,
    _Ctx,
    _finish_global,
    _ItemError,
    _missing,
    _text,
    mmeb_dir,
    read_table,
)

VISDOC_INST = (
    "Find a document image that matches the given query:",
    "Understand the content of the provided document image.",
)


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
    query_rows: dict[str, tuple[Path, int, Item]] = {}
    for f, i, rec in read_table(task_dir / "queries", ("query-id", "query"), "BEIR queries"):
        if language is not None and rec.get("language") != language:
            continue
        try:
            text = _text(rec, "query")
            query_rows[_text(rec, "query-id")] = (
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
        if qid not in query_rows:
            if language is None:  # with a language filter, other languages' qrels are expected
                ctx.bad(f, i, f"query-id {qid!r} is not in the queries (or its row was bad)")
            continue
        if cid not in cands:
            if cid not in bad_cands:
                ctx.bad(f, i, f"corpus-id {cid!r} is not in the corpus")
            continue
        qrels.setdefault(qid, {})[cid] = score
    return _finish_global(name, query_rows, qrels, cands, task_dir, ctx)
