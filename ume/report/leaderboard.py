"""Leaderboards: published baselines and our runs side by side, from per-task score files.

:func:`build_leaderboard` reads ``<eval_dir>/<variant>/<suite>/{task}.score.json`` of one
or more runs, aggregates each (run, variant, suite) exactly as the benchmark defines it
(:mod:`ume.eval.aggregate`; the synthetic suite by the same rules over its own categories),
and writes into ``out_dir``:

``leaderboard.md`` / ``leaderboard.html``
    per suite a category table (baselines, then our rows: one per run and variant, and the
    *diagnostic* rows: each run's ``chance``, the expected score of a random ranking, and the
    ``oracle_tcot`` variant), a per-task table, the missing tasks, and the notes on
    published tables;
``<suite>_categories.csv`` / ``<suite>_tasks.csv``
    the same tables as CSV (scores in percent; empty = not available);
``leaderboard.png``
    bar charts of the overall and per-category scores of our rows (and Embed-RL's);
``submissions/mmeb_<run>_<variant>.json``
    the MMEB leaderboard submission of every row that evaluated the MMEB suite.

Baselines are recomputed from their published per-task numbers where the paper prints
them; otherwise their printed category columns are shown and only their averages are
recomputed. Printed averages that their own numbers contradict are listed as notes
(:func:`ume.eval.aggregate.check_published_tables`), never copied silently. A row with a
missing task shows ``--`` for every average that needs the task and says INCOMPLETE.
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
    REFERENCE_DIR,
    TASK_TABLE_MODEL_NAMES,
    UVRB_TABLE_COLUMNS,
    aggregate_mmeb,
    aggregate_uvrb,
    build_submission,
    check_published_tables,
)
from ume.eval.registry import MMEB_CATEGORIES, MMEB_MODALITY_COLUMNS, UVRB_MAIN_COLUMNS, tasks
from ume.io import write_json, write_text

log = logging.getLogger(__name__)

SUITE_TITLES = {"mmeb": "MMEB-V2", "uvrb": "UVRB", "synth": "Synthetic suite"}
DIAGNOSTIC_NOTE = (
    "Rows marked (diagnostic) are not model results: `chance` is the expected score of a "
    "random ranking (from each task's candidate and relevant counts); `oracle_tcot` gives the "
    "Embedder ground-truth T-CoTs written by the oracle annotator, the upper bound the "
    "Reasoner chases."
)
_METRIC_KEY = re.compile(r"^[a-z_]+@\d+$")


# --------------------------------------------------------------------------- our results
@dataclass
class Row:
    """One line of a table: a baseline or one (run, variant) of ours, for one suite."""

    label: str
    suite: str
    source: str  # "ours" | "published per-task" | "published categories"
    columns: dict[str, float | None]  # percent; None: not available / incomplete
    tasks: dict[str, float] = field(default_factory=dict)  # task -> main metric, percent
    missing: list[str] = field(default_factory=list)
    partial: dict[str, float | None] = field(default_factory=dict)
    run: str = ""
    variant: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> score json

    @property
    def overall(self) -> float | None:
        return self.columns.get(overall_column(self.suite))


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
    specs = tasks(suite)
    members: dict[str, list[str]] = {c: [] for c in synth_columns(suite)}
    for s in specs:
        for col in (
            s.category,
            *s.groups,
            MMEB_MODALITY_COLUMNS.get(s.modality, s.modality),
            "All",
        ):
            members[col].append(s.name)
    columns, partial = {}, {}
    for col, names in members.items():
        have = [pct[n] for n in names if n in pct]
        partial[col] = sum(have) / len(have) if have else None
        columns[col] = partial[col] if len(have) == len(names) else None
    return columns, partial, [s.name for s in specs if s.name not in pct]


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
                pct = {
                    t: 100.0 * float(r["main_score"])
                    for t, r in recs.items()
                    if r.get("status") == "ok" and r.get("main_score") is not None
                }
                cols, partial, missing = aggregate_suite(suite, pct)
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
                    )
                )
        rows += chance_rows(run, [r for r in rows if r.run == run], suites)
    return rows


DIAGNOSTIC = "diagnostic"


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
            )
        )
    return out


def is_ours(row: Row) -> bool:
    """Rows of this project's runs: model results and diagnostics (chance, oracle T-CoTs)."""
    return row.source in ("ours", DIAGNOSTIC)


