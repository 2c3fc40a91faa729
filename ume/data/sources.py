"""Loaders for the paper's training sources (the VLM2Vec-V2 recipe), read from local copies.

Each source becomes rows of THE pair format (:mod:`ume.items`); items hold absolute
paths. The layouts are the public ones, as the VLM2Vec-V2 and Embed-RL training code reads them:

``data.real.mmeb_train_root`` — a copy of HF ``TIGER-Lab/MMEB-train``::

    <root>/<Subset>/original-00000-of-00001.parquet    columns qry, qry_image_path, pos_text,
                                                       pos_image_path, neg_text, neg_image_path
    <root>/images/<Subset>/Train/<file>.jpg             images_zip/<Subset>.zip, unzipped

  Image paths in the parquet (``images/<Subset>/Train/...``) are relative to
  ``data.real.mmeb_train_image_root`` (default: the root). Texts start with the Phi-3-V image
  marker ``<|image_1|>``, which is removed: the image travels in the item's ``image`` field.
  The instruction stays inside ``text`` (MMEB-train does not separate it); ``inst`` is empty.
  Negatives (``neg_*``) are not part of the pair format and are ignored.

``data.real.llava_hound_root`` — a copy of HF ``ShareGPTVideo/train_video_and_instruction``::

    <root>/video_instruction/train/sft/video_caption_300k.jsonl       caption and video retrieval
    <root>/video_instruction/train/sft/video_240k_caption_15k.jsonl   QA
    <root>/train_300k/<video>/c01_0001.jpeg ...                        frames (chunk_*.tar.gz)

  JSONL rows are ``{"id", "video", "conversations": [{"from": "human", "value": "<video>\\n..."},
  {"from": "gpt", "value": ...}]}``. ``num_frames`` frames are taken uniformly from the
  naturally sorted frame files (all of them when a folder has fewer), as VLM2Vec does.

``data.real.vidore_root`` — a copy of HF ``vidore/colpali_train_set``: ``data/train-*.parquet``
with ``query``, ``image`` ({bytes, path}), ``image_filename``, ``answer``, ``source``, ...

``data.real.visrag_root`` — a copy of HF ``openbmb/VisRAG-Ret-Train-In-domain-data``:
``data/train-*.parquet`` with ``query``, ``image`` ({bytes, path}), ``source``.

Document pages are stored as bytes; they are extracted (once, atomically, named by content
hash) under ``extract_dir/<dataset>/``, so a read-only data root is never written to.

Caps: when a dataset has more rows than its cap, a seeded permutation of its rows is walked
until ``cap`` good rows are found (rows are checked only as they are reached, so a 300k-row
set is not verified in full to keep 50k); kept rows are returned in source order with
``pair_id = <dataset>:<row index in the concatenated source files>``. A bad item (missing or
corrupt image, missing frame folder, malformed row) raises :class:`DataError` naming the file
and row, or, with ``on_bad_item="skip"``, is left out and listed in ``SourceResult.skipped``
as ``{file, row, pair_id, column, reason}`` (:data:`ume.pair_table.SKIP_FIELDS`): ``row`` is
the 0-based parquet row of ``file``; a JSONL source has ``line`` (1-based, as editors count)
instead; ``pair_id`` is the id the pair would have had; ``column`` is None (a source row's
fault is the item's, not one pair column's).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ume.config import RealSourcesConfig, SourceDatasetConfig
from ume.errors import ConfigError, DataError
from ume.io import atomic_path
from ume.items import Item, pair_row, pairs_frame
from ume.progress import progress
from ume.suites.base import IMAGE_EXTENSIONS


class SourceSpec(NamedTuple):
    kind: str  # mmeb_train | llava_hound_caption | llava_hound_qa | llava_hound_video_ret | vidore | visrag
    modality: str  # task modality: image | video | visdoc
    subset: str  # MMEB-train subset, LLaVA-Hound annotation file stem, or HF dataset name


# The 20 image subsets of MMEB-train as VLM2Vec-V2's experiments/public/train/train_v2.yaml lists them.
MMEB_TRAIN_SUBSETS = (
    "ImageNet_1K",
    "N24News",
    "HatefulMemes",
    "VOC2007",
    "SUN397",
    "OK-VQA",
    "A-OKVQA",
    "DocVQA",
    "InfographicsVQA",
    "ChartQA",
    "Visual7W",
    "VisDial",
    "CIRR",
    "VisualNews_t2i",
    "VisualNews_i2t",
    "MSCOCO_t2i",
    "MSCOCO_i2t",
    "NIGHTS",
    "WebQA",
    "MSCOCO",
)

SOURCE_DATASETS: dict[str, SourceSpec] = {
    **{s: SourceSpec("mmeb_train", "image", s) for s in MMEB_TRAIN_SUBSETS},
    # names as the Embed-RL release calls them (its dataset_name field)
    "llavahound_caption_retrieval": SourceSpec(
        "llava_hound_caption", "video", "video_caption_300k"
    ),
    "llavahound_qa": SourceSpec("llava_hound_qa", "video", "video_240k_caption_15k"),
    "llavahound_video_retrieval": SourceSpec(
        "llava_hound_video_ret", "video", "video_caption_300k"
    ),
    "ViDoRe": SourceSpec("vidore", "visdoc", "colpali_train_set"),
    "VisRAG": SourceSpec("visrag", "visdoc", "VisRAG-Ret-Train-In-domain-data"),
}

# Instructions for the sources whose rows carry none (our wording, not the paper's).
INSTRUCTIONS = {
    "llava_hound_qa": "Answer a question about the video.",
    "video_ret_qry": "Find a video that shows the following content.",
    "video_ret_pos": "Represent the content of the video.",
    "doc_qry": "Find the document page that answers the question.",
    "doc_pos": "Represent the document page.",
}

_ROOT_KEYS = {
    "mmeb_train": (
        "mmeb_train_root",
        "a local copy of TIGER-Lab/MMEB-train (<Subset>/original-*.parquet; images/ unzipped "
        "from images_zip/<Subset>.zip)",
    ),
    "llava_hound": (
        "llava_hound_root",
        "a local copy of ShareGPTVideo/train_video_and_instruction (video_instruction/train/sft/"
        "*.jsonl and train_300k/<video>/ frame folders)",
    ),
    "vidore": ("vidore_root", "a local copy of vidore/colpali_train_set (data/train-*.parquet)"),
    "visrag": (
        "visrag_root",
        "a local copy of openbmb/VisRAG-Ret-Train-In-domain-data (data/train-*.parquet)",
    ),
}

_IMAGE_MARKER = re.compile(r"<\|image_\d+\|>")
_VIDEO_MARKER = re.compile(r"<video>|<image>")
_SKIP_HINT = (
    "Fix or remove the item, or set data.on_bad_item: skip to leave such items out "
    "(they are counted and listed in the manifest)."
)


@dataclass
class SourceResult:
    """One dataset loaded: its pairs and what happened on the way."""

    dataset: str
    df: Any  # pandas.DataFrame in the pair format
    weight: float
    cap: int | None
    total_before_cap: int  # rows in the source files
    skipped: list[dict[str, Any]] = field(default_factory=list)  # see the module doc

    @property
    def kept(self) -> int:
        return len(self.df)

    def stats(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "cap": self.cap,
            "total_before_cap": self.total_before_cap,
            "kept": self.kept,
            "skipped": len(self.skipped),
            "skipped_items": list(self.skipped),
        }


class _Bad(Exception):
    """One row or item is unusable; the message says why and, where it can, what to do."""


# --------------------------------------------------------------------------- tables
class _ParquetTable:
    """Rows of one or more parquet shards, addressed by a global row index.

    Only what a batch of rows needs is read: the row groups that hold them, the columns the
    builder uses, one row group at a time (a refill batch of the cap walk reads the few row
    groups of its rows, not the shards again, image bytes included).
    """

    row_label = "row"  # 0-based, within its shard file
    row_words = "row {} (0-based parquet row)"

    def __init__(self, files: list[Path], columns: tuple[str, ...], required: tuple[str, ...]):
        import pyarrow.parquet as pq

        self.shards: list[tuple[Path, list[str], list[int]]] = []  # file, columns, group starts
        self.starts: list[int] = []
        self.row_groups_read = 0
        total = 0
        for f in files:
            try:
                pf = pq.ParquetFile(f)
                n, names = pf.metadata.num_rows, pf.schema_arrow.names
                sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
            except Exception as e:
                raise DataError(
                    f"{f}: not a readable parquet file ({type(e).__name__}: {e}); download it again"
                ) from e
            missing = [c for c in required if c not in names]
            if missing:
                raise DataError(
                    f"{f}: missing columns {missing} (it has {names}); "
                    "is this the right dataset's file?"
                )
            group_starts = [0]
            for size in sizes[:-1]:
                group_starts.append(group_starts[-1] + size)
            self.shards.append((f, [c for c in columns if c in names], group_starts))
            self.starts.append(total)
            total += n
        self.total = total

    def rows(self, indices: list[int]) -> Iterator[tuple[int, str, int, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_group: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i in indices:
            s = bisect.bisect_right(self.starts, i) - 1
            r = i - self.starts[s]
            g = bisect.bisect_right(self.shards[s][2], r) - 1
            by_group.setdefault((s, g), []).append((i, r))
        files: dict[int, Any] = {}
        for (s, g), members in sorted(by_group.items()):
            f, cols, group_starts = self.shards[s]
            try:
                if s not in files:
                    files = {s: pq.ParquetFile(f)}  # one open file at a time
                table = files[s].read_row_group(g, columns=cols)
                recs = table.take(pa.array([r - group_starts[g] for _, r in members])).to_pylist()
            except Exception as e:
                raise DataError(
                    f"{f}: cannot read rows ({type(e).__name__}: {e}); download it again"
                ) from e
            self.row_groups_read += 1
            del table
            for (i, r), rec in zip(members, recs, strict=True):
                yield i, str(f), r, rec


class _JsonlTable:
    """Lines of a JSONL file; only byte offsets are held, a line is parsed when reached."""

    row_label = "line"  # 1-based, blank lines counted
    row_words = "line {}"

    def __init__(self, file: Path):
        self.file = file
        self.offsets: list[int] = []
        self.line_nos: list[int] = []
        pos = 0
        with open(file, "rb") as fh:
            for no, line in enumerate(fh, start=1):
                if line.strip():
                    self.offsets.append(pos)
                    self.line_nos.append(no)
                pos += len(line)
        self.total = len(self.offsets)

    def rows(self, indices: list[int]) -> Iterator[tuple[int, str, int, Any]]:
        with open(self.file, "rb") as fh:
            for i in indices:
                fh.seek(self.offsets[i])
                line = fh.readline()
                try:
                    rec: Any = json.loads(line)
                    if not isinstance(rec, dict):
                        rec = _Bad(f"malformed row: a JSON {type(rec).__name__}, not an object")
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    rec = _Bad(f"malformed row: not valid JSON ({e})")
                yield i, str(self.file), self.line_nos[i], rec


# --------------------------------------------------------------------------- checks
class _ImageChecker:
    """Existence and PIL ``verify`` of image files, cached per path."""

    def __init__(self, verify: bool):
        self.verify = verify
        self.cache: dict[str, str | None] = {}

    def __call__(self, path: str, missing_hint: str) -> None:
        if path not in self.cache:
            reason = None
            if not os.path.isfile(path):
                reason = f"image {path} not found; {missing_hint}"
            elif self.verify:
                reason = _verify_image(path)
            self.cache[path] = reason
        if self.cache[path]:
            raise _Bad(self.cache[path])


def _verify_image(src: str | bytes) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im.verify()
    except Exception as e:
        where = "image bytes" if isinstance(src, bytes) else f"image {src}"
        return f"corrupt {where} ({type(e).__name__}: {e})"
    return None


def _text(rec: Mapping[str, Any], col: str) -> str:
    v = rec.get(col)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _Bad(f"malformed row: column {col!r} is a {type(v).__name__}, not a string")
    return v


# --------------------------------------------------------------------------- MMEB-train
def _mmeb_files(root: Path, subset: str) -> list[Path]:
    d = root / subset
    # HF repo layout first; the parquet-converter and pre-2025 layouts as fallbacks.
    for pattern in (
        "original-*.parquet",
        "original/*.parquet",
        "train-*.parquet",
        "train/*.parquet",
    ):
        files = sorted(d.glob(pattern))
        if files:
            return files
    raise DataError(
        f"{d}: no MMEB-train parquet for subset {subset} (looked for original-*.parquet); "
        f"download subset {subset} of TIGER-Lab/MMEB-train (split 'original') into {root}"
    )


def _mmeb_builder(subset: str, image_root: Path, check: _ImageChecker) -> Callable:
    hint = (
        f"unzip images_zip/{subset}.zip of TIGER-Lab/MMEB-train into {image_root}/images "
        "(or set data.real.mmeb_train_image_root)"
    )

    def side(rec: Mapping[str, Any], text_col: str, image_col: str, what: str) -> Item:
        text = _IMAGE_MARKER.sub("", _text(rec, text_col)).strip()
        rel = _text(rec, image_col).strip()
        if not text and not rel:
            raise _Bad(f"malformed row: empty {what} (no {text_col} and no {image_col})")
        if not rel:
            return Item(modality="text", text=text)
        path = os.path.join(image_root, rel)
        check(path, hint)
        return Item(modality="image", text=text, image=path)

    def build(rec: Mapping[str, Any]) -> tuple[Item, Item]:
        return (
            side(rec, "qry", "qry_image_path", "query"),
            side(rec, "pos_text", "pos_image_path", "positive"),
        )

    return build


# --------------------------------------------------------------------------- LLaVA-Hound
def sample_frame_files(names: list[str], num_frames: int) -> list[str]:
    """``num_frames`` names spread uniformly over the naturally sorted list (all if fewer).

    >>> sample_frame_files([f"f{i}.jpg" for i in range(1, 11)], 4)
    ['f1.jpg', 'f4.jpg', 'f7.jpg', 'f10.jpg']
    """
    # the evaluation loaders' own sampling: training and evaluation see videos alike
    from ume.suites.base import natural_key, sample_frames

    names = sorted(names, key=natural_key)
    return names if num_frames <= 0 else sample_frames(names, num_frames)


def _llava_builder(kind: str, frame_root: Path, num_frames: int, check: _ImageChecker) -> Callable:
    hint = (
        f"extract the train_300k/chunk_*.tar.gz of ShareGPTVideo/train_video_and_instruction "
        f"into {frame_root}"
    )

    def frames(video: str) -> tuple[str, ...]:
        d = frame_root / video
        if not d.is_dir():
            raise _Bad(f"frame folder {d} missing; {hint}")
        names = [n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not names:
            raise _Bad(f"frame folder {d} holds no .jpg/.jpeg/.png frames; {hint}")
        paths = tuple(str(d / n) for n in sample_frame_files(names, num_frames))
        for p in paths:
            check(p, hint)
        return paths

    def build(rec: Mapping[str, Any]) -> tuple[Item, Item]:
        video = _text(rec, "video").strip()
        if not video:
            raise _Bad("malformed row: no 'video' id")
        conv = rec.get("conversations")
        if not (
            isinstance(conv, list)
            and len(conv) >= 2
            and all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in conv[:2])
        ):
            raise _Bad("malformed row: 'conversations' is not a list of >= 2 {from, value} turns")
        if conv[0].get("from", "human") != "human" or conv[1].get("from", "gpt") != "gpt":
            raise _Bad("malformed row: the first two turns are not human then gpt")
        human = _VIDEO_MARKER.sub("", conv[0]["value"]).strip()
        answer = conv[1]["value"].strip()
        if not answer:
            raise _Bad("malformed row: empty gpt turn")
        if kind == "llava_hound_video_ret":
            qry = Item(modality="text", inst=INSTRUCTIONS["video_ret_qry"], text=answer)
            pos = Item(modality="video", inst=INSTRUCTIONS["video_ret_pos"], frames=frames(video))
            return qry, pos
        if kind == "llava_hound_qa":
            if not human:
                raise _Bad("malformed row: empty question (human turn)")
            qry = Item(
                modality="video",
                inst=INSTRUCTIONS["llava_hound_qa"],
                text=human,
                frames=frames(video),
            )
        else:  # caption retrieval: the human turn is the captioning instruction
            qry = Item(modality="video", inst=human, frames=frames(video))
        return qry, Item(modality="text", text=answer)

    return build


# --------------------------------------------------------------------------- documents
def _doc_files(root: Path, subdir: str, what: str) -> list[Path]:
    for d in (root / "data", root / subdir / "data"):
        files = sorted(d.glob("train-*.parquet"))
        if files:
            return files
    raise DataError(
        f"{root}: no data/train-*.parquet found; download {what} into this folder "
        "(keeping its data/ subfolder)"
    )


_EXT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
}


def _extract_image(data: bytes, out_root: Path, verify: bool) -> str:
    from PIL import Image

    if verify and (reason := _verify_image(data)):
        raise _Bad(reason)
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format or "PNG"
    except Exception as e:
        raise _Bad(f"corrupt image bytes ({type(e).__name__}: {e})") from e
    digest = hashlib.sha1(data).hexdigest()
    path = out_root / digest[:2] / f"{digest}{_EXT.get(fmt, '.' + fmt.lower())}"
    if not path.is_file():  # content-addressed: an existing file already holds these bytes
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return str(path)


def _doc_builder(out_root: Path, verify: bool) -> Callable:
    def build(rec: Mapping[str, Any]) -> tuple[Item, Item]:
        query = _text(rec, "query").strip()
        if not query:
            raise _Bad("malformed row: empty 'query'")
        img = rec.get("image")
        data = img.get("bytes") if isinstance(img, dict) else img
        if not isinstance(data, bytes) or not data:
            raise _Bad("malformed row: 'image' holds no bytes")
        page = _extract_image(data, out_root, verify)
        return (
            Item(modality="text", inst=INSTRUCTIONS["doc_qry"], text=query),
            Item(modality="document", inst=INSTRUCTIONS["doc_pos"], image=page),
        )

    return build


# --------------------------------------------------------------------------- entry points
def _unknown(name: str) -> ConfigError:
    return ConfigError(
        f"data.real.datasets.{name}: unknown training dataset {name!r}; "
        f"known names: {', '.join(SOURCE_DATASETS)}"
    )


def _root(real: RealSourcesConfig, family: str) -> Path:
    key, what = _ROOT_KEYS[family]
    value = getattr(real, key)
    if not value:
        raise ConfigError(f"data.real.{key} is not set; set it to {what}")
    path = Path(os.path.abspath(os.path.expanduser(value)))
    if not path.is_dir():
        raise ConfigError(f"data.real.{key} = {value!r}: no such folder; set it to {what}")
    return path


def _dataset_config(real: RealSourcesConfig, name: str) -> tuple[float, int | None]:
    cfg = real.datasets.get(name) or SourceDatasetConfig()
    get = cfg.get if isinstance(cfg, Mapping) else lambda k, d=None: getattr(cfg, k, d)
    weight, cap = get("weight", 1.0), get("cap", None)
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
        raise ConfigError(f"data.real.datasets.{name}.weight = {weight!r}: must be a number >= 0")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 0):
        raise ConfigError(
            f"data.real.datasets.{name}.cap = {cap!r}: must be null or an integer >= 0"
        )
    return float(weight), cap


def _table_and_builder(
    spec: SourceSpec,
    name: str,
    real: RealSourcesConfig,
    *,
    num_frames: int,
    extract_dir: str | os.PathLike | None,
    check: _ImageChecker,
) -> tuple[Any, Callable]:
    if spec.kind == "mmeb_train":
        root = _root(real, "mmeb_train")
        image_root = root
        if real.mmeb_train_image_root:
            image_root = Path(os.path.abspath(os.path.expanduser(real.mmeb_train_image_root)))
            if not image_root.is_dir():
                raise ConfigError(
                    f"data.real.mmeb_train_image_root = {real.mmeb_train_image_root!r}: no such "
                    "folder; set it to the folder holding images/<Subset>/ (or leave it null)"
                )
        table = _ParquetTable(
            _mmeb_files(root, spec.subset),
            ("qry", "qry_image_path", "pos_text", "pos_image_path"),
            required=("qry", "qry_image_path", "pos_text", "pos_image_path"),
        )
        return table, _mmeb_builder(spec.subset, image_root, check)
    if spec.kind.startswith("llava_hound"):
        root = _root(real, "llava_hound")
        ann = root / "video_instruction" / "train" / "sft" / f"{spec.subset}.jsonl"
        if not ann.is_file():
            raise DataError(
                f"{ann}: not found; download video_instruction/train/sft/{spec.subset}.jsonl of "
                f"ShareGPTVideo/train_video_and_instruction into {root}"
            )
        frame_root = root / "train_300k"
        if not frame_root.is_dir():
            raise DataError(
                f"{frame_root}: frame folder not found; extract the train_300k/chunk_*.tar.gz of "
                f"ShareGPTVideo/train_video_and_instruction into {frame_root}"
            )
        return _JsonlTable(ann), _llava_builder(spec.kind, frame_root, num_frames, check)
    if spec.kind in ("vidore", "visrag"):
        root = _root(real, spec.kind)
        if extract_dir is None:
            raise ValueError(f"{name}: document pages are extracted to files; pass extract_dir")
        hf = "vidore/colpali_train_set" if spec.kind == "vidore" else f"openbmb/{spec.subset}"
        table = _ParquetTable(
            _doc_files(root, spec.subset, hf), ("query", "image"), required=("query", "image")
        )
        out = Path(os.path.abspath(extract_dir)) / name
        return table, _doc_builder(out, check.verify)
    raise AssertionError(spec.kind)  # pragma: no cover - the registry holds only the kinds above


def load_source(
    name: str,
    real: RealSourcesConfig,
    *,
    on_bad_item: str = "error",
    num_frames: int = 8,
    seed: int = 0,
    extract_dir: str | os.PathLike | None = None,
    verify_images: bool = True,
) -> SourceResult:
    """Load one training dataset into the pair format, capped and checked.

    ``extract_dir`` is where document page bytes (ViDoRe, VisRAG) are written; required for
    those two. ``verify_images`` runs PIL's ``verify`` on every image and frame reached.

    >>> res = load_source("ImageNet_1K", cfg.data.real, extract_dir="results/x/pages")  # doctest: +SKIP
    >>> res.df.columns[:3].tolist(), res.total_before_cap, len(res.skipped)              # doctest: +SKIP
    (['pair_id', 'dataset', 'modality'], 1000, 0)
    """
    import numpy as np

    if name not in SOURCE_DATASETS:
        raise _unknown(name)
    if on_bad_item not in ("error", "skip"):
        raise ConfigError(f"data.on_bad_item = {on_bad_item!r}: must be 'error' or 'skip'")
    spec = SOURCE_DATASETS[name]
    weight, cap = _dataset_config(real, name)
    check = _ImageChecker(verify_images)
    table, build = _table_and_builder(
        spec, name, real, num_frames=num_frames, extract_dir=extract_dir, check=check
    )

    total = table.total
    target = total if cap is None else min(cap, total)
    if target < total:
        order = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(total)
    else:
        order = np.arange(total)
    kept: dict[int, tuple[Item, Item]] = {}
    skipped: list[dict[str, Any]] = []
    pos = 0
    bar = progress(target, f"{name} rows", unit="row")
    while len(kept) < target and pos < total:
        batch = np.sort(order[pos : pos + target - len(kept)]).tolist()
        pos += len(batch)
        for idx, file, row, rec in table.rows(batch):
            try:
                if isinstance(rec, _Bad):
                    raise rec
                kept[idx] = build(rec)
                bar.update(1)
            except _Bad as e:
                if on_bad_item == "error":
                    where = table.row_words.format(row)
                    raise DataError(f"{file}: {where}: {e}. {_SKIP_HINT}") from None
                skipped.append(
                    {
                        "file": file,
                        table.row_label: row,
                        "pair_id": f"{name}:{idx}",
                        "column": None,
                        "reason": str(e),
                    }
                )
    bar.close()
    rows = [pair_row(f"{name}:{i}", name, spec.modality, *kept[i]) for i in sorted(kept)]
    return SourceResult(
        dataset=name,
        df=pairs_frame(rows),
        weight=weight,
        cap=cap,
        total_before_cap=total,
        skipped=skipped,
    )


def load_sources(
    real: RealSourcesConfig,
    *,
    extract_dir: str | os.PathLike,
    on_bad_item: str = "error",
    seed: int = 0,
    num_frames: int = 8,
    verify_images: bool = True,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Every dataset of ``real.datasets``: one pair table and per-dataset stats.

    Stats per dataset: ``weight``, ``cap``, ``total_before_cap``, ``kept``, ``skipped`` (count)
    and ``skipped_items`` (``{file, row or line, pair_id, column, reason}`` each, see the module
    doc) — for the stage manifest.
    """
    import pandas as pd

    if not real.datasets:
        raise ConfigError(
            "data.real.datasets is empty: list the datasets to load with their weight and cap "
            f"(see ume/data/paper_sources.yaml); known names: {', '.join(SOURCE_DATASETS)}"
        )
    for name in real.datasets:
        if name not in SOURCE_DATASETS:
            raise _unknown(name)
    frames, stats = [], {}
    for name in real.datasets:
        res = load_source(
            name,
            real,
            on_bad_item=on_bad_item,
            num_frames=num_frames,
            seed=seed,
            extract_dir=extract_dir,
            verify_images=verify_images,
        )
        frames.append(res.df)
        stats[name] = res.stats()
    return pd.concat(frames, ignore_index=True), stats
