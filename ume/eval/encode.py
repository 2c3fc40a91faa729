"""Embeddings at evaluation: each unique (item, T-CoT, input mode, Embedder) is encoded once.

The key (:func:`embedding_key`) hashes the item's content (image and frame *bytes*, not
paths), the T-CoT (none in ``raw`` mode, which ignores it), the input mode, the Embedder's
identity (checksum of its folder) and the source of the input builder and the Embedder
(an edit to either never serves stale vectors). The cache is
``<cache_dir>/emb/<namespace>/<group>/part-*.npy`` with a ``part-*.keys`` file beside each
(written last: a shard without its keys file is unfinished and ignored), one group per task.
Shards are memory-mapped and looked up by the keys a task asks for, its own group first, so
a task costs what it uses, not what the cache holds.

>>> enc = CachedEncoder(embedder, identity, EmbeddingCache(root, ns))  # doctest: +SKIP
>>> q = enc.encode(items, tcots, mode="full")  # [N, D] float32, unit norm  # doctest: +SKIP
>>> enc.max_calls_per_key()                                            # doctest: +SKIP
1
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ume.errors import DataError
from ume.eval.stats import CacheStats
from ume.fingerprints import code_identity, content_key, item_fingerprint
from ume.io import atomic_path, write_text
from ume.items import Item
from ume.progress import progress
from ume.store import group_folder

log = logging.getLogger(__name__)

MODES = ("full", "answer_only", "no_evidence", "raw")
#: Modules whose source is part of every embedding key.
# Code whose change changes an embedding: the builder, what it parses and crops with, the model.
CODE_MODULES = ("ume.inputs", "ume.tcot.format", "ume.tcot.evidence", "ume.models.embedder")


class Encoder(Protocol):
    def encode(
        self, items: list[Item], tcots: list[str | None], *, mode: str = ..., batch_size: int = ...
    ) -> Any:  # torch.Tensor | np.ndarray [N, D]
        ...


def embedding_key(item: Item, tcot: str | None, mode: str, identity: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return content_key(
        "emb", identity, mode, item_fingerprint(item), None if mode == "raw" else tcot
    )


def embedder_namespace(identity: str) -> str:
    return content_key("emb-namespace", identity)[:16]


# --------------------------------------------------------------------------- cache
class EmbeddingCache:
    """Vectors by key in npy shards (memory-mapped); memory only when ``root`` is None.

    Layout: ``<root>/<namespace>/<group>/part-*.npy`` + ``part-*.keys`` (the keys in row
    order, written last: a shard without them is unfinished and ignored). A lookup
    (:meth:`find`) reads the keys files of its own ``group`` (a task) first and the other
    groups' only for keys still missing, keeping only the keys it was asked for: a task's
    memory does not grow with the other tasks of the cache, and a rerun that finds its keys
    in its own group reads nothing else. A shard cut short (a copy interrupted, a disk that
    filled) keeps the rows it holds; the keys past its end are dropped with a warning.
    """

    def __init__(self, root: str | os.PathLike | None, namespace: str) -> None:
        self.dir = Path(root) / namespace if root is not None else None
        self._group = ""
        self._where: dict[str, tuple[int, int]] = {}  # key -> (shard, row)
        self._shards: list[np.ndarray] = []
        self.keys_files_read = 0

    @property
    def group(self) -> str:
        return self._group

    @group.setter
    def group(self, group: str) -> None:
        """Look first in (and write to) ``group``; what was found for the last one is let go."""
        if group != self._group:
            self._group = group
            self._where.clear()
            self._shards.clear()

    def _own(self) -> Path | None:
        return None if self.dir is None else self.dir / group_folder(self._group)

    def _keys_files(self) -> list[Path]:
        """This group's keys files, then every other group's (and the layout without groups)."""
        if self.dir is None or not self.dir.is_dir():
            return []
        own = self._own()
        mine = sorted(own.glob("part-*.keys")) if own is not None and own.is_dir() else []
        others = sorted(self.dir.glob("part-*.keys")) + sorted(
            p for d in self.dir.iterdir() if d.is_dir() and d != own for p in d.glob("part-*.keys")
        )
        return mine + others

    def find(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` the cache holds; their rows are located, not read."""
        want = {k for k in keys if k not in self._where}
        for keys_file in self._keys_files() if want else ():
            names = keys_file.read_text(encoding="utf-8").split()
            self.keys_files_read += 1
            hits = [(r, k) for r, k in enumerate(names) if k in want]
            if not hits:
                continue
            arr = _open_shard(keys_file.with_suffix(".npy"), len(names))
            if arr is None:
                continue
            s = len(self._shards)
            self._shards.append(arr)
            for r, k in hits:
                if r < arr.shape[0]:
                    self._where[k] = (s, r)
                    want.discard(k)
            if not want:
                break
        return {k for k in keys if k in self._where}

    def __contains__(self, key: str) -> bool:
        return bool(self.find([key]))

    def __len__(self) -> int:
        """Keys located or written by this process (not the cache's total)."""
        return len(self._where)

    def _add_shard(self, keys: list[str], arr: np.ndarray) -> None:
        s = len(self._shards)
        self._shards.append(arr)
        for r, k in enumerate(keys):
            self._where[k] = (s, r)

    def get_many(self, keys: Sequence[str]) -> np.ndarray:
        """Rows of ``keys`` (all must be present) as one float32 array [len(keys), D]."""
        if not keys:
            return np.zeros((0, 0), np.float32)
        self.find(keys)
        where = [self._where[k] for k in keys]
        out = np.empty((len(keys), self._shards[where[0][0]].shape[1]), np.float32)
        by_shard: dict[int, tuple[list[int], list[int]]] = {}
        for i, (s, r) in enumerate(where):
            pos, rows = by_shard.setdefault(s, ([], []))
            pos.append(i)
            rows.append(r)
        for s, (pos, rows) in by_shard.items():  # one fancy-indexed read per shard
            out[pos] = self._shards[s][rows]
        return out

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"{len(keys)} keys for vectors of shape {vectors.shape}")
        if not keys:
            return
        self._add_shard(list(keys), vectors)
        own = self._own()
        if own is None:
            return
        stem = f"part-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with atomic_path(own / f"{stem}.npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, vectors)
        write_text(own / f"{stem}.keys", "\n".join(keys) + "\n")  # last: marks it complete


