"""The ``beir`` layout: MMEB-V2's visual-document retrieval tasks.

As a user has them (VLM2Vec ``dataset_hflocal_path.py``): a git clone of each task's HF repo
in ``visdoc-tasks/<repo name>/`` (e.g. ViDoRe_docvqa -> ``docvqa_test_subsampled_beir``,
ViDoSeek-page -> ``ViDoSeek-page``, MMLongBench-page -> ``MMLongBench``; the registry's
``folder``), holding the BEIR configs ``corpus/``, ``queries/``, ``qrels/`` with the split's
files (``test``; ``train`` for VisRAG): queries (``query-id``, ``query``[, ``language``]),
corpus (``corpus-id``, ``image`` as the HF Image struct ``{bytes, path}``), qrels
(``query-id``, ``corpus-id``, ``score``; graded). A task with a ``language`` (the ViDoRe-V2
``english`` subsets) keeps only those queries, as VLM2Vec filters them.

Page images live only inside the corpus: they are decoded and written once as files under
the cache folder (``<cache_dir>/pages/<folder>/``, atomic writes), never into the data
root. qrels that repeat a (query, corpus) pair keep the highest grade whatever the row order
(VLM2Vec ``load_qrels_mapping``); grades <= 0 are not relevant. Global ranking;
instructions are VLM2Vec's.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.io import atomic_path
from ume.items import Item
from ume.suites.base import (
    EvalTask,
    TaskFiles,
    _Ctx,
    _finish_global,
    _ItemError,
    _missing,
    _safe_name,
    _text,
    read_table,
)

VISDOC_INST = (
    "Find a document image that matches the given query:",
    "Understand the content of the provided document image.",
)


# --------------------------------------------------------------------------- BEIR visdoc
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
        # named by content too: caches of other roots or versions of a task never collide
        digest = hashlib.sha1(bytes(data)).hexdigest()[:12]
        out = cache / f"{_safe_name(cid)}-{digest}{ext}"
        if ctx.write_pages and not out.is_file():
            try:
                with atomic_path(out) as tmp:
                    tmp.write_bytes(bytes(data))
            except OSError as e:
                raise DataError(
                    f"cannot write the page images of the corpus to {cache} ({e}); set "
                    "eval.cache_dir to a writable folder"
                ) from e
        return str(out)
    if rel:
        p = Path(rel)
        return ctx.image(p if p.is_absolute() else task_dir / p)
    raise _ItemError(f"image of corpus-id {cid!r} has neither bytes nor path")


def _load_beir(files: TaskFiles, ctx: _Ctx) -> EvalTask:
    name, task_dir, split = files.name, files.annotations, files.source.split
    language = files.source.language or None
    if not task_dir.is_dir():
        raise _missing(name, task_dir)
    cache = ctx.pages_dir(files)
    cands: dict[str, Item] = {}
    bad_cands: set[str] = set()
    corpus = read_table(task_dir / "corpus", ("corpus-id", "image"), "BEIR corpus", split)
    for f, i, rec in corpus:
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
    for f, i, rec in read_table(task_dir / "queries", ("query-id", "query"), "BEIR queries", split):
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
        task_dir / "qrels", ("query-id", "corpus-id", "score"), "BEIR qrels", split
    ):
        try:
            qid, cid = _text(rec, "query-id"), _text(rec, "corpus-id")
            score = float(rec["score"])
        except (_ItemError, TypeError, ValueError) as e:
            ctx.bad(f, i, f"malformed qrels row ({e})")
            continue
        if score != score:  # NaN
            ctx.bad(f, i, "malformed qrels row (score is NaN)")
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
        graded = qrels.setdefault(qid, {})
        graded[cid] = max(score, graded.get(cid, score))  # a repeated pair keeps its best grade
    return _finish_global(name, query_rows, qrels, cands, task_dir, ctx)
