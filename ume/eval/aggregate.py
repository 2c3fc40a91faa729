"""Benchmark aggregates exactly as the benchmarks define them, and checks of published tables.

MMEB-V2: each category (I-CLS ... OOD) is the unweighted mean of its tasks' main metric
x100; each modality (Image, Video, VisDoc) the unweighted mean of *its tasks* (not of its
categories); ``All`` the unweighted mean over all 78 tasks; ``All w/o OOD`` (ours, not a
published column) the mean over the 74 tasks outside VisDoc-OOD, the one overall that rows
measured on the old and on the fixed ViDoSeek-page / MMLongBench-page splits share.
UVRB: each column (TXT, CMP, VIS, CG, FG, LC, S, T, PR) the unweighted mean of its
datasets' main metric x100; ``AVG`` the unweighted mean of the six columns TXT, CMP, VIS,
CG, FG, LC.

Missing tasks are never averaged over silently: a column with a missing task is ``None``
in :attr:`Aggregate.columns`, the mean over the tasks that are present is reported
separately in :attr:`Aggregate.partial`, and :attr:`Aggregate.missing` lists them.

Input scale: scores may be fractions (0-1, as in ``{task}_score.json`` and the leaderboard
JSON) or percentages (0-100, as in published tables). ``scale="fraction"`` or
``scale="percent"`` says which; ``scale="auto"`` (the default) takes the input as fractions
when every value is <= 1 and as percentages otherwise. Auto-detection can only go wrong
for a percentage input whose every value is <= 1 (e.g. a lone 0.4%); pass the scale
explicitly for such inputs. Outputs are always percentages.

Command line::

    python -m ume.eval.aggregate SUBMISSION.json [--suite mmeb|uvrb] [--scale auto]
                                                 [--json] [--strict]

reads a leaderboard-format JSON (``{"metadata": {...}, "metrics": {"image": {task:
{metric: value}}, "video": {...}, "visdoc": {...}}}``), a flat ``{task: value or
{metric: value}}`` JSON, or a folder of ``{task}_score.json`` files, and prints the
column table. ``--strict`` exits with status 1 when tasks are missing.
``python -m ume.eval.aggregate --check-published`` prints the notes of
:func:`check_published_tables`.

Published tables (``ume/report/reference/``) are read in one place, :func:`read_published`,
for the checks here and the leaderboard's baseline rows alike; it also reads the split
(old or fixed page-level OOD tasks) each published MMEB-V2 row was measured on
(``mmeb_v2_ood_split.csv``, with the evidence for each).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.io import write_text
from ume.suites.registry import (
    MMEB_CATEGORIES,
    MMEB_MODALITY_COLUMNS,
    UVRB_COLUMNS,
    UVRB_MAIN_COLUMNS,
    TaskSpec,
    canonical_category,
    find_task,
    tasks,
)

#: Published column order of the MMEB table (paper Table 1) and the UVRB table (Table 13).
MMEB_COLUMNS: tuple[str, ...] = (
    "I-CLS",
    "I-QA",
    "I-RET",
    "I-GD",
    "Image",
    "V-CLS",
    "V-QA",
    "V-RET",
    "V-MRET",
    "Video",
    "VDRv1",
    "VDRv2",
    "VR",
    "OOD",
    "VisDoc",
    "All",
)
UVRB_TABLE_COLUMNS: tuple[str, ...] = ("AVG", *UVRB_COLUMNS)
#: The MMEB-V2 overall without the VisDoc-OOD tasks (comparable across the OOD splits).
MMEB_NO_OOD = "All w/o OOD"
#: The published columns an OOD split changes (and the task-level scores it changes).
OOD_SPLIT_COLUMNS: tuple[str, ...] = ("OOD", "VisDoc", "All")

#: Reference data shipped with the package (copied from the published tables).
REFERENCE_DIR = Path(__file__).resolve().parent.parent / "report" / "reference"

#: Metadata keys the MMEB leaderboard's submission file carries.
SUBMISSION_METADATA_KEYS: tuple[str, ...] = (
    "model_name",
    "model_backbone",
    "model_size",
    "embedding_dimension",
    "max_length_tokens",
)


# ---------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """Columns of one suite's table for one model; all scores in percent."""

    suite: str
    scores: dict[str, float]  # registry task name -> main metric, percent
    columns: dict[str, float | None]  # published column order; None where incomplete
    partial: dict[str, float | None]  # mean over the tasks present (None if none)
    counts: dict[str, tuple[int, int]]  # column -> (tasks present, tasks expected)
    missing: list[str]  # registry names of the missing tasks
    unknown: list[str] = field(default_factory=list)  # input names not in the registry
    input_scale: str = "percent"  # how the input was read: "fraction" | "percent"
    definition: str = ""  # UVRB: "published" | "flat" (see aggregate_uvrb)

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def overall(self) -> float | None:
        return self.columns["All" if self.suite == "mmeb" else "AVG"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["complete"] = self.complete
        d["counts"] = {k: list(v) for k, v in self.counts.items()}
        return d

    def table(self, digits: int = 2) -> str:
        """Plain-text table: column, score (or INCOMPLETE + partial mean), tasks present."""
        title = {"mmeb": "MMEB-V2", "uvrb": "UVRB"}.get(self.suite, self.suite)
        head = (
            f"{title} aggregate (main metric x100; input read as {self.input_scale}; "
            + (f"{self.definition} column definition; " if self.suite == "uvrb" else "")
            + ("complete" if self.complete else f"INCOMPLETE: {len(self.missing)} task(s) missing")
            + ")"
        )
        w = max(8, *(len(c) for c in self.columns))
        lines = [head, f"{'column':<{w}} {'score':>8}  tasks"]
        for col, val in self.columns.items():
            have, want = self.counts[col]
            if val is not None:
                lines.append(f"{col:<{w}} {val:>8.{digits}f}  {have}/{want}")
            else:
                p = self.partial[col]
                ptxt = (
                    f"partial mean {p:.{digits}f} over {have}/{want}"
                    if p is not None
                    else "no tasks"
                )
                lines.append(f"{col:<{w}} {'--':>8}  {have}/{want}  (incomplete; {ptxt})")
        if self.missing:
            lines.append("missing tasks: " + ", ".join(self.missing))
        if self.unknown:
            lines.append("ignored (not in registry): " + ", ".join(self.unknown))
        return "\n".join(lines)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _detect_scale(values: Sequence[float], scale: str) -> str:
    if scale not in ("auto", "fraction", "percent"):
        raise ValueError(f"scale must be 'auto', 'fraction' or 'percent', got {scale!r}")
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise DataError(f"score {v!r} is not a finite non-negative number")
    if scale == "auto":
        return "fraction" if all(v <= 1.0 for v in values) else "percent"
    limit = 1.0 if scale == "fraction" else 100.0
    bad = [v for v in values if v > limit + 1e-9]
    if bad:
        raise DataError(
            f"scores {bad[:5]} exceed {limit} but scale={scale!r}; "
            "pass the other scale or scale='auto'"
        )
    return scale


def _main_scores(
    suite: str, scores: Mapping[str, float | Mapping[str, Any]], scale: str
) -> tuple[dict[str, float], list[str], str]:
    raw: dict[str, float] = {}
    unknown: list[str] = []
    for name, val in scores.items():
        spec = find_task(suite, name)
        if spec is None:
            unknown.append(name)
            continue
        if isinstance(val, Mapping):
            if spec.metric not in val:
                raise DataError(
                    f"task {name!r}: no {spec.metric!r} (its main metric) among {sorted(val)}"
                )
            val = val[spec.metric]
        if spec.name in raw:
            raise DataError(f"task {spec.name!r} given twice (as {name!r} and under another name)")
        raw[spec.name] = float(val)
    used = _detect_scale(list(raw.values()), scale)
    mult = 100.0 if used == "fraction" else 1.0
    return {k: v * mult for k, v in raw.items()}, unknown, used


def _column(
    specs: Sequence[TaskSpec], pct: Mapping[str, float]
) -> tuple[float | None, float | None, tuple[int, int]]:
    have = [pct[s.name] for s in specs if s.name in pct]
    part = _mean(have)
    full = part if len(have) == len(specs) else None
    return full, part, (len(have), len(specs))


def aggregate_mmeb(
    scores: Mapping[str, float | Mapping[str, Any]], scale: str = "auto"
) -> Aggregate:
    """MMEB-V2 columns from per-task scores (main metric, or a dict of metrics per task)."""
    pct, unknown, used = _main_scores("mmeb", scores, scale)
    specs = tasks("mmeb")
    return _build("mmeb", column_tasks("mmeb"), pct, specs, unknown, used)


def column_tasks(suite: str) -> dict[str, list[TaskSpec]]:
    """The tasks behind each column of ``suite``'s table (MMEB-V2: categories, modalities,
    ``All``, ``All w/o OOD``; UVRB: TXT, CMP, VIS and the ability groups, ``AVG`` = every
    dataset). A column is incomplete, or partial, when one of these tasks is."""
    specs = tasks(suite)
    if suite == "mmeb":
        groups: dict[str, list[TaskSpec]] = {c: [] for c in (*MMEB_COLUMNS, MMEB_NO_OOD)}
        for s in specs:
            groups[s.category].append(s)
            groups[MMEB_MODALITY_COLUMNS[s.modality]].append(s)
            groups["All"].append(s)
            if s.category != "OOD":
                groups[MMEB_NO_OOD].append(s)
        return groups
    if suite == "uvrb":
        groups = {c: [] for c in UVRB_TABLE_COLUMNS}
        for s in specs:
            groups["AVG"].append(s)
            groups[s.category].append(s)
            for g in s.groups:
                groups[g].append(s)
        return groups
    raise DataError(f"no benchmark columns for suite {suite!r}; use 'mmeb' or 'uvrb'")


UVRB_DEFINITIONS: tuple[str, ...] = ("published", "flat")


def aggregate_uvrb(
    scores: Mapping[str, float | Mapping[str, Any]],
    scale: str = "auto",
    definition: str = "published",
) -> Aggregate:
    """UVRB columns; AVG = mean of TXT, CMP, VIS, CG, FG, LC.

    ``definition="published"`` (default) is how the published baseline rows are computed
    (it reproduces 15 of their 17 ability rows, GVE-3B's AVG 57.1 included): CG, S, T,
    PR, LC, CMP, VIS are means of their datasets, but FG is the mean of the S, T, PR
    columns and TXT the mean of the CG, FG, LC columns. ``definition="flat"`` takes every
    column, TXT and FG included, as the plain mean of its datasets (what the Embed-RL
    rows of the same table use). AVG is the mean of the six columns either way.
    """
    if definition not in UVRB_DEFINITIONS:
        raise ValueError(f"definition must be one of {UVRB_DEFINITIONS}, got {definition!r}")
    pct, unknown, used = _main_scores("uvrb", scores, scale)
    specs = tasks("uvrb")
    groups = {c: v for c, v in column_tasks("uvrb").items() if c != "AVG"}
    agg = _build("uvrb", groups, pct, specs, unknown, used)
    agg.definition = definition
    if definition == "published":
        for col, parts in (("FG", ("S", "T", "PR")), ("TXT", ("CG", "FG", "LC"))):
            full = [agg.columns[c] for c in parts]
            agg.columns[col] = _mean(full) if all(v is not None for v in full) else None  # type: ignore[arg-type]
            agg.partial[col] = _mean([agg.partial[c] for c in parts if agg.partial[c] is not None])
    main_full = [agg.columns[c] for c in UVRB_MAIN_COLUMNS]
    main_part = [agg.partial[c] for c in UVRB_MAIN_COLUMNS if agg.partial[c] is not None]
    avg = _mean(main_full) if all(v is not None for v in main_full) else None  # type: ignore[arg-type]
    agg.columns = {"AVG": avg, **agg.columns}
    # partial AVG: mean of the six columns' partial means (labelled partial, never AVG)
    agg.partial = {"AVG": _mean(main_part), **agg.partial}
    agg.counts = {"AVG": (len(pct), len(specs)), **agg.counts}
    return agg


def _build(
    suite: str,
    groups: Mapping[str, Sequence[TaskSpec]],
    pct: Mapping[str, float],
    specs: Sequence[TaskSpec],
    unknown: list[str],
    used: str,
) -> Aggregate:
    columns, partial, counts = {}, {}, {}
    for col, members in groups.items():
        columns[col], partial[col], counts[col] = _column(members, pct)
    return Aggregate(
        suite=suite,
        scores=dict(pct),
        columns=columns,
        partial=partial,
        counts=counts,
        missing=[s.name for s in specs if s.name not in pct],
        unknown=unknown,
        input_scale=used,
    )


def aggregate(
    suite: str,
    scores: Mapping[str, float | Mapping[str, Any]],
    scale: str = "auto",
    definition: str = "published",
) -> Aggregate:
    """:func:`aggregate_mmeb` or :func:`aggregate_uvrb` by suite name."""
    if suite == "mmeb":
        return aggregate_mmeb(scores, scale)
    if suite == "uvrb":
        return aggregate_uvrb(scores, scale, definition)
    raise DataError(f"no aggregate defined for suite {suite!r}; use 'mmeb' or 'uvrb'")


# ---------------------------------------------------------------------------------------
# Reading and writing score files
# ---------------------------------------------------------------------------------------


def load_scores(path: str | os.PathLike) -> dict[str, Any]:
    """Per-task scores from a leaderboard JSON, a flat JSON, or a ``*_score.json`` folder.

    Returns ``{task name as written: value or {metric: value}}``.
    """
    p = Path(path)
    if p.is_dir():
        return load_score_dir(p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, Mapping):
        raise DataError(f"{p}: expected a JSON object at top level")
    metrics = data.get("metrics", data)
    if not isinstance(metrics, Mapping):
        raise DataError(f"{p}: 'metrics' must be an object")
    out: dict[str, Any] = {}
    for key, val in metrics.items():
        # a modality section: {task: {metric: value}}
        if isinstance(val, Mapping) and val and all(isinstance(v, Mapping) for v in val.values()):
            for task, m in val.items():
                if task in out:
                    raise DataError(f"{p}: task {task!r} appears in more than one section")
                out[task] = m
        else:
            out[key] = val
    return out


def load_score_dir(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{task: metrics}`` from the ``{task}_score.json`` files in ``folder``."""
    folder = Path(folder)
    out = {}
    for f in sorted(folder.glob("*_score.json")):
        try:
            out[f.name[: -len("_score.json")]] = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{f}: not valid JSON ({e})") from None
    if not out:
        raise DataError(f"{folder}: no *_score.json files")
    return out


def build_submission(
    per_task: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
    *,
    require_complete: bool = False,
) -> dict[str, Any]:
    """The MMEB leaderboard submission object from ``{task: {metric: value (0-1)}}``.

    Task names may be any registered spelling; they are written under the scoring name in
    their modality section, in benchmark order. Non-numeric entries (flags) are dropped;
    a task scored with ``scorer_compatible=True`` sets ``metadata["scorer_compatible"]``.
    Missing tasks raise with ``require_complete=True``, else are listed in
    ``metadata["missing_tasks"]``.
    """
    absent = [k for k in SUBMISSION_METADATA_KEYS if k not in metadata]
    if absent:
        raise DataError(f"submission metadata lacks {absent}; required: {SUBMISSION_METADATA_KEYS}")
    resolved: dict[str, Mapping[str, Any]] = {}
    for name, m in per_task.items():
        spec = find_task("mmeb", name)
        if spec is None:
            raise DataError(f"task {name!r} is not an MMEB-V2 task")
        if spec.name in resolved:
            raise DataError(f"task {spec.name!r} given twice")
        resolved[spec.name] = m
    meta = dict(metadata)
    sections: dict[str, dict[str, dict[str, Any]]] = {"image": {}, "video": {}, "visdoc": {}}
    flagged = False
    for spec in tasks("mmeb"):
        if spec.name not in resolved:
            continue
        clean: dict[str, Any] = {}
        for k, v in resolved[spec.name].items():
            if k == "scorer_compatible" and v:
                flagged = True
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not k.startswith("num_") and not (0.0 <= float(v) <= 1.0):
                raise DataError(
                    f"task {spec.name!r}: {k}={v} is outside 0..1; the submission uses fractions"
                )
            clean[k] = v
        if spec.metric not in clean:
            raise DataError(f"task {spec.name!r}: main metric {spec.metric!r} missing")
        sections[spec.modality][spec.name] = clean
    missing = [s.name for s in tasks("mmeb") if s.name not in resolved]
    if missing and require_complete:
        raise DataError(f"{len(missing)} MMEB-V2 task(s) missing: {', '.join(missing)}")
    if missing:
        meta["missing_tasks"] = missing
    if flagged:
        meta["scorer_compatible"] = True
    meta.setdefault("report_generated_date", _dt.datetime.now().isoformat())
    return {"metadata": meta, "metrics": sections}


def write_submission(
    path: str | os.PathLike,
    per_task: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
    *,
    require_complete: bool = False,
) -> Path:
    """Write :func:`build_submission`'s object atomically (indent 4, benchmark order)."""
    obj = build_submission(per_task, metadata, require_complete=require_complete)
    return write_text(path, json.dumps(obj, indent=4) + "\n")


# ---------------------------------------------------------------------------------------
# Checking published tables
# ---------------------------------------------------------------------------------------

#: Model names of the per-task MMEB table that differ from the category table's.
TASK_TABLE_MODEL_NAMES: dict[str, str] = {"ColPali v1.3": "ColPali-V1.3-3B"}


@dataclass(frozen=True)
class TableNote:
    """A printed average contradicted by the numbers it should be computed from."""

    table: str  # file name
    model: str
    column: str
    printed: float
    recomputed: float
    basis: str  # what the recomputation used

    @property
    def diff(self) -> float:
        return self.printed - self.recomputed

    def __str__(self) -> str:
        return (
            f"{self.table}: {self.model} {self.column} printed {self.printed:.1f}, "
            f"recomputed {self.recomputed:.2f} from {self.basis} (diff {self.diff:+.2f})"
        )


def _num(cell: str | None) -> float | None:
    """A printed number (``70.1*`` -> 70.1; empty, ``-`` -> None)."""
    if cell is None:
        return None
    cell = cell.strip().rstrip("*†‡").strip()
    if not cell or cell in ("-", "–"):
        return None
    return float(cell)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class OodSplit:
    """The split of the page-level OOD tasks a published row was measured on."""

    split: str  # "old" | "fixed"
    evidence: str  # where that is stated, or how it is inferred


@dataclass
class PublishedTables:
    """Every published table of the reference folder, read once (percent, as printed).

    MMEB-V2 models are named as in the category table (the per-task table's spellings are
    mapped by :data:`TASK_TABLE_MODEL_NAMES`; ``task_table_names`` maps them back, for
    notes about that table).
    """

    reference_dir: Path
    mmeb_categories: dict[str, dict[str, float | None]] = field(default_factory=dict)
    mmeb_marked: dict[str, set[str]] = field(default_factory=dict)  # cells printed with "*"
    mmeb_tasks: dict[str, dict[str, float]] = field(default_factory=dict)
    mmeb_task_printed: dict[str, dict[str, float | None]] = field(default_factory=dict)
    task_table_names: dict[str, str] = field(default_factory=dict)
    mmeb_submissions: dict[str, Path] = field(default_factory=dict)
    uvrb_datasets: dict[str, dict[str, float | None]] = field(default_factory=dict)
    uvrb_avg16: dict[str, float | None] = field(default_factory=dict)
    uvrb_abilities: dict[str, dict[str, float | None]] = field(default_factory=dict)
    ood_split: dict[str, OodSplit] = field(default_factory=dict)

    CATEGORIES = "mmeb_v2_categories_published.csv"
    TASKS = "mmeb_v2_tasks_published.csv"
    UVRB_DATASETS = "uvrb_datasets_published.csv"
    UVRB_ABILITIES = "uvrb_abilities_published.csv"
    OOD_SPLIT = "mmeb_v2_ood_split.csv"


def read_published(reference_dir: str | os.PathLike | None = None) -> PublishedTables:
    """The published tables under ``reference_dir`` (default: the package's copy)."""
    ref = Path(reference_dir) if reference_dir is not None else REFERENCE_DIR
    pub = PublishedTables(ref)
    for r in _read_csv(ref / pub.CATEGORIES):
        model = r["model"]
        pub.mmeb_categories[model] = {c: _num(r.get(c)) for c in MMEB_COLUMNS if c in r}
        pub.mmeb_marked[model] = {c for c in MMEB_COLUMNS if (r.get(c) or "").strip().endswith("*")}
    rows = _read_csv(ref / pub.TASKS)
    for m in [c for c in (rows[0] if rows else {}) if c != "Task"]:
        name = TASK_TABLE_MODEL_NAMES.get(m, m)
        pub.task_table_names[name] = m
        pub.mmeb_tasks[name], pub.mmeb_task_printed[name] = {}, {}
    for r in rows:
        label = r["Task"].strip()
        col = _summary_column(label)
        spec = None if col is not None else find_task("mmeb", label)
        if col is None and spec is None:
            raise DataError(f"{ref / pub.TASKS}: unknown task row {label!r}")
        for name, m in pub.task_table_names.items():
            v = _num(r[m])
            if col is not None:
                pub.mmeb_task_printed[name][col] = v
            elif v is not None:
                pub.mmeb_tasks[name][spec.name] = v  # type: ignore[union-attr]
    for sub in sorted(ref.glob("mmeb_v2_*.json")):
        data = json.loads(sub.read_text(encoding="utf-8"))
        pub.mmeb_submissions[data.get("metadata", {}).get("model_name", sub.stem)] = sub
    names = [s.name for s in tasks("uvrb")]
    for r in _read_csv(ref / pub.UVRB_DATASETS):
        pub.uvrb_datasets[r["model"]] = {n: _num(r.get(n)) for n in names}
        pub.uvrb_avg16[r["model"]] = _num(r.get("AVG16_as_printed"))
    for r in _read_csv(ref / pub.UVRB_ABILITIES):
        pub.uvrb_abilities[r["model"]] = {c: _num(r.get(c)) for c in UVRB_TABLE_COLUMNS}
    for r in _read_csv(ref / pub.OOD_SPLIT):
        split = r["ood_split"].strip()
        if split not in ("old", "fixed"):
            raise DataError(
                f"{ref / pub.OOD_SPLIT}: model {r['model']!r}: ood_split {split!r} is not "
                "'old' or 'fixed'"
            )
        pub.ood_split[r["model"]] = OodSplit(split, r.get("evidence", "").strip())
    return pub


def _check(notes, table, model, column, printed, recomputed, basis, tol) -> None:
    if printed is None or recomputed is None:
        return
    if abs(printed - recomputed) > tol + 1e-9:
        notes.append(TableNote(table, model, column, printed, round(recomputed, 4), basis))


def _mmeb_counts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in tasks("mmeb"):
        counts[s.category] = counts.get(s.category, 0) + 1
    return counts


def check_published_tables(
    reference_dir: str | os.PathLike | None = None,
    tol: float = 0.1,
    published: PublishedTables | None = None,
) -> list[TableNote]:
    """Printed averages that their own per-task (or per-column) numbers contradict.

    Checks, with numbers printed to one decimal (``tol`` covers the rounding):
    the MMEB category table's modality and ``All`` columns against its category columns
    (task-count weighted); the per-task table's category/``Avg`` rows against its tasks;
    the category table against the per-task table's tasks; the leaderboard JSON against
    the category table; UVRB's ``AVG16_as_printed`` against the mean of the 16 datasets;
    the UVRB ability table's columns against the dataset table, and its ``AVG`` against
    the mean of its own six columns TXT, CMP, VIS, CG, FG, LC.
    """
    pub = published if published is not None else read_published(reference_dir)
    notes: list[TableNote] = []
    counts = _mmeb_counts()
    mods = {
        "Image": [c for c, m in MMEB_CATEGORIES.items() if m == "image"],
        "Video": [c for c, m in MMEB_CATEGORIES.items() if m == "video"],
        "VisDoc": [c for c, m in MMEB_CATEGORIES.items() if m == "visdoc"],
        "All": list(MMEB_CATEGORIES),
    }
    cat_file, task_file = pub.CATEGORIES, pub.TASKS

    # 1. category table, internal
    for model, vals in pub.mmeb_categories.items():
        for col, cats in mods.items():
            if any(vals.get(c) is None for c in cats):
                continue
            rec = sum(vals[c] * counts[c] for c in cats) / sum(counts[c] for c in cats)  # type: ignore[operator]
            _check(notes, cat_file, model, col, vals.get(col), rec,
                   "its own category columns (task-count weighted)", tol)  # fmt: skip

    # 2./3. per-task table
    for model, per_task in pub.mmeb_tasks.items():
        agg = aggregate_mmeb(per_task, scale="percent")
        for col, val in pub.mmeb_task_printed[model].items():
            _check(notes, task_file, pub.task_table_names[model], col, val,
                   agg.columns.get(col), "its own per-task rows", tol)  # fmt: skip
        if model in pub.mmeb_categories:
            for col in MMEB_COLUMNS:
                _check(notes, cat_file, model, col, pub.mmeb_categories[model].get(col),
                       agg.columns.get(col), f"per-task table ({task_file})", tol)  # fmt: skip

    # leaderboard submission(s) vs the category table
    for model, sub in pub.mmeb_submissions.items():
        if model not in pub.mmeb_categories:
            continue
        agg = aggregate_mmeb(load_scores(sub), scale="fraction")
        for col in MMEB_COLUMNS:
            _check(notes, cat_file, model, col, pub.mmeb_categories[model].get(col),
                   agg.columns.get(col), f"leaderboard JSON ({sub.name})", tol)  # fmt: skip

    # 4. UVRB
    ds_file, ab_file = pub.UVRB_DATASETS, pub.UVRB_ABILITIES
    for model, vals in pub.uvrb_datasets.items():
        if any(v is None for v in vals.values()):
            continue
        _check(notes, ds_file, model, "AVG16_as_printed", pub.uvrb_avg16.get(model),
               sum(vals.values()) / len(vals), "the mean of its 16 datasets", tol)  # type: ignore[arg-type]  # fmt: skip
        if model in pub.uvrb_abilities:
            full = aggregate_uvrb(vals, scale="percent", definition="published")  # type: ignore[arg-type]
            flat = aggregate_uvrb(vals, scale="percent", definition="flat")  # type: ignore[arg-type]
            for col in UVRB_TABLE_COLUMNS:
                printed_v, alt = pub.uvrb_abilities[model][col], flat.columns[col]
                basis = f"dataset table ({ds_file}), published (baselines') definition"
                if printed_v is not None and alt is not None and abs(printed_v - alt) <= tol + 1e-9:
                    basis += f"; it matches the flat definition ({alt:.2f}) instead"
                _check(notes, ab_file, model, col, printed_v, full.columns[col], basis, tol)
    for model, row in pub.uvrb_abilities.items():
        six = [row[c] for c in UVRB_MAIN_COLUMNS]
        if all(v is not None for v in six):
            _check(notes, ab_file, model, "AVG", row["AVG"], sum(six) / 6,  # type: ignore[arg-type]
                   "the mean of its own six columns TXT, CMP, VIS, CG, FG, LC", tol)  # fmt: skip
    return notes


_CAT_ROW = re.compile(r"^(\S+)\s*\((\d+)\)$")


def _summary_column(label: str) -> str | None:
    """Column of a per-task table summary row (``"Avg - Image (...)"``, ``"I-VG (4)"``)."""
    if label.startswith("Avg - "):
        word = label[len("Avg - ") :].split()[0]
        return {"All": "All", "Image": "Image", "Video": "Video", "Visdoc": "VisDoc"}.get(word)
    m = _CAT_ROW.match(label)
    if m:
        cat = canonical_category(m.group(1))
        if cat in MMEB_CATEGORIES:
            return cat
    return None


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m ume.eval.aggregate",
        description="Aggregate per-task scores into the benchmark's table (MMEB-V2 or UVRB).",
    )
    ap.add_argument(
        "submission", nargs="?", help="leaderboard JSON, flat JSON, or *_score.json folder"
    )
    ap.add_argument("--suite", default="mmeb", choices=("mmeb", "uvrb"))
    ap.add_argument("--scale", default="auto", choices=("auto", "fraction", "percent"))
    ap.add_argument(
        "--uvrb-definition",
        default="published",
        choices=UVRB_DEFINITIONS,
        help="UVRB TXT/FG columns: 'published' (as the baselines' rows) or 'flat' dataset means",
    )
    ap.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    ap.add_argument("--strict", action="store_true", help="exit 1 when tasks are missing")
    ap.add_argument(
        "--check-published",
        action="store_true",
        help="list published averages contradicted by their own per-task numbers",
    )
    args = ap.parse_args(argv)
    if args.check_published:
        notes = check_published_tables()
        for n in notes:
            print(n)
        print(f"{len(notes)} inconsistencies found")
        return 0
    if not args.submission:
        ap.error("SUBMISSION is required (or --check-published)")
    try:
        agg = aggregate(args.suite, load_scores(args.submission), args.scale, args.uvrb_definition)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(agg.to_dict(), indent=2) if args.json else agg.table())
    return 1 if (args.strict and not agg.complete) else 0


if __name__ == "__main__":
    raise SystemExit(main())
