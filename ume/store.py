"""Append-only stores of per-item results, keyed by content: nothing finished is lost.

A long stage that asks a server (annotation, the relevance filter, evaluation's Reasoner)
or a model for one result per item writes each result here *as it arrives*, so a stage that
dies -- the server gone after its retries, the job killed, the node lost -- keeps every
result it had, and its rerun asks only for what is missing.

Layout under ``root`` (one store per model and generation parameters, say)::

    <root>/<group>/seg-<time>-<pid>-<rand>.jsonl   one record per line, appended
    <root>/<group>/seg-<time>-<pid>-<rand>.idx     "key offset length" per record, appended

* **records** are ``<crc32 hex> <JSON>`` lines; the checksum covers the JSON bytes. A line
  cut by a crash (no newline, or a checksum that does not match) is dropped with a warning;
  every other record is kept. Each process appends to segments of its own (never shared
  with another process), flushed after each record: a killed process loses at most the
  record it was writing, which a reader then drops.
* **groups** (a task name, a stage name) are subfolders. A lookup reads the index of its own
  group first and visits the other groups only for the keys still missing, keeping only the
  keys it was asked for: a per-task job's memory does not grow with the other tasks of a
  shared store, and a rerun that finds everything in its own group reads nothing else.
* **values** are read only when asked for (:meth:`ResultStore.get_many`), grouped by
  segment: each segment is opened once per call, whatever the number of its keys.

>>> store = ResultStore(tmp / "chat", group="annotate")                # doctest: +SKIP
>>> missing = [k for k in keys if k not in store.find(keys)]           # doctest: +SKIP
>>> store.put(missing[0], {"text": "...", "tokens": 12})               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ume.io import make_folder

log = logging.getLogger(__name__)

SEGMENT_GLOB = "seg-*.jsonl"
#: the group of a store opened without one
DEFAULT_GROUP = "_"


def encode_record(key: str, value: Any) -> bytes:
    """One record line: ``<crc32 of the JSON, 8 hex> <JSON of {"k": key, "v": value}>\\n``.

    >>> encode_record("k1", {"t": 1})
    b'e913a0cc {"k":"k1","v":{"t":1}}\\n'
    """
    payload = json.dumps({"k": key, "v": value}, sort_keys=True, separators=(",", ":"))
    data = payload.encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode_record(line: bytes) -> tuple[str, Any] | None:
    """``(key, value)`` of a record line, or None when it is cut or damaged.

    >>> decode_record(encode_record("k1", [1, 2]))
    ('k1', [1, 2])
    >>> decode_record(encode_record("k1", [1, 2])[:-4]) is None   # a tail cut by a crash
    True
    """
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" ":
        return None
    data = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(data):
            return None
        rec = json.loads(data)
        return rec["k"], rec["v"]
    except (ValueError, KeyError, TypeError):
        return None


def group_folder(group: str) -> str:
    """A folder name for ``group``: readable, and distinct for distinct groups.

    >>> group_folder("mmeb/ImageNet-1K")
    'mmeb_ImageNet-1K-f2f9a9d4'
    """
    if not group:
        return DEFAULT_GROUP
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", group)[:60]
    return f"{slug}-{hashlib.sha256(group.encode()).hexdigest()[:8]}"


class _Segment:
    """A segment this process appends to (data and index), opened on the first record."""

    def __init__(self, folder: Path) -> None:
        make_folder(folder)
        stem = f"seg-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path = folder / f"{stem}.jsonl"
        self.data: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self.index: BinaryIO = open(self.path.with_suffix(".idx"), "ab")  # noqa: SIM115
        self.offset = self.data.tell()

    def append(self, key: str, value: Any) -> tuple[int, int]:
        line = encode_record(key, value)
        off = self.offset
        self.data.write(line)
        self.data.flush()  # in the page cache: a killed process keeps it
        self.index.write(f"{key} {off} {len(line)}\n".encode())
        self.index.flush()  # after the record: an indexed record is always complete on disk
        self.offset += len(line)
        return off, len(line)

    def close(self) -> None:
        for fh in (self.data, self.index):
            with contextlib.suppress(OSError):  # records were flushed already
                fh.close()


class ResultStore:
    """Results by key, appended as they arrive, read back by key (see the module doc).

    ``root`` None keeps results in memory only. ``group`` is where this process writes and
    what it reads first; set :attr:`group` to move to another one (a new task).
    """

    def __init__(self, root: str | os.PathLike | None, *, group: str = "") -> None:
        self.root = Path(root) if root is not None else None
        self._group = group
        self._values: dict[str, Any] = {}  # values read or written by this process
        self._where: dict[str, tuple[Path, int, int]] = {}  # key -> segment, offset, length
        self._segment: _Segment | None = None
        self._lock = threading.Lock()
        self.dropped = 0  # damaged records met (cut tails, bad checksums)
        self.segments_read = 0  # segments whose index (or data) a lookup read
        self.written = 0

    # ------------------------------------------------------------------ groups
    @property
    def group(self) -> str:
        return self._group

    @group.setter
    def group(self, group: str) -> None:
        """Write to (and look first in) ``group``; what was read for the last group is let go."""
        if group == self._group:
            return
        self.close()
        self._group = group
        self._values.clear()
        self._where.clear()

    def _own(self) -> Path | None:
        return None if self.root is None else self.root / group_folder(self._group)

    def _segments(self, own_first: bool) -> tuple[list[Path], list[Path]]:
        """(this group's segments, the other groups' segments), each sorted."""
        if self.root is None or not self.root.is_dir():
            return [], []
        own = self._own()
        mine = sorted(own.glob(SEGMENT_GLOB)) if own is not None and own.is_dir() else []
        others = sorted(
            p for d in self.root.iterdir() if d.is_dir() and d != own for p in d.glob(SEGMENT_GLOB)
        )
        return mine, others

    # ------------------------------------------------------------------ lookups
    def find(self, keys: Iterable[str]) -> set[str]:
        """The keys of ``keys`` that the store holds (their places are remembered, their
        values are not read). This group's segments are read first, the others only for the
        keys still missing."""
        keys = set(keys)
        found = {k for k in keys if k in self._values or k in self._where}
        want = keys - found
        if not want:
            return found
        mine, others = self._segments(own_first=True)
        open_seg = self._segment.path if self._segment is not None else None
        for seg in mine + others:
            if not want:
                break
            if seg == open_seg:
                continue  # what this process wrote is in memory already
            for key, off, length in self._index(seg):
                if key in want:
                    self._where[key] = (seg, off, length)
                    want.discard(key)
                    found.add(key)
        return found

    def __contains__(self, key: str) -> bool:
        return bool(self.find([key]))

    def _index(self, seg: Path) -> Iterator[tuple[str, int, int]]:
        """``(key, offset, length)`` of a segment's records, from its index; a segment
        without one (deleted by hand) is scanned. A cut last index line is dropped."""
        self.segments_read += 1
        idx = seg.with_suffix(".idx")
        if not idx.is_file():
            yield from self._scan(seg)
            return
        with open(idx, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                parts = line.split()
                if not line.endswith(b"\n") or len(parts) != 3:
                    self._damaged(idx, f"index line {n} is cut or malformed")
                    continue
                try:
                    yield parts[0].decode(), int(parts[1]), int(parts[2])
                except ValueError:
                    self._damaged(idx, f"index line {n} is malformed")

    def _scan(self, seg: Path) -> Iterator[tuple[str, int, int]]:
        off = 0
        with open(seg, "rb") as fh:
            for n, line in enumerate(fh, start=1):
                rec = decode_record(line)
                if rec is None:
                    self._damaged(seg, f"record {n} is cut or damaged")
                else:
                    yield rec[0], off, len(line)
                off += len(line)

    def _damaged(self, path: Path, what: str) -> None:
        self.dropped += 1
        log.warning("%s: %s (a write cut by a crash?); dropped, the rest is kept", path, what)

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` (each must have been found), in order; each segment is
        opened once. A record whose checksum fails is dropped (KeyError names it)."""
        missing = [k for k in keys if k not in self._values and k not in self._where]
        if missing:
            self.find(missing)
        by_seg: dict[Path, list[tuple[int, int, str]]] = {}
        for k in dict.fromkeys(keys):
            if k not in self._values and k in self._where:
                seg, off, length = self._where[k]
                by_seg.setdefault(seg, []).append((off, length, k))
        for seg, recs in by_seg.items():
            with open(seg, "rb") as fh:
                for off, length, k in sorted(recs):
                    fh.seek(off)
                    rec = decode_record(fh.read(length))
                    if rec is None or rec[0] != k:
                        self._damaged(seg, f"the record of {k} at byte {off} is cut or damaged")
                        del self._where[k]
                        continue
                    self._values[k] = rec[1]
        absent = [k for k in keys if k not in self._values]
        if absent:
            raise KeyError(f"{len(absent)} key(s) not in the store, e.g. {absent[0]}")
        return [self._values[k] for k in keys]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self.get_many([key])[0]
        except KeyError:
            return default

    # ------------------------------------------------------------------ writes
    def put(self, key: str, value: Any) -> None:
        """Append one result (kept in memory too); thread-safe."""
        with self._lock:
            self._values[key] = value
            self.written += 1
            if self.root is None:
                return
            if self._segment is None:
                self._segment = _Segment(self._own())  # type: ignore[arg-type]
            self._segment.append(key, value)

    def close(self) -> None:
        """Close this process's open segment (a later :meth:`put` starts a new one)."""
        with self._lock:
            if self._segment is not None:
                self._segment.close()
                self._segment = None

    def __len__(self) -> int:
        """Keys this process has found or written (not the store's total)."""
        return len(self._values.keys() | self._where.keys())

    def __del__(self) -> None:  # pragma: no cover - best effort; records are flushed anyway
        with contextlib.suppress(Exception):
            self.close()


def count_records(root: str | os.PathLike) -> int:
    """Records in every segment under ``root`` whose checksum holds (for tests and reports)."""
    n = 0
    for seg in Path(root).rglob(SEGMENT_GLOB):
        with open(seg, "rb") as fh:
            n += sum(decode_record(line) is not None for line in fh)
    return n
