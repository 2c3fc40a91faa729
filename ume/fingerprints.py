"""Hashes of content: files, folders, model weights, config sections, prompts and items.

Every hash of the package is made here, in one form, so that a key means the same thing
wherever it is used:

* files and folders: :func:`file_sha256` (memoised in-process), :func:`checksum` (a file, or
  a folder's files: what manifests and ``backbone.json`` record), :func:`folder_identity` (a
  model folder's weights and configs, without checkpoints, logs and manifests);
* JSON-able values: :func:`content_key` (sha256 of their canonical JSON) and
  :func:`fingerprint_of` (its short form, for checkpoint folders);
* what a model sees: :func:`item_fingerprint`, :func:`chat_fingerprint` (images by the sha256
  of their bytes, never by path: the same benchmark in two folders gives the same keys);
* what identifies a stage input cheaply (:func:`input_identity`) and a piece of code
  (:func:`code_identity`).

The evaluation caches are keyed by content (a cache entry is reused whenever the same
computation would give the same result, and never otherwise); resumable stages guard their
checkpoints with a fingerprint of their config and inputs (:mod:`ume.launch.resumable`).

>>> a = Item(modality="text", inst="Find it", text="a red circle")
>>> item_fingerprint(a) == item_fingerprint(Item(modality="text", inst="Find it", text="a red circle"))
True
>>> len(content_key("tcot", {"x": 1})), len(fingerprint_of("toy", 0))
(64, 16)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.items import Item

_FILE_MEMO: dict[tuple[str, int, int], str] = {}
# Files and folders of a model folder that do not change what the model computes.
_IDENTITY_SKIP_FILES = frozenset({"manifest.json", "trainer_state.json", "training_args.bin"})
_IDENTITY_SKIP_DIRS = ("checkpoint-", "logs", "runs", ".")


# --------------------------------------------------------------------------- bytes and files
def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, memoised in-process by (path, size, mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _FILE_MEMO:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _FILE_MEMO[key] = h.hexdigest()
    return _FILE_MEMO[key]


def _walk(folder: Path, skip_dir: Callable[[str], bool] = lambda d: False) -> Iterator[Path]:
    """The files under ``folder``: each folder's files (sorted), then its sub-folders (sorted),
    those ``skip_dir`` names left out (never entered)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not skip_dir(d))
        for name in sorted(files):
            if (f := Path(root) / name).is_file():
                yield f


def _tree_sha256(folder: Path, files: Iterable[Path], digest: Callable[[Path], str]) -> str:
    """sha256 over (relative path, file digest) of ``files``, in their order."""
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        h.update(digest(f).encode())
    return h.hexdigest()


def checksum(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's (relative path, file hash) list."""
    p = Path(path)
    if p.is_dir():
        return _tree_sha256(p, _walk(p), file_sha256)
    return file_sha256(p)


def folder_identity(
    folder: str | os.PathLike, memo: MutableMapping[str, list[Any]] | None = None
) -> str:
    """Checksum of a model folder: :func:`checksum` of the files that make the model.

    Checkpoint sub-folders, logs, manifests and hidden files are left out (they do not change
    the model). Hashing an 8B checkpoint takes a while: ``memo`` (``{relative path: [size,
    mtime_ns, sha256]}``, read and updated in place) lets a caller that keeps it between
    processes only stat the files (see ``ume.eval.reason.model_identity``).
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: model folder not found")
    memo = {} if memo is None else memo

    def digest(f: Path) -> str:
        rel, st = str(f.relative_to(folder)), f.stat()
        got = memo.get(rel)
        if got and got[0] == st.st_size and got[1] == st.st_mtime_ns:
            return got[2]
        memo[rel] = [st.st_size, st.st_mtime_ns, file_sha256(f)]
        return memo[rel][2]

    files = _walk(folder, skip_dir=lambda d: d.startswith(_IDENTITY_SKIP_DIRS))
    model_files = (f for f in files if f.name not in _IDENTITY_SKIP_FILES)
    return _tree_sha256(folder, (f for f in model_files if not f.name.startswith(".")), digest)


def input_identity(path: str | os.PathLike) -> str:
    """What identifies a stage input in a fingerprint: the sha256 of a file (a parquet file, a
    ``backbone.json``); for a folder, that of the ``backbone.json`` inside it or beside it (a
    trained stage's ``<out>/model``: its record holds the weights' checksum), else a hash of
    its file names, sizes and JSON files (config, tokenizer) -- cheap next to hashing weights.
    """
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    for rec in (p / "backbone.json", p.parent / "backbone.json"):
        if rec.is_file():
            return file_sha256(rec)
    if not p.is_dir():
        return f"missing:{p}"
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(p)}:{f.stat().st_size}".encode())
        if f.suffix == ".json":
            h.update(file_sha256(f).encode())
    return h.hexdigest()


def code_identity(modules: Iterable[str]) -> str:
    """sha256 of the source files of ``modules`` (absent modules count as absent).

    The embedding cache keys include the input builder's and the Embedder's source, so an
    edit to how inputs are built never serves embeddings computed the old way.
    """
    h = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        h.update(name.encode())
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            h.update(Path(spec.origin).read_bytes())
        else:
            h.update(b"<absent>")
    return h.hexdigest()


# --------------------------------------------------------------------------- values
def content_key(*parts: Any) -> str:
    """sha256 (hex) of JSON-able ``parts`` in canonical form (sorted keys, no spaces); by
    convention the first part names what is keyed (``"tcot"``, ``"emb"``, ...)."""
    blob = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=str)
    return bytes_sha256(blob.encode("utf-8"))


def fingerprint_of(*parts: Any) -> str:
    """A short :func:`content_key` (16 hex digits) of config sections and input identities,
    written beside checkpoints so that another config never resumes them."""
    return content_key(*parts)[:16]


# --------------------------------------------------------------------------- model inputs
def item_fingerprint(item: Item) -> list[Any]:
    """What an :class:`Item` shows a model: modality, texts, image and frame *contents*.

    ``gt`` (ground truth for the oracle) is left out: models never see it.
    """
    return [
        item.modality,
        item.inst,
        item.text,
        file_sha256(item.image) if item.image else "",
        [file_sha256(f) for f in item.frames],
    ]


def chat_fingerprint(chat: list[dict]) -> list[Any]:
    """A chat (HF content parts) with every image path replaced by its content hash."""
    out = []
    for msg in chat:
        content = msg.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image" or "image" in part:
                    src = part.get("image")
                    if hasattr(src, "tobytes"):  # a PIL image (evidence crop)
                        digest = bytes_sha256(src.tobytes())
                        parts.append({"image_pixels": [digest, list(src.size), src.mode]})
                    else:
                        parts.append({"image_sha256": file_sha256(str(src))})
                else:
                    parts.append({k: v for k, v in part.items() if k != "image"})
            content = parts
        out.append({"role": msg.get("role"), "content": content})
    return out
