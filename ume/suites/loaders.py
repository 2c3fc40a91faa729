"""Loaders of the real MMEB-V2 and UVRB layouts (the synthetic suite is written in the same ones).

``load_spec(spec, roots)`` reads one registry task where a user has it (its ``folder``,
``subsets``, ``split``, ``frames`` under the configured :class:`~ume.suites.base.DataRoots`)
and returns an :class:`~ume.suites.base.EvalTask` of :class:`~ume.items.Item` s with
absolute paths; ``load_task(layout, name, root)`` reads a task at the layout's default place
(where the synthetic writer puts it). Each layout has its module, which documents it (see
``docs/benchmarks.md`` of the shared docs for the benchmarks' own facts): ``mmeb_image``
(:mod:`ume.suites.mmeb_image`), the ``mmeb_video_*`` layouts (:mod:`ume.suites.mmeb_video`),
``beir`` (:mod:`ume.suites.visdoc`) and ``uvrb`` (:mod:`ume.suites.uvrb`); what they share
is in :mod:`ume.suites.base`. Whether a task is there at all (found, missing, incomplete)
is :func:`ume.suites.check.task_status`'s to say.

Video items carry ``num_frames`` frames sampled uniformly as VLM2Vec does
(``np.linspace(0, n - 1, num_frames)``, natural filename order; all frames when fewer).
Instructions the tables do not carry are VLM2Vec's (video, visdoc); UVRB's are our choice
(:data:`ume.suites.uvrb.UVRB_INSTRUCTIONS`).

Nothing is written into a data root: BEIR page images are decoded into ``cache_dir``
(``<cache_dir>/pages/``), or a temporary folder of the process when none is given.

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
from ume.suites.base import (
    GT_SIDECAR,
    LAYOUTS,
    DataRoots,
    EvalTask,
    Source,
    TaskFiles,
    _Ctx,
    locate,
)
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
    root: DataRoots | str | Path,
    *,
    num_frames: int = 8,
    on_bad_item: str = "error",
    verify_media: bool = True,
    language: str | None = None,
    cache_dir: Path | None = None,
    write_pages: bool = True,
) -> EvalTask:
    """Read task ``name`` in ``layout`` at the layout's default place under ``root`` (see
    module doc); ``language`` keeps only BEIR queries of that language."""
    if layout not in _LOADERS:
        raise DataError(
            f"unknown layout {layout!r} for task {name!r}; known layouts: {', '.join(LAYOUTS)}"
        )
    src = Source(name=name, layout=layout, language=language or "")
    return read_files(
        locate(src, root),
        num_frames=num_frames,
        on_bad_item=on_bad_item,
        verify_media=verify_media,
        cache_dir=cache_dir,
        write_pages=write_pages,
    )


def read_files(
    files: TaskFiles,
    *,
    num_frames: int = 8,
    on_bad_item: str = "error",
    verify_media: bool = True,
    cache_dir: Path | None = None,
    write_pages: bool = True,
) -> EvalTask:
    """Read the task at ``files`` (:func:`ume.suites.base.locate`).

    ``verify_media`` opens every referenced image and sampled frame once (PIL ``verify``) so
    a corrupt file is reported at load time, naming the file and row; without it only their
    existence is checked. ``cache_dir``: where BEIR page images are decoded to
    (``<cache_dir>/pages/``); ``write_pages=False`` checks them without writing.
    """
    if files.root is None:
        raise DataError(
            f"task {files.name}: no data root is configured for it (eval.mmeb_root / eval.uvrb_root)"
        )
    ctx = _Ctx(on_bad_item, num_frames, verify_media, cache_dir, write_pages)
    task = _LOADERS[files.source.layout](files, ctx)
    task.layout = files.source.layout
    task.skipped = ctx.skipped
    _attach_gt(task, files.tables()[0][1])  # the synthetic writer's sidecar, if any
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


def load_spec(spec: Any, root: DataRoots | str | Path, **kw: Any) -> EvalTask:
    """``read_files`` for a registry ``TaskSpec`` under ``root`` (a :class:`DataRoots`, a
    combined root or a suite root); the task is named by its scoring name."""
    task = read_files(locate(spec, root), **kw)
    task.name = spec.name
    return task
