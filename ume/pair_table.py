"""THE pair table on disk: written with movable media paths, read back with every row checked.

Every stage that reads pair rows (annotate, filter, split, train_embedder, sft, egrl) reads them
with :func:`read_pair_table`, and ``prepare_pairs`` checks what it writes with
:func:`check_pair_rows`; all of them write with :func:`write_pair_table`. The columns are
:mod:`ume.items`' pair format, plus what a stage adds (``qry_tcot``/``pos_tcot``, ``relevant``).

**Bad rows.** A row is bad when a pair column is null (a parquet null, or NaN) or of the wrong
type, a modality is not one of the known ones, a side has no content (a text side without text,
an image or document side without an image, a video side without frames), a media file is
missing (or, where the stage asks, does not open as an image), a ground truth is not a JSON
object, ``pair_id`` repeats an earlier row, or a column the stage needs (a T-CoT, ``relevant``)
is null or of the wrong type. T-CoTs are parsed with the project's parser (the stage passes
:func:`ume.tcot.format.parse_tcot`); a T-CoT that parses with problems (a missing tag, a dropped
box) is *not* a bad row: the annotators write imperfect T-CoTs and the later stages meet them
(the annotate stage records them, the rewards and SFT score them); they are counted in
:attr:`PairTable.tcot_problems`.

What happens to a bad row is the policy's (:class:`RowPolicy`: ``on_bad_item`` and the config
key that sets it, ``data.on_bad_item`` for every stage that reads training pairs): ``error``
stops with a :class:`~ume.errors.DataError` naming the file, the row, the column, the key and
what to do; ``skip`` leaves the row out (the next stage never sees it) and records it.

**Skipped-record convention** (every stage, every manifest): ``{"file", "row", "pair_id",
"column", "reason"}``, where ``row`` is the **0-based parquet row** of ``file`` (what
``pandas.read_parquet(file).iloc[row]`` shows); messages say "row N (0-based parquet row)".
A stage's manifest holds them under ``bad_rows`` (:meth:`PairTable.manifest`).

**Movable media paths.** Media paths under the run folder (``results/<run>/``, the parent of
the folder holding the table: ``data/``, ``annotate/``, ``split/``...) are stored relative to
it, so a run folder can be moved or shared; paths elsewhere (the real training sources under
their ``data.real.*_root``, which the config names and a move of the results does not touch)
stay absolute. The parquet metadata key ``ume.media_base`` records the base relative to the
table's folder (``..``). :func:`read_pair_table` resolves every path, so the frames the stages
handle always hold absolute paths.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ume.errors import DataError
from ume.io import atomic_path
from ume.items import PAIR_COLUMNS, SIDE_MODALITIES, TASK_MODALITIES

#: Parquet metadata key: the folder relative media paths are relative to, from the table's folder.
MEDIA_BASE_KEY = b"ume.media_base"
#: Where the stages keep their tables: ``<run>/<stage>/<table>.parquet`` -> the run folder.
DEFAULT_MEDIA_BASE = ".."
#: The fields of a skipped-row record, in every manifest.
SKIP_FIELDS = ("file", "row", "pair_id", "column", "reason")
#: How rows are numbered in messages and records.
ROW_CONVENTION = "0-based parquet row"
#: Records listed in a manifest (the count is always complete).
MAX_LISTED = 100
TCOT_COLUMNS = ("qry_tcot", "pos_tcot")
#: The rule that writes each of a run's pair tables (named in messages: what to rerun).
WRITERS = {
    "pairs.parquet": "rule prepare_pairs",
    "tcot.parquet": "rule annotate_tcot",
    "filtered.parquet": "rule relevance_filter",
    "contrastive.parquet": "rule split_data",
    "rl.parquet": "rule split_data",
}


def writer_of(path: str | os.PathLike) -> str:
    """The rule that writes the table at ``path`` (by its name), for messages."""
    return WRITERS.get(Path(path).name, f"the stage that writes {Path(path).name}")


Media = Literal["exists", "open", "verify"]


@dataclass(frozen=True)
class RowPolicy:
    """What a stage does with a bad row: ``on_bad_item`` (``error`` | ``skip``) and the config
    key that sets it (named in every message, so following the hint changes the right key)."""

    on_bad_item: str = "error"
    key: str = "data.on_bad_item"

    def __post_init__(self) -> None:
        if self.on_bad_item not in ("error", "skip"):
            raise DataError(f"{self.key}: {self.on_bad_item!r} is not one of 'error', 'skip'")


@dataclass
class PairTable:
    """The good rows of a pair table (absolute media paths, index 0..n-1) and what was left out."""

    df: Any  # pandas.DataFrame
    source: str
    policy: RowPolicy
    rows_read: int
    skipped: list[dict[str, Any]] = field(default_factory=list)
    tcot_problems: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """The fields every stage's manifest gets: rows read, and the bad rows skipped."""
        return {
            "rows_read": self.rows_read,
            "bad_rows": {
                "key": self.policy.key,
                "policy": self.policy.on_bad_item,
                "skipped": len(self.skipped),
                "row_numbers": ROW_CONVENTION,
                "rows": self.skipped[:MAX_LISTED],
            },
            **({"tcots_with_problems": self.tcot_problems} if self.tcot_problems else {}),
        }


