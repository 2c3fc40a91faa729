"""What the loaders of every layout share (:mod:`ume.suites.loaders` is their entry point).

:class:`EvalTask` (what a loader returns), the per-load context ``_Ctx`` (bad-item policy,
the ``skipped`` list, media checks), frame folders (natural order; ``num_frames`` sampled
uniformly as VLM2Vec does: ``np.linspace(0, n - 1, num_frames)``, all frames when fewer),
the parquet reader, and where each layout keeps a task under a benchmark root
(:func:`mmeb_dir`, :func:`uvrb_dir`, :func:`task_dir`). Names with a leading underscore are
shared by the layout modules of this package and used nowhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ume.errors import DataError
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


# --------------------------------------------------------------------------- shared by layouts
def _video_item(ctx: _Ctx, folder: Path, inst: str, text: str = "") -> Item:
    return Item(modality="video", inst=inst, text=text, frames=ctx.frames(folder))


def _finish_global(
    name: str,
    query_rows: dict[str, tuple[Path, int, Item]],
    qrels: dict[str, dict[str, float]],
    cands: dict[str, Item],
    task_dir: Path,
    ctx: _Ctx,
) -> EvalTask:
    """Queries with at least one relevant candidate; the others are listed in skipped."""
    queries = []
    for qid, (f, row, item) in query_rows.items():
        if not qrels.get(qid):
            ctx.skipped.append(
                {"file": str(f), "row": row, "reason": f"query {qid!r} has no relevant candidate"}
            )
            continue
        queries.append((qid, item))
    keep = {q for q, _ in queries}
    qrels = {q: r for q, r in qrels.items() if q in keep}
    return EvalTask(name, queries, cands, None, qrels, source=str(task_dir))


# --------------------------------------------------------------------------- folders
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
