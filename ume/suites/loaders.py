"""Loaders of the real MMEB-V2 and UVRB layouts (the synthetic suite is written in the same ones).

``load_task(layout, name, root)`` reads one task under a benchmark root and returns an
:class:`~ume.suites.base.EvalTask` of :class:`~ume.items.Item` s with absolute paths;
``load_spec`` does the same for a registry ``TaskSpec``. Each layout has its module, which
documents it (paths relative to ``root``; see ``docs/benchmarks.md`` of the shared docs for
the benchmarks' own facts): ``mmeb_image`` (:mod:`ume.suites.mmeb_image`), the
``mmeb_video_*`` layouts (:mod:`ume.suites.mmeb_video`), ``beir`` (:mod:`ume.suites.visdoc`)
and ``uvrb`` (:mod:`ume.suites.uvrb`); what they share is in :mod:`ume.suites.base`.

Video items carry ``num_frames`` frames sampled uniformly as VLM2Vec does
(``np.linspace(0, n - 1, num_frames)``, natural filename order; all frames when fewer).
Instructions the tables do not carry are VLM2Vec's (video, visdoc); UVRB's are our choice
(:data:`ume.suites.uvrb.UVRB_INSTRUCTIONS`).

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

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.items import Item
from ume.suites.base import GT_SIDECAR, LAYOUTS, VIDEO_KINDS, EvalTask, _Ctx, task_dir
from ume.suites.mmeb_image import _load_mmeb_image
from ume.suites.mmeb_video import _load_video_cls, _load_video_mret, _load_video_qa, _load_video_ret
from ume.suites.uvrb import _load_uvrb
from ume.suites.visdoc import _load_beir

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
    query_gt, candidate_gt = gt.get("queries", {}), gt.get("candidates", {})
    task.queries = [(q, _with_gt(it, query_gt.get(q))) for q, it in task.queries]
    task.candidates = {c: _with_gt(it, candidate_gt.get(c)) for c, it in task.candidates.items()}


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