# --------------------------------------------------------------------------- baselines
def _num(cell: str | None) -> float | None:
    if cell is None:
        return None
    cell = cell.strip().rstrip("*†‡").strip()
    if not cell or cell in ("-", "–"):
        return None
    return float(cell)


def _csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def baseline_rows(suite: str, reference_dir: str | Path | None = None) -> list[Row]:
    """Published rows of ``suite`` (mmeb, uvrb), recomputed from per-task numbers if printed."""
    from ume.eval.registry import find_task

    ref = Path(reference_dir) if reference_dir is not None else REFERENCE_DIR
    rows: list[Row] = []
    if suite == "mmeb":
        per_task: dict[str, dict[str, float]] = {}
        for r in _csv(ref / "mmeb_v2_tasks_published.csv"):
            spec = find_task("mmeb", r["Task"].strip())
            if spec is None:
                continue  # a summary row (averages), recomputed instead
            for model, v in r.items():
                if model != "Task" and _num(v) is not None:
                    name = TASK_TABLE_MODEL_NAMES.get(model, model)
                    per_task.setdefault(name, {})[spec.name] = _num(v)  # type: ignore[assignment]
        counts = {c: sum(1 for s in tasks("mmeb") if s.category == c) for c in MMEB_CATEGORIES}
        for r in _csv(ref / "mmeb_v2_categories_published.csv"):
            model = r["model"]
            if model in per_task:
                cols, _, missing = aggregate_suite("mmeb", per_task[model])
                rows.append(Row(model, suite, "published per-task", cols, per_task[model], missing))
                continue
            cols = {c: _num(r.get(c)) for c in MMEB_COLUMNS}
            for mod_col, mod in (
                ("Image", "image"),
                ("Video", "video"),
                ("VisDoc", "visdoc"),
                ("All", None),
            ):
                cats = [c for c, m in MMEB_CATEGORIES.items() if mod is None or m == mod]
                if all(cols[c] is not None for c in cats):
                    cols[mod_col] = sum(cols[c] * counts[c] for c in cats) / sum(
                        counts[c] for c in cats
                    )  # type: ignore[operator]
            rows.append(Row(model, suite, "published categories", cols))
    elif suite == "uvrb":
        names = [s.name for s in tasks("uvrb")]
        ds = {r["model"]: r for r in _csv(ref / "uvrb_datasets_published.csv")}
        abilities = _csv(ref / "uvrb_abilities_published.csv")
        listed = {r["model"] for r in abilities}
        for r in abilities + [{"model": m} for m in ds if m not in listed]:
            model = r["model"]
            vals = {n: _num(ds[model].get(n)) for n in names} if model in ds else {}
            if vals and all(v is not None for v in vals.values()):
                cols, _, missing = aggregate_suite("uvrb", vals)  # type: ignore[arg-type]
                rows.append(Row(model, suite, "published per-task", cols, vals, missing))  # type: ignore[arg-type]
                continue
            cols = {c: _num(r.get(c)) for c in UVRB_TABLE_COLUMNS}
            six = [cols[c] for c in UVRB_MAIN_COLUMNS]
            cols["AVG"] = sum(six) / 6 if all(v is not None for v in six) else None  # type: ignore[arg-type]
            rows.append(Row(model, suite, "published categories", cols))
    return rows


# --------------------------------------------------------------------------- tables
def suite_columns(suite: str) -> list[str]:
    if suite == "mmeb":
        return list(MMEB_COLUMNS)
    if suite == "uvrb":
        return list(UVRB_TABLE_COLUMNS)
    return synth_columns(suite)


def _fmt(v: float | None, digits: int = 1) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


