"""The types every stage shares: :class:`Item` and THE pair format.

An :class:`Item` is one side of a training pair or one query/candidate of a benchmark task;
the loaders, annotators, input builder, models, training and evaluation all pass it around,
so it lives at the bottom of the house (this module imports nothing of ume but its errors).

A *pair* is a (query side, positive side) of one dataset. Each side is an :class:`Item`;
in a parquet table its fields are columns with the prefix ``qry_`` or ``pos_``:

============  ===========  ==========================================================
column        type         meaning
============  ===========  ==========================================================
pair_id       str          unique within the table (``<dataset>:<index>``)
dataset       str          source dataset name (sampling weights and caps are per dataset)
modality      str          task modality: ``image`` | ``video`` | ``visdoc``
{p}modality   str          side modality: ``text`` | ``image`` | ``video`` | ``document``
{p}inst       str          instruction (may be empty)
{p}text       str          text content (may be empty)
{p}image      str          absolute path of the image ('' if none)
{p}frames     list[str]    absolute paths of the video frames in order ([] if none)
{p}gt         str          JSON ground truth for the oracle annotator ('' if unknown):
                           {"boxes": [[x1,y1,x2,y2], ...] in 0..1000,
                            "key_frames": [1-based indices], "keywords": [...],
                            "description": "..."}
============  ===========  ==========================================================

The annotation stage adds ``qry_tcot`` and ``pos_tcot`` (T-CoT strings); the filter adds
``relevant`` (bool); the split writes ``contrastive.parquet`` and ``rl.parquet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ume.errors import DataError

SIDE_MODALITIES = ("text", "image", "video", "document")
TASK_MODALITIES = ("image", "video", "visdoc")
SIDES = ("qry", "pos")
ITEM_FIELDS = ("modality", "inst", "text", "image", "frames", "gt")
PAIR_COLUMNS = (
    "pair_id",
    "dataset",
    "modality",
    *tuple(f"{s}_{f}" for s in SIDES for f in ITEM_FIELDS),
)


@dataclass(frozen=True)
class Item:
    """One side of a pair (or one query/candidate of a benchmark task)."""

    modality: str = "text"
    inst: str = ""
    text: str = ""
    image: str = ""
    frames: tuple[str, ...] = ()
    gt: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.modality not in SIDE_MODALITIES:
            raise DataError(
                f"item modality {self.modality!r} is not one of {', '.join(SIDE_MODALITIES)}"
            )

    def to_columns(self, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}_modality": self.modality,
            f"{prefix}_inst": self.inst,
            f"{prefix}_text": self.text,
            f"{prefix}_image": self.image,
            f"{prefix}_frames": list(self.frames),
            f"{prefix}_gt": json.dumps(self.gt, sort_keys=True) if self.gt else "",
        }

    @classmethod
    def from_row(cls, row: Any, prefix: str) -> Item:
        gt = row.get(f"{prefix}_gt") or ""
        frames = row.get(f"{prefix}_frames")
        return cls(
            modality=row[f"{prefix}_modality"],
            inst=row.get(f"{prefix}_inst") or "",
            text=row.get(f"{prefix}_text") or "",
            image=row.get(f"{prefix}_image") or "",
            frames=tuple(frames) if frames is not None else (),
            gt=json.loads(gt) if gt else {},
        )


def pair_row(pair_id: str, dataset: str, modality: str, qry: Item, pos: Item) -> dict[str, Any]:
    if modality not in TASK_MODALITIES:
        raise DataError(f"task modality {modality!r} is not one of {', '.join(TASK_MODALITIES)}")
    return (
        {"pair_id": pair_id, "dataset": dataset, "modality": modality}
        | qry.to_columns("qry")
        | pos.to_columns("pos")
    )


def pairs_frame(rows: list[dict[str, Any]]):
    """A DataFrame with exactly :data:`PAIR_COLUMNS` (in order), even when ``rows`` is empty."""
    import pandas as pd

    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def check_pairs_frame(df, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` if ``df`` lacks pair columns."""
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: not a pair table, missing columns {missing}; "
            "write it with ume.items.pairs_frame"
        )
    dup = df["pair_id"][df["pair_id"].duplicated()].tolist()
    if dup:
        raise DataError(f"{source}: duplicate pair_id values {dup[:5]}")