# --------------------------------------------------------------------------- paths
def _prefixes(base: Path) -> list[str]:
    """``base`` as written by a caller (absolute) and with symlinks resolved, longest first."""
    out = {os.path.abspath(base), str(Path(base).resolve())}
    return sorted((p.rstrip(os.sep) + os.sep for p in out), key=len, reverse=True)


def _sides(df) -> list[str]:
    return [s for s in ("qry", "pos", "neg") if f"{s}_modality" in df.columns]


def _map_paths(df, fn: Callable[[str], str]):
    """``df`` with ``fn`` applied to every image path and frame path of every side."""
    cols = {}
    for s in _sides(df):
        if f"{s}_image" in df.columns:
            cols[f"{s}_image"] = [
                fn(p) if isinstance(p, str) and p else p for p in df[f"{s}_image"]
            ]
        if f"{s}_frames" in df.columns:
            cols[f"{s}_frames"] = [
                [fn(p) if isinstance(p, str) and p else p for p in fr] if _is_list(fr) else fr
                for fr in df[f"{s}_frames"]
            ]
    return df.assign(**cols) if cols else df


def relative_media(df, base: str | os.PathLike):
    """Media paths under ``base`` made relative to it (POSIX-style as stored); others kept."""
    prefixes = _prefixes(Path(base))

    def rel(p: str) -> str:
        for pre in prefixes:
            if p.startswith(pre):
                return p[len(pre) :].replace(os.sep, "/")
        return p

    return _map_paths(df, rel)


def resolve_media(df, base: str | os.PathLike):
    """Relative media paths joined to ``base`` (absolute, normalised); absolute ones kept."""
    root = os.path.abspath(base)
    return _map_paths(
        df, lambda p: p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))
    )


def media_base(path: str | os.PathLike) -> Path:
    """The folder the relative media paths of the table at ``path`` are relative to."""
    import pyarrow.parquet as pq

    path = Path(path)
    meta = pq.read_schema(path).metadata or {}
    rel = meta.get(MEDIA_BASE_KEY, DEFAULT_MEDIA_BASE.encode()).decode()
    return Path(os.path.abspath(path.parent / rel))