def category_table(suite: str, rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    cols = suite_columns(suite)
    head = ["model", "source", *cols, "tasks"]
    n = len(tasks(suite))
    body = []
    for r in rows:
        have = n - len(r.missing) if (r.tasks or is_ours(r)) else None
        status = "" if have is None else f"{have}/{n}" + (" INCOMPLETE" if have < n else "")
        body.append([r.label, r.source, *(_fmt(r.columns.get(c)) for c in cols), status])
    return head, body


def task_table(suite: str, rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    with_tasks = [r for r in rows if r.tasks or is_ours(r)]
    head = ["task", "category", "metric", *(r.label for r in with_tasks)]
    body = []
    for s in tasks(suite):
        cells = []
        for r in with_tasks:
            rec = r.records.get(s.name, {})
            if s.name in r.tasks:
                cells.append(_fmt(r.tasks[s.name]))
            elif rec.get("status") == "missing":
                cells.append("missing")
            else:
                cells.append("--")
        body.append([s.name, s.category, s.metric, *cells])
    return head, body


def _md(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _write_csv(path: Path, head: list[str], body: list[list[str]]) -> None:
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for row in body:
        w.writerow(["" if c == "--" else c for c in row])
    write_text(path, buf.getvalue())


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
        shown = [
            r for r in rows if r.suite == suite and (is_ours(r) or r.label.startswith("Embed-RL"))
        ]
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
    notes = [str(n) for n in check_published_tables(reference_dir)]
    md = ["# Leaderboard", ""]
    htm = ["<html><head><meta charset='utf-8'><title>ume leaderboard</title>",
           "<style>table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
           "padding:2px 6px;text-align:right}td:first-child{text-align:left}</style></head><body>",
           "<h1>Leaderboard</h1>"]  # fmt: skip
    summary: dict[str, Any] = {"suites": {}, "notes": notes}
    for suite in suites:
        title = SUITE_TITLES.get(suite, suite)
        rows = baseline_rows(suite, reference_dir) + [r for r in ours if r.suite == suite]
        chead, cbody = category_table(suite, rows)
        thead, tbody = task_table(suite, rows)
        _write_csv(out_dir / f"{suite}_categories.csv", chead, cbody)
        _write_csv(out_dir / f"{suite}_tasks.csv", thead, tbody)
        mine = [r for r in rows if is_ours(r)]
        incomplete = [
            f"{r.label}: {len(r.missing)} missing ({', '.join(r.missing)})"
            for r in mine
            if r.missing
        ]
        md += [
            f"## {title}",
            "",
            "Scores in percent, averages recomputed from per-task numbers.",
            "",
        ]
        md += [_md(chead, cbody), ""]
        if any(r.source == DIAGNOSTIC for r in mine):
            md += [DIAGNOSTIC_NOTE, ""]
        if incomplete:
            md += ["**INCOMPLETE** (averages needing a missing task show `--`):", ""]
            md += [f"- {line}" for line in incomplete] + [""]
        md += [f"### {title}: per task", "", _md(thead, tbody), ""]
        htm += [f"<h2>{html.escape(title)}</h2>", _html_table(chead, cbody)]
        if any(r.source == DIAGNOSTIC for r in mine):
            htm += [f"<p>{html.escape(DIAGNOSTIC_NOTE)}</p>"]
        if incomplete:
            htm += (
                ["<p><b>INCOMPLETE</b></p><ul>"]
                + [f"<li>{html.escape(x)}</li>" for x in incomplete]
                + ["</ul>"]
            )
        htm += [f"<h3>{html.escape(title)}: per task</h3>", _html_table(thead, tbody)]
        summary["suites"][suite] = {
            r.label: {"overall": r.overall, "missing": r.missing, "complete": not r.missing}
            for r in mine
        }
    md += ["## Notes on the published tables", ""]
    md += [f"- {n}" for n in notes] or ["- none"]
    md.append("")
    htm += ["<h2>Notes on the published tables</h2><ul>"]
    htm += [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul></body></html>"]
    write_text(out_dir / "leaderboard.md", "\n".join(md))
    write_text(out_dir / "leaderboard.html", "\n".join(htm) + "\n")
    plot(
        out_dir / "leaderboard.png",
        [r for s in suites for r in baseline_rows(s, reference_dir)] + ours,
        suites,
    )
    subs = write_submission_files(out_dir / "submissions", ours, cfg)
    (out_dir / "submissions").mkdir(parents=True, exist_ok=True)
    summary["submissions"] = [str(p) for p in subs]
    write_json(out_dir / "summary.json", summary)
    return summary
