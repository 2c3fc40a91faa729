"""Leaderboards: published baselines and our runs side by side, from per-task score files.

:func:`build_leaderboard` reads ``<eval_dir>/<variant>/<suite>/{task}.score.json`` of one
or more runs, aggregates each (run, variant, suite) exactly as the benchmark defines it
(:mod:`ume.eval.aggregate`; the synthetic suite by the same rules over its own categories),
and writes into ``out_dir``:

``leaderboard.md`` / ``leaderboard.html``
    per suite a category table (baselines, then our rows: one per run and variant, and the
    *diagnostic* rows: each run's ``chance``, the expected score of a random ranking, and the
    ``oracle_tcot`` / ``oracle_no_evidence`` variants), a per-task table, the rows' OOD splits,
    the missing / incomplete / partial tasks, and the notes on published tables;
``<suite>_categories.csv`` / ``<suite>_tasks.csv``
    the same tables as CSV (scores in percent; empty = not available), with the marks in
    columns of their own;
``leaderboard.png``
    bar charts of the overall and per-category scores of our rows (and Embed-RL's);
``submissions/mmeb_<run>_<variant>.json``
    the MMEB leaderboard submission of every row that evaluated the MMEB suite.

Honesty rules, the same in every output:

* Baselines are recomputed from their published per-task numbers where the paper prints
  them; otherwise their printed category columns are shown and only their averages are
  recomputed. A printed number its own numbers contradict is shown *in its cell* beside the
  recomputed one (``71.2 (printed 70.1)``) and listed in the notes
  (:func:`ume.eval.aggregate.check_published_tables`).
* Every MMEB-V2 row says which split of the page-level OOD tasks it was measured on (old or
  fixed; ``mmeb_v2_ood_split.csv`` for the published rows, with its evidence). A row on
  another split than ours is *not comparable* on OOD, VisDoc and All: those cells are marked
  ``(old split)`` and left out of the best-value marks; ``All w/o OOD`` stands beside
  ``All`` for comparing them.
* A task recorded ``missing`` or ``incomplete`` (half downloaded; the data check's verdict,
  :mod:`ume.suites.check`) is in no average: every column that needs it shows ``--`` and
  the row says INCOMPLETE. A task scored with skipped items is *partial*: its cell shows
  the number skipped, and every average over it is marked ``(partial)``.
* The best value of each column (category tables) and of each task (task tables) among
  comparable, complete values is marked (bold).

The HTML page is self-contained (inline CSS and a few lines of JavaScript, no CDN): this
project's rows are highlighted, marks sit in the cells with their explanation as a tooltip,
and clicking a column header sorts the table by it.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.eval.aggregate import (
    MMEB_COLUMNS,
    MMEB_NO_OOD,
    OOD_SPLIT_COLUMNS,
    UVRB_TABLE_COLUMNS,
    PublishedTables,
    TableNote,
    aggregate_mmeb,
    aggregate_uvrb,
    build_submission,
    check_published_tables,
    column_tasks,
    read_published,
)
from ume.io import write_json, write_text
from ume.suites.registry import (
    MMEB_CATEGORIES,
    MMEB_MODALITY_COLUMNS,
    OOD_SPLIT_TASKS,
    UVRB_MAIN_COLUMNS,
    get_task,
    tasks,
)

log = logging.getLogger(__name__)

SUITE_TITLES = {"mmeb": "MMEB-V2", "uvrb": "UVRB", "synth": "Synthetic suite"}
DIAGNOSTIC = "diagnostic"
DIAGNOSTIC_NOTE = (
    "Rows marked (diagnostic) are not model results and never marked best: `chance` is the "
    "expected score of a random ranking (from each task's candidate and relevant counts); "
    "`oracle_tcot` gives the Embedder ground-truth T-CoTs written by the oracle annotator, the "
    "upper bound the Reasoner chases (`oracle_no_evidence`: the same without evidence)."
)
_METRIC_KEY = re.compile(r"^[a-z_]+@\d+$")
#: The split our MMEB-V2 rows are measured on unless their data say otherwise: the registry
#: scores the page-level OOD tasks under their fixed names, from the "-fixed" repos.
OUR_SPLIT = "fixed"


# --------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of a table: a baseline or one (run, variant) of ours, for one suite."""

    label: str
    suite: str
    source: str  # "ours" | "diagnostic" | "published per-task" | "published categories"
    columns: dict[str, float | None]  # percent; None: not available / incomplete
    tasks: dict[str, float] = field(default_factory=dict)  # task -> main metric, percent
    missing: list[str] = field(default_factory=list)  # tasks not in any average
    partial: dict[str, float | None] = field(default_factory=dict)
    run: str = ""
    variant: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> score json
    skipped: dict[str, int] = field(default_factory=dict)  # task -> items skipped (partial)
    status: dict[str, str] = field(default_factory=dict)  # task -> missing | incomplete
    split: str = ""  # MMEB-V2: "old" | "fixed" (page-level OOD tasks); "" elsewhere
    split_evidence: str = ""
    errata: dict[str, list[float]] = field(default_factory=dict)  # column -> printed values

    @property
    def overall(self) -> float | None:
        return self.columns.get(overall_column(self.suite))

    @property
    def ours(self) -> bool:
        """Rows of this project's runs: model results and diagnostics (chance, oracle T-CoTs)."""
        return self.source in ("ours", DIAGNOSTIC)

    @property
    def diagnostic(self) -> bool:
        return self.source == DIAGNOSTIC

    def partial_columns(self) -> set[str]:
        """Columns averaged over a task with skipped items."""
        if not self.skipped:
            return set()
        members = _members(self.suite)
        return {c for c, names in members.items() if set(names) & set(self.skipped)}