# --------------------------------------------------------------------------- writing
def write_pair_table(path: str | os.PathLike, df) -> Path:
    """Write ``df`` (absolute media paths) atomically as parquet, with the media paths under the
    run folder (``path``'s folder's parent) stored relative to it; ``ume.media_base`` says so."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    base = path.parent / DEFAULT_MEDIA_BASE
    table = pa.Table.from_pandas(relative_media(df, base), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[MEDIA_BASE_KEY] = DEFAULT_MEDIA_BASE.encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return path


# --------------------------------------------------------------------------- reading
def read_pair_table(
    path: str | os.PathLike,
    *,
    policy: RowPolicy,
    needs: Iterable[str] = (),
    tcot_parser: Callable[[Any], Any] | None = None,
    media: Media = "open",
    written_by: str | None = None,
) -> PairTable:
    """Read the pair table at ``path``: resolve its media paths, check every row (module doc).

    ``needs``: columns the stage reads beyond the pair format (``qry_tcot``, ``relevant``...);
    a missing one stops (it is the table that is wrong, not a row). ``tcot_parser`` parses the
    T-CoT columns among ``needs``. ``media``: ``exists`` (the stage never opens the files),
    ``open`` (the image header is read: format and size, no pixels) or ``verify`` (PIL's
    ``verify``, a full read). ``written_by``: the rule to rerun, for messages (default: by
    the table's name, :data:`WRITERS`). ``relevant`` is checked wherever it is present.
    """
    import pandas as pd

    path = Path(path)
    written_by = written_by or writer_of(path)
    if not path.is_file():
        raise DataError(f"{path}: not found; run {written_by} first")
    try:
        df = pd.read_parquet(path)
        base = media_base(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(
            f"{path}: cannot read parquet ({type(e).__name__}: {e}); delete it and rerun "
            f"{written_by}"
        ) from e
    needs = tuple(needs)
    missing = [c for c in (*PAIR_COLUMNS, *needs) if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: not a pair table for this stage, missing columns {missing}; rerun "
            f"{written_by}"
        )
    return check_pair_rows(
        resolve_media(df, base),
        str(path),
        policy=policy,
        needs=needs,
        tcot_parser=tcot_parser,
        media=media,
        base=base,
        written_by=written_by,
    )


def check_pair_rows(
    df,
    source: str,
    *,
    policy: RowPolicy,
    needs: Iterable[str] = (),
    tcot_parser: Callable[[Any], Any] | None = None,
    media: Media = "open",
    base: str | os.PathLike | None = None,
    written_by: str = "the stage that writes it",
) -> PairTable:
    """Check every row of ``df`` (absolute media paths); ``source`` names it in messages.

    Returns the good rows (index reset) and the skipped records; with ``policy.on_bad_item``
    ``error`` the first bad row raises :class:`DataError`. ``base``: the folder relative
    paths were resolved against, named when a file is missing (a moved run folder).
    """
    needs = tuple(needs)
    missing = [c for c in (*PAIR_COLUMNS, *needs) if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; rerun {written_by}")
    checker = _RowChecker(df, needs, tcot_parser, media, base)
    keep, skipped = [], []
    for i, rec in enumerate(df.to_dict("records")):
        bad = checker.check(rec, i)
        if bad is None:
            keep.append(i)
            continue
        column, reason = bad
        pid = rec.get("pair_id") if isinstance(rec.get("pair_id"), str) else None
        if policy.on_bad_item == "error":
            raise DataError(
                f"{source}: row {i} ({ROW_CONVENTION}"
                + (f", pair_id {pid!r}" if pid else "")
                + f"), column {column}: {reason}. Fix or remove the row (or rerun {written_by}), "
                f"or set {policy.key}: skip to leave such rows out (they are counted under "
                "bad_rows in this stage's manifest)"
            )
        skipped.append(
            {"file": source, "row": i, "pair_id": pid, "column": column, "reason": reason}
        )
    good = df.iloc[keep].reset_index(drop=True) if skipped else df.reset_index(drop=True)
    return PairTable(
        df=good,
        source=source,
        policy=policy,
        rows_read=len(df),
        skipped=skipped,
        tcot_problems=checker.tcot_problem_counts(good),
    )


# --------------------------------------------------------------------------- row checks
def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_list(v: Any) -> bool:
    # parquet lists come back as numpy arrays; frames built in memory are lists or tuples
    return isinstance(v, list | tuple) or type(v).__name__ == "ndarray"


def _kind(v: Any) -> str:
    return "null" if _is_null(v) else f"a {type(v).__name__}"


class _RowChecker:
    """The checks of one table; media checks are cached per path (frames and images repeat)."""

    def __init__(self, df, needs, tcot_parser, media: Media, base) -> None:
        self.sides = _sides(df)
        self.tcots = [c for c in needs if c in TCOT_COLUMNS or c.endswith("_tcot")]
        self.relevant = "relevant" in needs or "relevant" in df.columns
        self.parser = tcot_parser
        self.media = media
        self.base = base
        self.seen: dict[str, int] = {}
        self._media: dict[str, str | None] = {}

    def check(self, rec: dict[str, Any], row: int) -> tuple[str, str] | None:
        """(column, reason) of the first problem of row ``row``, or None."""
        for col in ("pair_id", "dataset", "modality"):
            v = rec.get(col)
            if not isinstance(v, str) or not v:
                return col, f"is {_kind(v) if not isinstance(v, str) else 'empty'}, not a string"
        if rec["modality"] not in TASK_MODALITIES:
            return "modality", f"{rec['modality']!r} is not one of {', '.join(TASK_MODALITIES)}"
        for s in self.sides:
            bad = self._side(rec, s)
            if bad:
                return bad
        for col in self.tcots:
            v = rec.get(col)
            if not isinstance(v, str):
                return col, f"is {_kind(v)}, not a T-CoT string; rerun the annotation"
        if self.relevant:
            v = rec.get("relevant")
            if not isinstance(v, bool) and type(v).__name__ != "bool_":
                return "relevant", f"is {_kind(v)}, not true/false; rerun the relevance filter"
        # last: a row is a duplicate of the first *good* row with its pair_id
        first = self.seen.setdefault(rec["pair_id"], row)
        if first != row:
            return "pair_id", f"{rec['pair_id']!r} repeats row {first}"
        return None

    def _side(self, rec: dict[str, Any], s: str) -> tuple[str, str] | None:
        mod = rec.get(f"{s}_modality")
        if mod not in SIDE_MODALITIES:
            what = repr(mod) if isinstance(mod, str) else _kind(mod)
            return f"{s}_modality", f"{what} is not one of {', '.join(SIDE_MODALITIES)}"
        for f in ("inst", "text", "image", "gt"):
            v = rec.get(f"{s}_{f}")
            if not isinstance(v, str):
                hint = " ('' when the side has none)" if f in ("image", "gt") else " ('' if empty)"
                return f"{s}_{f}", f"is {_kind(v)}, not a string{hint}"
        frames = rec.get(f"{s}_frames")
        if not _is_list(frames) or not all(isinstance(p, str) and p for p in frames):
            return f"{s}_frames", f"is {_kind(frames)}, not a list of frame paths ([] if none)"
        if mod == "text" and not (rec[f"{s}_text"].strip() or rec[f"{s}_inst"].strip()):
            return f"{s}_text", "is empty: a text side needs a text or an instruction"
        if mod in ("image", "document") and not rec[f"{s}_image"]:
            return f"{s}_image", f"is empty but {s}_modality is {mod!r}"
        if mod == "video" and not len(frames):
            return f"{s}_frames", f"is empty but {s}_modality is 'video'"
        for col, paths in ((f"{s}_image", [rec[f"{s}_image"]] if rec[f"{s}_image"] else []),
                           (f"{s}_frames", frames)):  # fmt: skip
            for p in paths:
                reason = self._media_problem(p)
                if reason:
                    return col, reason
        gt = rec[f"{s}_gt"]
        if gt:
            try:
                ok = isinstance(json.loads(gt), dict)
            except ValueError:
                ok = False
            if not ok:
                return f"{s}_gt", "is not a JSON object ('' when unknown)"
        return None

    def _media_problem(self, path: str) -> str | None:
        if path not in self._media:
            self._media[path] = _media_problem(path, self.media, self.base)
        return self._media[path]

    def tcot_problem_counts(self, good) -> dict[str, int]:
        if self.parser is None or not self.tcots:
            return {}
        # keyed by side, as the annotate stage's own count ("qry", "pos")
        return {
            c.removesuffix("_tcot"): int(sum(bool(self.parser(t).problems) for t in good[c]))
            for c in self.tcots
        }


def _media_problem(path: str, media: Media, base) -> str | None:
    if not os.path.isabs(path):
        return f"media path {path!r} is not absolute (resolve it against the run folder)"
    if not os.path.isfile(path):
        where = f" (relative paths are read from {base})" if base is not None else ""
        return f"file {path} not found{where}"
    if media == "exists":
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            if media == "verify":
                im.verify()
    except Exception as e:  # PIL raises many types for corrupt files
        return f"file {path} does not open as an image ({type(e).__name__}: {e})"
    return None