def _open_shard(npy: Path, n_keys: int) -> np.ndarray | None:
    """The shard's rows, memory-mapped; a file cut short gives the whole rows it holds."""
    try:
        with open(npy, "rb") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
        size = npy.stat().st_size
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable embedding shard (%s); ignored", npy, e)
        return None
    if len(shape) != 2 or fortran or shape[0] != n_keys:
        log.warning("%s: %s rows for %d keys; ignored", npy, shape, n_keys)
        return None
    row_bytes = shape[1] * dtype.itemsize
    rows = min(shape[0], (size - offset) // row_bytes if row_bytes else shape[0])
    if rows < shape[0]:
        log.warning(
            "%s: cut short (%d of %d rows; a crash or a full disk?); the rows it holds are "
            "kept, the other %d keys dropped",
            npy, rows, shape[0], shape[0] - rows,
        )  # fmt: skip
    if rows == 0:
        return np.zeros((0, shape[1]), dtype)
    return np.memmap(npy, dtype=dtype, mode="r", offset=offset, shape=(rows, shape[1]))


# --------------------------------------------------------------------------- the cached step
class CachedEncoder:
    """Embeddings through the cache; counts how often each key reached the Embedder."""

    def __init__(
        self,
        embedder: Encoder,
        identity: str,
        cache: EmbeddingCache,
        *,
        batch_size: int = 16,
        flush_every: int = 4096,
    ) -> None:
        self.embedder = embedder
        self.flush_every = max(1, flush_every)
        self.identity = identity
        self.cache = cache
        self.batch_size = batch_size
        self.calls: Counter[str] = Counter()  # key -> times passed to the Embedder

    @property
    def group(self) -> str:
        return self.cache.group

    @group.setter
    def group(self, group: str) -> None:
        """What the next calls are about (a task): looked up first, written to."""
        self.cache.group = group

    def encode(
        self,
        items: Sequence[Item],
        tcots: Sequence[str | None] | None,
        mode: str,
        stats: CacheStats | None = None,
    ) -> np.ndarray:
        """Unit-norm embeddings [len(items), D] (float32), in input order."""
        t0 = time.perf_counter()
        tcots = list(tcots) if tcots is not None else [None] * len(items)
        if len(tcots) != len(items):
            raise ValueError(f"{len(items)} items but {len(tcots)} T-CoTs")
        if mode == "raw":
            tcots = [None] * len(items)
        keys = [
            embedding_key(it, t, mode, self.identity) for it, t in zip(items, tcots, strict=True)
        ]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        present = self.cache.find(list(first))
        todo = [k for k in first if k not in present]
        st = CacheStats("encoding", requested=len(keys), unique=len(first))
        st.cached = st.unique - len(todo)
        bar = progress(len(todo), f"encoding ({mode})", unit="input")
        for start in range(0, len(todo), self.flush_every):  # a flush per chunk: resumable
            chunk = todo[start : start + self.flush_every]
            vecs = self.embedder.encode(
                [items[first[k]] for k in chunk],
                [tcots[first[k]] for k in chunk],
                mode=mode,
                batch_size=self.batch_size,
            )
            bar.update(len(chunk))
            # inputs the length rule reduced (ume.inputs): "length:" problems of the batch
            st.reduced += sum(
                any(str(q).startswith("length:") for q in ps)
                for ps in getattr(self.embedder, "last_problems", None) or []
            )
            vecs = _to_numpy(vecs)
            if vecs.shape[0] != len(chunk):
                raise DataError(
                    f"the Embedder returned {vecs.shape[0]} vectors for {len(chunk)} inputs"
                )
            self.cache.put(chunk, vecs)
            self.calls.update(chunk)
            st.computed += len(chunk)
        bar.close()
        out = self.cache.get_many(keys) if keys else np.zeros((0, 0), np.float32)
        st.seconds = time.perf_counter() - t0
        if stats is not None:
            stats.add(st)
        return out

    def max_calls_per_key(self) -> int:
        return max(self.calls.values(), default=0)

    def calls_per_unique(self) -> float:
        """Embedder calls per distinct key that reached it (1.0: nothing encoded twice)."""
        return sum(self.calls.values()) / len(self.calls) if self.calls else 0.0


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def make_encoder(
    cfg: Any,
    model_path: str | os.PathLike,
    cache_root: str | os.PathLike | None,
    *,
    identity_memo: str | os.PathLike | None = None,
) -> CachedEncoder:
    """The Embedder at ``model_path`` (a model folder or a base ``backbone.json``), cached."""
    from ume.eval.reason import model_identity, resolve_model_folder
    from ume.inputs import PixelBudget
    from ume.models.device import choose_device
    from ume.models.embedder import Embedder

    folder = resolve_model_folder(model_path)
    m = cfg.models.embedder
    dev = choose_device(m.dtype, m.attn_implementation, role="embedder")
    max_length = cfg.train_embedder.max_length
    budget = PixelBudget.from_config(cfg.budgets)  # as in training: one budget for every role
    embedder = Embedder.from_pretrained(
        folder,
        dtype=dev.dtype,
        attn_implementation=dev.attn_implementation,
        role="embedder",
        max_length=max_length,
        device=dev.device,
        budget=budget,
    )
    identity = content_key(
        "embedder",
        model_identity(folder, identity_memo),
        code_identity(CODE_MODULES),
        {"dtype": dev.dtype, "max_length": max_length, "budgets": budget.to_dict()},
    )
    cache = EmbeddingCache(cache_root, embedder_namespace(identity))
    return CachedEncoder(embedder, identity, cache, batch_size=cfg.eval.batch_size)
