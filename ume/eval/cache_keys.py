"""Content keys of the evaluation caches: what a T-CoT or an embedding depends on, hashed.

A cache entry must be reused whenever the same computation would give the same result, and
never otherwise. So keys hash *content*, not paths: an image is keyed by the sha256 of its
bytes (the synthetic benchmark of two runs lives in two folders but holds the same files),
a model by the checksum of its folder, and the prompt by its full text.

>>> a = Item(modality="text", inst="Find it", text="a red circle")
>>> item_fingerprint(a) == item_fingerprint(Item(modality="text", inst="Find it", text="a red circle"))
True
>>> len(content_key("tcot", {"x": 1}))
64
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.io import sha256_file, write_json
from ume.items import Item

_FILE_MEMO: dict[tuple[str, int, int], str] = {}
# Files and folders of a model folder that do not change what the model computes.
_IDENTITY_SKIP_FILES = frozenset({"manifest.json", "trainer_state.json", "training_args.bin"})
_IDENTITY_SKIP_DIRS = ("checkpoint-", "logs", "runs", ".")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, memoised in-process by (path, size, mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _FILE_MEMO:
        _FILE_MEMO[key] = sha256_file(p)
    return _FILE_MEMO[key]


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
                        digest = hashlib.sha256(src.tobytes()).hexdigest()
                        parts.append({"image_pixels": [digest, list(src.size), src.mode]})
                    else:
                        parts.append({"image_sha256": file_sha256(str(src))})
                else:
                    parts.append({k: v for k, v in part.items() if k != "image"})
            content = parts
        out.append({"role": msg.get("role"), "content": content})
    return out


def content_key(kind: str, *parts: Any) -> str:
    """sha256 (hex) of ``kind`` and JSON-able ``parts`` in canonical form."""
    blob = json.dumps([kind, *parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _identity_files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(_IDENTITY_SKIP_DIRS))
        for f in sorted(files):
            if f not in _IDENTITY_SKIP_FILES and not f.startswith("."):
                out.append(Path(root) / f)
    return out


def folder_identity(folder: str | os.PathLike, memo_dir: str | os.PathLike | None = None) -> str:
    """Checksum of a model folder: sha256 over (relative path, file sha256) of its files.

    Checkpoint sub-folders, logs and manifests are left out (they do not change the model).
    Hashing an 8B checkpoint takes a while, so with ``memo_dir`` the per-file hashes are
    remembered on disk by (path, size, mtime): later processes only stat the files.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: model folder not found")
    memo: dict[str, list[Any]] = {}
    memo_file = None
    if memo_dir is not None:
        memo_file = Path(memo_dir) / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:24]}.json"
        if memo_file.is_file():
            try:
                memo = json.loads(memo_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                memo = {}
    h = hashlib.sha256()
    changed = False
    for f in _identity_files(folder):
        rel = str(f.relative_to(folder))
        st = f.stat()
        got = memo.get(rel)
        if got and got[0] == st.st_size and got[1] == st.st_mtime_ns:
            digest = got[2]
        else:
            digest = file_sha256(f)
            memo[rel] = [st.st_size, st.st_mtime_ns, digest]
            changed = True
        h.update(rel.encode())
        h.update(digest.encode())
    if memo_file is not None and changed:
        write_json(memo_file, memo)
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