def overall_column(suite: str) -> str:
    return {"mmeb": "All", "uvrb": "AVG"}.get(suite, "All")


def read_scores(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``{task: score record}`` of the ``{task}.score.json`` files in ``folder``."""
    out = {}
    for f in sorted(Path(folder).glob("*.score.json")):
        try:
            out[f.name[: -len(".score.json")]] = json.loads(f.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"{f}: not valid JSON ({e})") from None
    return out


def synth_columns(suite: str) -> list[str]:
    """Columns of a non-benchmark suite: categories, groups, modalities, All (registry order)."""
    cats: list[str] = []
    groups: list[str] = []
    mods: list[str] = []
    for s in tasks(suite):
        if s.category not in cats:
            cats.append(s.category)
        for g in s.groups:
            if g not in groups:
                groups.append(g)
        if s.modality not in mods:
            mods.append(s.modality)
    return [*cats, *groups, *(MMEB_MODALITY_COLUMNS.get(m, m) for m in mods), "All"]


def _members(suite: str) -> dict[str, list[str]]:
    """Task names behind each column of ``suite`` (what makes a column incomplete/partial)."""
    if suite in ("mmeb", "uvrb"):
        return {c: [s.name for s in specs] for c, specs in column_tasks(suite).items()}
    members: dict[str, list[str]] = {c: [] for c in synth_columns(suite)}
    for s in tasks(suite):
        for col in (
            s.category,
            *s.groups,
            MMEB_MODALITY_COLUMNS.get(s.modality, s.modality),
            "All",
        ):
            members[col].append(s.name)
    return members


def aggregate_suite(suite: str, pct: Mapping[str, float]) -> tuple[dict, dict, list[str]]:
    """``(columns, partial, missing)`` of ``suite`` from ``{task: percent}``.

    MMEB-V2 and UVRB as :mod:`ume.eval.aggregate` defines them; any other suite by the
    same rules: each category, group and modality the mean of its tasks, ``All`` the mean
    of all tasks; a column lacking a task is None (its partial mean is kept apart).
    """
    if suite == "mmeb":
        a = aggregate_mmeb(pct, scale="percent")
        return a.columns, a.partial, a.missing
    if suite == "uvrb":
        a = aggregate_uvrb(pct, scale="percent")
        return a.columns, a.partial, a.missing
    columns, partial = {}, {}
    for col, names in _members(suite).items():
        have = [pct[n] for n in names if n in pct]
        partial[col] = sum(have) / len(have) if have else None
        columns[col] = partial[col] if len(have) == len(names) else None
    return columns, partial, [s.name for s in tasks(suite) if s.name not in pct]


def _our_split(records: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """Our row's OOD split: fixed, unless a page-level OOD task was read from a clone of
    another repo (the loader records the clone's origin)."""
    for name in OOD_SPLIT_TASKS:
        origin = str(records.get(name, {}).get("origin") or "")
        if origin and origin != get_task("mmeb", name).hf_repo:
            return "old", f"ours: {name} was read from a clone of {origin}"
    return OUR_SPLIT, "ours: the page-level OOD tasks are read from the -fixed repos"


def our_rows(runs: Mapping[str, str | Path], suites: Sequence[str]) -> list[Row]:
    """Rows of every (run, variant) with score files, for each of ``suites``.

    ``runs`` maps a run name to its ``eval`` folder. Variants come in the folder order of
    :data:`ume.eval.run.VARIANTS` (main first), then any other folder alphabetically.
    """
    from ume.eval.run import DIAGNOSTIC_VARIANTS, VARIANTS

    rows = []
    for run, eval_dir in runs.items():
        eval_dir = Path(eval_dir)
        if not eval_dir.is_dir():
            log.warning("leaderboard: %s has no eval folder %s; skipped", run, eval_dir)
            continue
        found = sorted(p.name for p in eval_dir.iterdir() if p.is_dir())
        order = [v for v in VARIANTS if v in found] + [v for v in found if v not in VARIANTS]
        for variant in order:
            for suite in suites:
                folder = eval_dir / variant / suite
                if not folder.is_dir():
                    continue
                recs = read_scores(folder)
                ok = {
                    t: r
                    for t, r in recs.items()
                    if r.get("status") == "ok" and r.get("main_score") is not None
                }
                pct = {t: 100.0 * float(r["main_score"]) for t, r in ok.items()}
                cols, partial, missing = aggregate_suite(suite, pct)
                split, evidence = _our_split(recs) if suite == "mmeb" else ("", "")
                diagnostic = variant in DIAGNOSTIC_VARIANTS
                rows.append(
                    Row(
                        label=f"{run} / {variant}" + (" (diagnostic)" if diagnostic else ""),
                        suite=suite,
                        source=DIAGNOSTIC if diagnostic else "ours",
                        columns=cols,
                        tasks=pct,
                        missing=missing,
                        partial=partial,
                        run=run,
                        variant=variant,
                        records=recs,
                        skipped={
                            t: int(r["num_skipped"])
                            for t, r in ok.items()
                            if int(r.get("num_skipped") or 0) > 0
                        },
                        status={
                            t: str(recs.get(t, {}).get("status") or "missing") for t in missing
                        },
                        split=split,
                        split_evidence=evidence,
                    )
                )
        rows += chance_rows(run, [r for r in rows if r.run == run], suites)
    return rows


def chance_rows(run: str, rows: Sequence[Row], suites: Sequence[str]) -> list[Row]:
    """Per suite, the expected score of a random ranking (each score file's ``chance``, from
    the task's candidate counts), aggregated like a model's row; a diagnostic, not a model."""
    out = []
    for suite in suites:
        pct: dict[str, float] = {}
        for r in rows:
            if r.suite != suite:
                continue
            for task, rec in r.records.items():
                if rec.get("status") == "ok" and rec.get("chance") is not None:
                    pct.setdefault(task, 100.0 * float(rec["chance"]))
        if not pct:
            continue
        cols, partial, missing = aggregate_suite(suite, pct)
        out.append(
            Row(
                label=f"{run} / chance (diagnostic)",
                suite=suite,
                source=DIAGNOSTIC,
                columns=cols,
                tasks=pct,
                missing=missing,
                partial=partial,
                run=run,
                variant="chance",
                status={t: "missing" for t in missing},
            )
        )
    return out


# --------------------------------------------------------------------------- baselines
def _errata(notes: Sequence[TableNote], names: Sequence[str], tables: Sequence[str]) -> dict:
    out: dict[str, list[float]] = {}
    for n in notes:
        if n.model in names and n.table in tables and n.printed not in out.get(n.column, []):
            out.setdefault(n.column, []).append(n.printed)
    return out


def baseline_rows(
    suite: str,
    reference_dir: str | Path | None = None,
    *,
    published: PublishedTables | None = None,
    notes: Sequence[TableNote] | None = None,
) -> list[Row]:
    """Published rows of ``suite`` (mmeb, uvrb), recomputed from per-task numbers if printed,
    with their OOD split (MMEB-V2) and the printed numbers their own numbers contradict."""
    pub = published if published is not None else read_published(reference_dir)
    notes = list(notes) if notes is not None else check_published_tables(published=pub)
    rows: list[Row] = []
    if suite == "mmeb":
        counts = {c: sum(1 for s in tasks("mmeb") if s.category == c) for c in MMEB_CATEGORIES}
        for model, printed in pub.mmeb_categories.items():
            split = pub.ood_split.get(model)
            kw = {
                "split": split.split if split else "",
                "split_evidence": split.evidence if split else "",
            }
            names = [model, pub.task_table_names.get(model, model)]
            if pub.mmeb_tasks.get(model):
                per_task = pub.mmeb_tasks[model]
                cols, _, missing = aggregate_suite("mmeb", per_task)
                err = _errata(notes, names, (pub.CATEGORIES, pub.TASKS))
                rows.append(
                    Row(
                        model,
                        suite,
                        "published per-task",
                        cols,
                        per_task,
                        missing,
                        errata=err,
                        **kw,
                    )
                )
                continue
            cols = {c: printed.get(c) for c in MMEB_COLUMNS}
            for mod_col, mod in (
                ("Image", "image"),
                ("Video", "video"),
                ("VisDoc", "visdoc"),
                ("All", None),
                (MMEB_NO_OOD, "no-ood"),
            ):
                cats = [
                    c
                    for c, m in MMEB_CATEGORIES.items()
                    if mod is None or m == mod or (mod == "no-ood" and c != "OOD")
                ]
                if all(cols.get(c) is not None for c in cats):
                    cols[mod_col] = sum(cols[c] * counts[c] for c in cats) / sum(  # type: ignore[operator]
                        counts[c] for c in cats
                    )
                else:
                    cols[mod_col] = None
            err = _errata(notes, names, (pub.CATEGORIES,))
            rows.append(Row(model, suite, "published categories", cols, errata=err, **kw))
    elif suite == "uvrb":
        models = list(pub.uvrb_abilities) + [
            m for m in pub.uvrb_datasets if m not in pub.uvrb_abilities
        ]
        for model in models:
            vals = pub.uvrb_datasets.get(model, {})
            err = _errata(notes, [model], (pub.UVRB_ABILITIES,))
            if vals and all(v is not None for v in vals.values()):
                cols, _, missing = aggregate_suite("uvrb", vals)  # type: ignore[arg-type]
                rows.append(
                    Row(model, suite, "published per-task", cols, vals, missing, errata=err)
                )  # type: ignore[arg-type]
                continue
            cols = {c: pub.uvrb_abilities.get(model, {}).get(c) for c in UVRB_TABLE_COLUMNS}
            six = [cols[c] for c in UVRB_MAIN_COLUMNS]
            cols["AVG"] = sum(six) / 6 if all(v is not None for v in six) else None  # type: ignore[arg-type]
            rows.append(Row(model, suite, "published categories", cols, errata=err))
    return rows


# --------------------------------------------------------------------------- tables
def suite_columns(suite: str) -> list[str]:
    if suite == "mmeb":
        return [*MMEB_COLUMNS, MMEB_NO_OOD]
    if suite == "uvrb":
        return list(UVRB_TABLE_COLUMNS)
    return synth_columns(suite)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


@dataclass
class Cell:
    """One cell: its text, the number it sorts by, and its marks (kind, text, explanation)."""

    text: str
    value: float | None = None
    marks: list[tuple[str, str, str]] = field(default_factory=list)
    best: bool = False
    classes: list[str] = field(default_factory=list)


@dataclass
class Table:
    head: list[str]
    rows: list[list[Cell]]
    row_classes: list[str]
    numeric_from: int  # first column holding scores


def _comparable(row: Row, column: str, ref_split: str) -> bool:
    return not (row.split and row.split != ref_split and column in OOD_SPLIT_COLUMNS)


def _task_comparable(row: Row, task: str, ref_split: str) -> bool:
    return not (row.split and row.split != ref_split and task in OOD_SPLIT_TASKS)


def _mark_best(cells: list[Cell]) -> None:
    """Mark the highest value among the cells eligible for it (classes: not 'nc'/'partial')."""
    vals = [
        c.value
        for c in cells
        if c.value is not None and not {"nc", "partial", DIAGNOSTIC} & set(c.classes)
    ]
    if not vals:
        return
    top = max(vals)
    for c in cells:
        if (
            c.value is not None
            and abs(c.value - top) < 1e-9
            and not {"nc", "partial", DIAGNOSTIC} & set(c.classes)
        ):
            c.best = True


def category_table(suite: str, rows: Sequence[Row], ref_split: str = OUR_SPLIT) -> Table:
    cols = suite_columns(suite)
    with_split = suite == "mmeb"
    head = ["model", "source", *(["OOD split"] if with_split else []), *cols, "tasks"]
    n = len(tasks(suite))
    body, classes = [], []
    for r in rows:
        partial_cols = r.partial_columns()
        line = [Cell(r.label), Cell(r.source)]
        if with_split:
            line.append(
                Cell(
                    r.split or "?",
                    marks=[("evidence", "", r.split_evidence)] if r.split_evidence else [],
                )
            )
        for c in cols:
            v = r.columns.get(c)
            cell = Cell(_fmt(v), v)
            for printed in r.errata.get(c, []):
                cell.marks.append(
                    (
                        "erratum",
                        f"printed {printed:.1f}",
                        f"the paper prints {printed:.1f}; its own numbers give {_fmt(v, 2)}",
                    )
                )
            if not _comparable(r, c, ref_split):
                cell.classes.append("nc")
                cell.marks.append(
                    (
                        "split",
                        f"{r.split} split",
                        f"measured on the {r.split} ViDoSeek-page / MMLongBench-page "
                        f"split, not comparable with {ref_split}-split rows; compare "
                        f"{MMEB_NO_OOD}",
                    )
                )
            if r.diagnostic:
                cell.classes.append(DIAGNOSTIC)
            if c in partial_cols and v is not None:
                cell.classes.append("partial")
                cell.marks.append(
                    ("partial", "partial", "averages a task scored with skipped items")
                )
            line.append(cell)
        if r.tasks or r.ours:
            have = n - len(r.missing)
            state = f"{have}/{n}"
            if r.missing:
                kinds = [r.status.get(t, "missing") for t in r.missing]
                parts = [f"{kinds.count(k)} {k}" for k in ("missing", "incomplete") if k in kinds]
                state += f" INCOMPLETE ({', '.join(parts)})"
            if r.skipped:
                state += f", {len(r.skipped)} partial"
            line.append(Cell(state))
        else:
            line.append(Cell(""))
        body.append(line)
        classes.append(DIAGNOSTIC if r.diagnostic else "ours" if r.ours else "published")
    first = len(head) - len(cols) - 1
    for j in range(first, first + len(cols)):
        _mark_best([line[j] for line in body])
    return Table(head, body, classes, first)


def task_table(suite: str, rows: Sequence[Row], ref_split: str = OUR_SPLIT) -> Table:
    with_tasks = [r for r in rows if r.tasks or r.ours]
    head = ["task", "category", "metric", *(r.label for r in with_tasks)]
    body = []
    for s in tasks(suite):
        line = [Cell(s.name), Cell(s.category), Cell(s.metric)]
        for r in with_tasks:
            if s.name in r.tasks:
                v = r.tasks[s.name]
                cell = Cell(_fmt(v), v, classes=[DIAGNOSTIC] if r.diagnostic else [])
                if s.name in r.skipped:
                    cell.classes.append("partial")
                    k = r.skipped[s.name]
                    cell.marks.append(
                        ("partial", f"{k} skipped", f"partial: {k} item(s) skipped as malformed")
                    )
                if not _task_comparable(r, s.name, ref_split):
                    cell.classes.append("nc")
                    cell.marks.append(
                        (
                            "split",
                            f"{r.split} split",
                            f"measured on the {r.split} split of this task",
                        )
                    )
            elif r.status.get(s.name) == "incomplete":
                rec = r.records.get(s.name, {})
                cell = Cell("incomplete", marks=[("incomplete", "", rec.get("reason", ""))])
            elif r.ours or r.status.get(s.name) == "missing":
                rec = r.records.get(s.name, {})
                cell = Cell("missing", marks=[("missing", "", rec.get("reason", "not evaluated"))])
            else:
                cell = Cell("--")
            line.append(cell)
        _mark_best(line[3:])
        body.append(line)
    return Table(head, body, ["task"] * len(body), 3)


# --------------------------------------------------------------------------- rendering
def _md_cell(c: Cell) -> str:
    text = c.text
    extra = [m[1] for m in c.marks if m[1]]
    if extra:
        text += " (" + "; ".join(extra) + ")"
    if c.best:
        text = f"**{text}**"
    return text.replace("|", "/")


def _md(t: Table) -> str:
    lines = ["| " + " | ".join(t.head) + " |", "|" + "|".join("---" for _ in t.head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def _html_cell(c: Cell, tag: str = "td") -> str:
    cls = [*c.classes, *(["best"] if c.best else [])]
    attrs = f' class="{" ".join(cls)}"' if cls else ""
    if c.value is not None:
        attrs += f' data-v="{c.value:.6f}"'
    title = "; ".join(m[2] for m in c.marks if m[2] and not m[1])
    if c.best:
        title = "; ".join(x for x in (title, "best in this column among comparable rows") if x)
    if title:
        attrs += f' title="{html.escape(title)}"'
    inner = html.escape(c.text)
    for kind, text, why in c.marks:
        if text:
            inner += (
                f' <span class="mark {kind}" title="{html.escape(why)}">{html.escape(text)}</span>'
            )
    return f"<{tag}{attrs}>{inner}</{tag}>"


def _html_table(t: Table, table_id: str) -> str:
    th = "".join(
        f'<th data-col="{j}" class="{"num" if j >= t.numeric_from else "txt"}" '
        f'title="click to sort">{html.escape(h)}</th>'
        for j, h in enumerate(t.head)
    )
    trs = "".join(
        f'<tr class="{cls}">' + "".join(_html_cell(c) for c in row) + "</tr>"
        for row, cls in zip(t.rows, t.row_classes, strict=True)
    )
    return (
        f'<table id="{table_id}" class="sortable"><thead><tr>{th}</tr></thead>'
        f"<tbody>{trs}</tbody></table>"
    )


def _write_csv(path: Path, t: Table, extra: dict[str, list[str]] | None = None) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    extra = extra or {}
    w.writerow([*t.head, *extra])
    for i, row in enumerate(t.rows):
        cells = [c.text if c.value is None or c.text != "--" else "" for c in row]
        cells = ["" if x == "--" else x for x in cells]
        w.writerow([*cells, *(v[i] for v in extra.values())])
    write_text(path, buf.getvalue())


_CSS = """
body{font-family:sans-serif;margin:1em 2em}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
td:first-child,th.txt{text-align:left}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th.sorted-desc::after{content:" \\25BC"} th.sorted-asc::after{content:" \\25B2"}
tr.ours td{background:#fff4c2}
tr.ours td:first-child{font-weight:bold;border-left:4px solid #e0a800}
td.best{font-weight:bold;color:#0b6e2e}
td.nc{color:#888}
.mark{font-size:10px;padding:0 3px;border-radius:3px;margin-left:2px}
.erratum{background:#fde2e1;color:#a4161a}
.split{background:#e2e8f0;color:#333}
.partial{background:#e0ecff;color:#1a3e8a}
td.partial{font-style:italic}
.legend{font-size:12px;color:#444}
"""

# Sort a table by a clicked header: numbers by their data-v (rows without one last), text
# alphabetically; a second click reverses. No library, no network.
_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], col = +th.dataset.col;
    var desc = !th.classList.contains('sorted-desc');
    table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-desc', 'sorted-asc'); });
    th.classList.add(desc ? 'sorted-desc' : 'sorted-asc');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col], y = b.cells[col];
      var vx = x.dataset.v, vy = y.dataset.v;
      if (th.classList.contains('num') || vx !== undefined || vy !== undefined) {
        if (vx === undefined && vy === undefined) return 0;
        if (vx === undefined) return 1;
        if (vy === undefined) return -1;
        return desc ? vy - vx : vx - vy;
      }
      var tx = x.textContent.toLowerCase(), ty = y.textContent.toLowerCase();
      var c = tx < ty ? -1 : tx > ty ? 1 : 0;
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_LEGEND = (
    "Scores in percent; averages recomputed from per-task numbers. <b>Bold</b>: best in the "
    "column (tasks: in the row) among comparable, complete values. Highlighted rows: this "
    'project. <span class="mark erratum">printed x</span>: the paper prints x, its own numbers '
    'give the value shown. <span class="mark split">old split</span>: measured on the old '
    "ViDoSeek-page / MMLongBench-page split, not comparable on OOD, VisDoc and All (compare "
    f'{MMEB_NO_OOD}). <span class="mark partial">partial</span>: a task with skipped items, '
    "or an average over one. <code>--</code>: not available, or a task missing or incomplete "
    "(never averaged over fewer tasks). Click a header to sort."
)


# --------------------------------------------------------------------------- outputs
def submission_metadata(cfg: Any, run: str, variant: str, records: Mapping[str, Any]) -> dict:
    """Metadata of an MMEB submission of ours (config gives backbone and lengths)."""
    dims = {r.get("embedding_dimension") for r in records.values() if r.get("embedding_dimension")}
    emb = cfg.models.embedder if cfg is not None else None
    return {
        "model_name": f"ume-{run}-{variant}",
        "model_backbone": (emb.path or emb.family) if emb is not None else "unknown",
        "model_size": "tiny" if emb is not None and emb.source == "tiny" else "unknown",
        "embedding_dimension": str(dims.pop()) if len(dims) == 1 else "unknown",
        "max_length_tokens": str(cfg.train_embedder.max_length) if cfg is not None else "unknown",
        "data_source": "ume",
        "variant": variant,
    }


def write_submission_files(out_dir: Path, rows: Sequence[Row], cfg: Any) -> list[Path]:
    out = []
    for r in rows:
        if r.suite != "mmeb" or r.source != "ours":
            continue
        per_task = {
            t: {
                k: v
                for k, v in rec.items()
                if _METRIC_KEY.match(k) or k in ("num_pred", "num_data")
            }
            | ({"scorer_compatible": True} if rec.get("scorer_compatible") else {})
            for t, rec in r.records.items()
            if rec.get("status") == "ok"
        }
        sub = build_submission(per_task, submission_metadata(cfg, r.run, r.variant, r.records))
        p = out_dir / f"mmeb_{r.run}_{r.variant}.json"
        write_text(p, json.dumps(sub, indent=4) + "\n")
        out.append(p)
    return out


def plot(path: Path, rows: Sequence[Row], suites: Sequence[str]) -> Path:
    """Grouped bars: per suite, each of our rows (and Embed-RL's published) per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(len(suites), 1, figsize=(12, 3.6 * len(suites)), squeeze=False)
    for ax, suite in zip(axes[:, 0], suites, strict=True):
        cols = suite_columns(suite)
        shown = [r for r in rows if r.suite == suite and (r.ours or r.label.startswith("Embed-RL"))]
        width = 0.8 / max(1, len(shown))
        x = np.arange(len(cols))
        for i, r in enumerate(shown):
            vals = [
                r.columns.get(c) if r.columns.get(c) is not None else r.partial.get(c) for c in cols
            ]
            ys = [v if v is not None else 0.0 for v in vals]
            bars = ax.bar(x + i * width - 0.4 + width / 2, ys, width, label=r.label)
            for b, v, c in zip(bars, vals, cols, strict=True):
                if v is not None and r.columns.get(c) is None:
                    b.set_hatch("//")  # incomplete: partial mean
        ax.set_xticks(x, cols, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("score (%)")
        ax.set_title(f"{SUITE_TITLES.get(suite, suite)} (hatched: incomplete, partial mean)")
        if shown:
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from ume.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def _state(r: Row) -> dict[str, Any]:
    return {
        "overall": r.overall,
        "missing": [t for t in r.missing if r.status.get(t, "missing") == "missing"],
        "incomplete": [t for t in r.missing if r.status.get(t) == "incomplete"],
        "partial": dict(r.skipped),
        "complete": not r.missing,
        **({"ood_split": r.split} if r.split else {}),
    }


def build_leaderboard(
    runs: Mapping[str, str | Path],
    suites: Sequence[str],
    out_dir: str | Path,
    *,
    cfg: Any = None,
    reference_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write every leaderboard output (module doc) into ``out_dir``; return a summary."""
    out_dir = Path(out_dir)
    ours = our_rows(runs, suites)
    pub = read_published(reference_dir)
    table_notes = check_published_tables(published=pub)
    notes = [str(n) for n in table_notes]
    md = ["# Leaderboard", ""]
    htm = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ume leaderboard</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Leaderboard</h1>",
        f'<p class="legend">{_LEGEND}</p>',
    ]
    summary: dict[str, Any] = {"suites": {}, "notes": notes}
    baselines: list[Row] = []
    for suite in suites:
        title = SUITE_TITLES.get(suite, suite)
        base = baseline_rows(suite, published=pub, notes=table_notes)
        baselines += base
        mine = [r for r in ours if r.suite == suite]
        rows = base + mine
        splits = {r.split for r in mine if r.split}
        ref_split = splits.pop() if len(splits) == 1 else OUR_SPLIT
        ctable, ttable = category_table(suite, rows, ref_split), task_table(suite, rows, ref_split)
        extra = {
            "errata": [
                "; ".join(
                    f"{c}: printed {', '.join(f'{v:.1f}' for v in vs)}"
                    for c, vs in r.errata.items()
                )
                for r in rows
            ],
            "partial": [", ".join(sorted(r.partial_columns())) for r in rows],
        }
        _write_csv(out_dir / f"{suite}_categories.csv", ctable, extra)
        _write_csv(out_dir / f"{suite}_tasks.csv", ttable)
        incomplete = [
            f"{r.label}: "
            + "; ".join(
                f"{len(ts)} {kind} ({', '.join(ts)})"
                for kind in ("missing", "incomplete")
                if (ts := [t for t in r.missing if r.status.get(t, "missing") == kind])
            )
            for r in mine
            if r.missing
        ]
        partial = [
            f"{r.label}: " + ", ".join(f"{t} ({k} skipped)" for t, k in r.skipped.items())
            for r in mine
            if r.skipped
        ]
        split_lines = [f"{r.label}: {r.split} ({r.split_evidence})" for r in rows if r.split]
        md += [f"## {title}", "", _LEGEND_MD, "", _md(ctable), ""]
        htm += [f"<h2>{html.escape(title)}</h2>", _html_table(ctable, f"{suite}-categories")]
        if any(r.diagnostic for r in mine):
            md += [DIAGNOSTIC_NOTE, ""]
            htm += [f"<p>{html.escape(DIAGNOSTIC_NOTE)}</p>"]
        for head, lines in (
            (
                "**INCOMPLETE** (averages needing a missing or incomplete task show `--`):",
                incomplete,
            ),
            (
                "**PARTIAL** (tasks scored with skipped items; averages over them marked partial):",
                partial,
            ),
        ):
            if lines:
                md += [head, ""] + [f"- {x}" for x in lines] + [""]
                htm += [f"<p>{html.escape(head.replace('**', ''))}</p><ul>"]
                htm += [f"<li>{html.escape(x)}</li>" for x in lines] + ["</ul>"]
        if split_lines:
            md += ["OOD split of each row:", ""] + [f"- {x}" for x in split_lines] + [""]
            htm += ["<details><summary>OOD split of each row</summary><ul>"]
            htm += [f"<li>{html.escape(x)}</li>" for x in split_lines] + ["</ul></details>"]
        md += [f"### {title}: per task", "", _md(ttable), ""]
        htm += [f"<h3>{html.escape(title)}: per task</h3>", _html_table(ttable, f"{suite}-tasks")]
        summary["suites"][suite] = {r.label: _state(r) for r in mine}
    md += ["## Notes on the published tables", ""]
    md += [f"- {n}" for n in notes] or ["- none"]
    md.append("")
    htm += ["<h2>Notes on the published tables</h2><ul>"]
    htm += [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    htm += [f"<script>{_JS}</script></body></html>"]
    write_text(out_dir / "leaderboard.md", "\n".join(md))
    write_text(out_dir / "leaderboard.html", "\n".join(htm) + "\n")
    plot(out_dir / "leaderboard.png", baselines + ours, suites)
    subs = write_submission_files(out_dir / "submissions", ours, cfg)
    (out_dir / "submissions").mkdir(parents=True, exist_ok=True)
    summary["submissions"] = [str(p) for p in subs]
    write_json(out_dir / "summary.json", summary)
    return summary


_LEGEND_MD = (
    "Scores in percent, averages recomputed from per-task numbers. **Bold**: best in the column "
    "(tasks: in the row) among comparable, complete values. `(printed x)`: the paper prints x, "
    "its own numbers give the value shown. `(old split)`: measured on the old ViDoSeek-page / "
    f"MMLongBench-page split, not comparable on OOD, VisDoc and All (compare {MMEB_NO_OOD}). "
    "`(partial)` / `(k skipped)`: a task with skipped items, or an average over one. `--`: not "
    "available, or a task missing or incomplete (never averaged over fewer tasks)."
)
