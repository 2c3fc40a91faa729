"""What the loaders of every layout share (:mod:`ume.suites.loaders` is their entry point).

:class:`EvalTask` (what a loader returns), the per-load context ``_Ctx`` (bad-item policy,
the ``skipped`` list, media checks, where decoded page images go), frame folders (natural
order; ``num_frames`` sampled uniformly as VLM2Vec does: ``np.linspace(0, n - 1,
num_frames)``, all frames when fewer), the parquet reader, and where a task's files are:
:class:`DataRoots` (the configured roots), :class:`Source` (a task's folders relative to its
suite root, from its ``TaskSpec`` or the layout's defaults) and :func:`locate`, which turns
both into the absolute :class:`TaskFiles` every loader reads. Names with a leading
underscore are shared by the layout modules of this package and used nowhere else.

Nothing here writes into a data root: decoded page images go under the cache folder the
caller gives (``eval.cache_dir``), or a temporary folder of the process.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
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
    "fix or remove it, or set eval.on_bad_item: skip to skip such items (they are counted "
    "and listed)"
)
#: Split names HF recognises in file and folder names (a file naming none is no split's).
SPLIT_WORDS = ("train", "test", "val", "validation", "dev")


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
            "positives": sum(len(r) for r in self.qrels.values()),
            "skipped": len(self.skipped),
            "ranking": self.ranking,
        }


class _ItemError(Exception):
    """A problem with one item; becomes a DataError naming the file and row (or a skip)."""


class _Ctx:
    """Per-load state: bad-item policy, the skipped list and media check caches."""

    def __init__(
        self,
        on_bad_item: str,
        num_frames: int,
        verify_media: bool,
        cache_dir: Path | None = None,
        write_pages: bool = True,
    ) -> None:
        if on_bad_item not in ("error", "skip"):
            raise DataError(f"on_bad_item: {on_bad_item!r} is not one of 'error', 'skip'")
        if num_frames < 1:
            raise DataError(f"num_frames must be at least 1, got {num_frames}")
        self.on_bad_item = on_bad_item
        self.num_frames = num_frames
        self.verify = verify_media
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        # False: page images are checked but not written (the data check writes nothing)
        self.write_pages = write_pages
        self.skipped: list[dict[str, Any]] = []
        self._images: dict[str, str | None] = {}
        self._frames: dict[str, tuple[str, ...] | str] = {}

    def bad(self, file: Path | str, row: int | None, reason: str, unit: str = "row") -> None:
        if self.on_bad_item == "error":
            where = f"{file}: {unit} {row}: " if row is not None else f"{file}: "
            raise DataError(f"{where}{reason}; {SKIP_HINT}")
        # "row" of a parquet table (0-based), "line" of a JSONL file (1-based), as the message
        self.skipped.append({"file": str(file), unit: row, "reason": reason})

    def pages_dir(self, files: TaskFiles) -> Path:
        """Where the decoded page images of a BEIR task go: ``<cache_dir>/pages/<folder>``,
        or a temporary folder of this process; never the data root (it may be read-only
        and shared)."""
        base = self.cache_dir / "pages" if self.cache_dir is not None else _process_pages()
        return base / _safe_name(files.annotations.name)

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
def read_table(
    files: Path | Sequence[Path], required: Iterable[str], what: str, split: str = "test"
) -> list[tuple[Path, int, dict]]:
    """Rows ``(file, row index, record)`` of a table; checks the columns ``required``.

    ``files``: the parquet files, or an HF dataset folder whose ``split`` files are read
    (:func:`split_files`). Row indices are 0-based within each file.
    """
    import pandas as pd

    if isinstance(files, str | Path):
        files = _table_files(Path(files), split, what)
    out = []
    for f in files:
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
        f"task {name} missing at {path}; download it into the data root (`python -m ume "
        "check-data` says what and where) or drop the task from the evaluation"
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
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_PROCESS_PAGES: list[Path] = []


def _safe_name(s: str) -> str:
    """A file-system safe name for ``s`` (a hash suffix keeps distinct names distinct)."""
    import hashlib

    safe = _SAFE.sub("_", s)[:100]
    if safe != s:
        safe += "-" + hashlib.sha1(s.encode()).hexdigest()[:8]
    return safe


def _process_pages() -> Path:
    # one temporary folder per process, for loads without a cache folder
    if not _PROCESS_PAGES:
        _PROCESS_PAGES.append(Path(tempfile.mkdtemp(prefix="ume-pages-")))
    return _PROCESS_PAGES[0]


def mmeb_dir(root: str | Path) -> Path:
    """The MMEB-V2 root under ``root``: ``root/mmeb`` in a combined benchmark root (the
    synthetic benchmark's layout, which holds ``mmeb/`` and ``uvrb/``), else ``root`` itself
    (a clone of ``TIGER-Lab/MMEB-V2`` with ``image-tasks/``, ``video-tasks/``,
    ``visdoc-tasks/`` at its top, as ``eval.mmeb_root`` names it)."""
    root = Path(root)
    return root / "mmeb" if (root / "mmeb").is_dir() else root


def uvrb_dir(root: str | Path) -> Path:
    """The UVRB root under ``root`` (``root/uvrb`` in a combined root, else ``root``)."""
    root = Path(root)
    return root / "uvrb" if (root / "uvrb").is_dir() else root


def task_dir(layout: str, name: str, root: Path) -> Path:
    """The annotation folder of a task *without* registry folders (a synthetic task, or
    ``load_task(layout, name, root)``): where the synthetic writer puts it. Registry tasks of
    MMEB-V2 and UVRB say where theirs are (:class:`Source`, :func:`locate`)."""
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


@dataclass(frozen=True)
class DataRoots:
    """The data roots a user configures (``eval.mmeb_root``, ``eval.uvrb_root``, and the MMEB
    image tasks' annotation and image roots, which default to ``<mmeb>/image-tasks``)."""

    mmeb: Path | None = None
    uvrb: Path | None = None
    mmeb_image_annotations: Path | None = None
    mmeb_images: Path | None = None

    @classmethod
    def of(cls, root: DataRoots | str | Path | None) -> DataRoots:
        """``root`` as roots: a combined root (``mmeb/`` and ``uvrb/`` inside, as the
        synthetic benchmark) or one suite's root serves both suites."""
        if isinstance(root, DataRoots):
            return root
        if root is None:
            return cls()
        r = Path(root).resolve()
        return cls(mmeb=mmeb_dir(r), uvrb=uvrb_dir(r))

    @classmethod
    def from_eval(cls, ev: Any, suite: str, root: str | Path | None = None) -> DataRoots:
        """The roots of ``suite`` from the ``eval`` config section; ``root`` (a command's
        ``--root``) replaces ``eval.<suite>_root``."""
        base = root if root is not None else getattr(ev, f"{suite}_root", None)
        roots = cls.of(base)
        if suite == "mmeb":
            ann = getattr(ev, "mmeb_image_annotations", None)
            img = getattr(ev, "mmeb_image_root", None)
            roots = DataRoots(
                roots.mmeb,
                roots.uvrb,
                Path(ann).resolve() if ann else None,
                Path(img).resolve() if img else None,
            )
        return roots

    def suite_root(self, suite_layout: str) -> Path | None:
        return self.uvrb if suite_layout == "uvrb" else self.mmeb


@dataclass(frozen=True)
class Source:
    """Where one task's files are, relative to its suite root (a registry ``TaskSpec``'s
    ``folder``, ``subsets``, ``split``, ``frames``, ``language``; or the layout's defaults,
    which are where the synthetic writer puts a task)."""

    name: str  # the name the data is stored under
    layout: str
    folder: str = ""  # annotation folder; "" -> task_dir's
    subsets: tuple[str, ...] = ()
    split: str = "test"
    frames: str = ""  # video frame folder; "" -> video-tasks/frames/<kind>/<name>
    language: str = ""
    hf_repo: str = ""
    instruction: str = ""  # the query instruction where the table carries none ("" -> default)

    @classmethod
    def of(cls, spec: Any) -> Source:
        return cls(
            name=getattr(spec, "data_name", "") or spec.name,
            layout=spec.layout,
            folder=getattr(spec, "folder", ""),
            subsets=tuple(getattr(spec, "subsets", ()) or ()),
            split=getattr(spec, "split", "") or "test",
            frames=getattr(spec, "frames", ""),
            language=getattr(spec, "language", ""),
            hf_repo=getattr(spec, "hf_repo", ""),
            instruction=getattr(spec, "instruction", ""),
        )


@dataclass(frozen=True)
class TaskFiles:
    """The absolute folders of one task under the given roots (what a loader reads).

    ``annotations``: the HF dataset folder of the task's tables (for ``mmeb_image`` the
    annotation root, whose sub-folders are the subsets; for ``beir`` the folder holding
    ``corpus/``, ``queries/``, ``qrels/``; for ``uvrb`` the dataset folder). ``media``: the
    image root (``mmeb_image``), the frame folder (video), the ``corpus`` folder (``beir``),
    ``videos_frames`` (``uvrb``). ``root`` is None when the suite has no root configured.
    """

    source: Source
    root: Path | None
    annotations: Path
    media: Path

    @property
    def name(self) -> str:
        return self.source.name

    def tables(self, config: str | None = None) -> list[tuple[str, Path]]:
        """``(subset, folder)`` of each table to read: the subsets' sub-folders (``""`` for
        the default config), or ``config``'s sub-folder (BEIR: corpus, queries, qrels)."""
        if config is not None:
            return [("", self.annotations / config)]
        if self.source.subsets:
            return [(s, self.annotations / s) for s in self.source.subsets]
        return [("", self.annotations)]


def locate(spec_or_source: Any, roots: DataRoots | str | Path | None) -> TaskFiles:
    """The folders of a task (a ``TaskSpec`` or :class:`Source`) under ``roots``."""
    src = spec_or_source if isinstance(spec_or_source, Source) else Source.of(spec_or_source)
    roots = DataRoots.of(roots)
    if src.layout not in LAYOUTS:
        raise DataError(f"unknown layout {src.layout!r}; known layouts: {', '.join(LAYOUTS)}")
    base = roots.suite_root(src.layout)
    if base is None:
        nowhere = Path("<no root>")
        return TaskFiles(src, None, nowhere / src.name, nowhere)
    if src.layout == "mmeb_image":
        if src.subsets:  # a registry task: subsets of the annotation root
            ann = roots.mmeb_image_annotations or base / src.folder
        else:
            ann = base / src.folder if src.folder else task_dir(src.layout, src.name, base)
        media = roots.mmeb_images or base / "image-tasks"
    elif src.layout in VIDEO_KINDS:
        ann = base / src.folder if src.folder else task_dir(src.layout, src.name, base)
        media = (
            base / src.frames
            if src.frames
            else base / "video-tasks" / "frames" / VIDEO_KINDS[src.layout] / src.name
        )
    elif src.layout == "beir":
        ann = base / src.folder if src.folder else task_dir(src.layout, src.name, base)
        media = ann / "corpus"
    else:  # uvrb
        ann = base / src.folder if src.folder else task_dir(src.layout, src.name, base)
        media = ann / "videos_frames"
    return TaskFiles(src, base, ann, media)


# --------------------------------------------------------------------------- split files
def _names_split(path: Path, folder: Path) -> str | None:
    """The split a parquet file's name (or a folder between it and ``folder``) names."""
    parts = [*path.relative_to(folder).parent.parts, path.name]
    for part in parts:
        head = re.split(r"[-_.]", part.lower(), maxsplit=1)[0]
        if head in SPLIT_WORDS:
            return head
    return None


def split_files(folder: Path, split: str) -> list[Path]:
    """The parquet files of ``split`` in one HF dataset folder (one config), found the way
    the HF ``datasets`` library names them: ``<split>-*.parquet`` (or ``<split>_*``) in the
    folder or its ``data/`` sub-folder, or any parquet under a ``<split>/`` sub-folder. A
    folder whose files name no split at all is taken whole. [] when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(
        p
        for pattern in (
            "*.parquet",
            "data/*.parquet",
            f"{split}/*.parquet",
            f"data/{split}/*.parquet",
        )
        for p in folder.glob(pattern)
        if p.is_file()
    )
    files = sorted(set(files))
    named = {p: _names_split(p, folder) for p in files}
    mine = [p for p in files if named[p] == split]
    if mine:
        return mine
    return files if files and all(v is None for v in named.values()) else []


def _split_hint(folder: Path, split: str) -> str:
    return f"{folder}/{split}-*.parquet"


def _table_files(folder: Path, split: str, what: str) -> list[Path]:
    """The split's parquet files of ``folder``, or a DataError naming what is there."""
    files = split_files(folder, split)
    if files:
        return files
    if not folder.is_dir():
        raise DataError(f"{folder}: folder missing; the {what} needs {_split_hint(folder, split)}")
    other = sorted(p.name for p in folder.rglob("*.parquet"))[:5]
    raise DataError(
        f"{folder}: no parquet file of split {split!r} (expected {_split_hint(folder, split)}"
        + (f"; found {other}" if other else "")
        + "); download the task again (see docs/evaluation.md, 'Data roots')"
    )
