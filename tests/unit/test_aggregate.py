"""Aggregation rules, the CLI, published-table checks and the submission writer."""

from __future__ import annotations

import json

import pytest

from ume.errors import DataError
from ume.eval.aggregate import (
    REFERENCE_DIR,
    aggregate_mmeb,
    aggregate_uvrb,
    build_submission,
    check_published_tables,
    load_scores,
    main,
    write_submission,
)
from ume.suites.registry import MMEB_TASKS, UVRB_TASKS

pytestmark = pytest.mark.unit

SUBMISSION = REFERENCE_DIR / "mmeb_v2_embed-rl-2b.json"


def test_embed_rl_2b_submission_reproduces_published():
    agg = aggregate_mmeb(load_scores(SUBMISSION))
    assert agg.complete and agg.input_scale == "fraction" and not agg.unknown
    assert round(agg.columns["All"], 2) == 66.78
    assert round(agg.columns["Image"], 2) == 69.24
    assert round(agg.columns["Video"], 2) == 52.13
    assert round(agg.columns["VisDoc"], 2) == 74.06


def test_cli_prints_table(capsys):
    assert main([str(SUBMISSION), "--suite", "mmeb"]) == 0
    out = capsys.readouterr().out
    lines = {ln[:11].strip(): ln[11:].split()[0] for ln in out.splitlines()[2:] if ln.strip()}
    assert lines["All"] == "66.78" and lines["Image"] == "69.24"
    assert lines["Video"] == "52.13" and lines["VisDoc"] == "74.06"
    assert lines["All w/o OOD"] == "66.84"  # the 74 tasks outside VisDoc-OOD
    assert "complete" in out.splitlines()[0]


def test_modality_is_mean_of_tasks_not_categories():
    # 10 I-CLS tasks at 1.0, everything else image at 0 -> Image = 10/36, not mean of cats
    scores = {s.name: (1.0 if s.category == "I-CLS" else 0.0) for s in MMEB_TASKS}
    agg = aggregate_mmeb(scores, scale="fraction")
    assert agg.columns["I-CLS"] == pytest.approx(100.0)
    assert agg.columns["Image"] == pytest.approx(1000 / 36)
    assert agg.columns["All"] == pytest.approx(1000 / 78)


def test_missing_tasks_are_flagged_not_averaged():
    scores = {s.name: 50.0 for s in MMEB_TASKS if s.name != "ImageNet-1K"}
    scores["ViDoRe_arxivqa"] = 80.0
    agg = aggregate_mmeb(scores, scale="percent")
    assert not agg.complete and agg.missing == ["ImageNet-1K"]
    assert agg.columns["I-CLS"] is None and agg.columns["Image"] is None
    assert agg.columns["All"] is None and agg.overall is None
    assert agg.partial["I-CLS"] == pytest.approx(50.0) and agg.counts["I-CLS"] == (9, 10)
    assert agg.columns["VDRv1"] == pytest.approx(53.0)  # complete columns still reported
    text = agg.table()
    assert "INCOMPLETE" in text and "ImageNet-1K" in text and "partial mean" in text


def test_cli_strict_and_partial(tmp_path, capsys):
    f = tmp_path / "flat.json"
    f.write_text(json.dumps({"ImageNet-1K": 0.5, "NotATask": 0.1}))
    assert main([str(f), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "NotATask" in out
    assert main([str(f)]) == 0


def test_scale_handling():
    pct = {s.name: 40.0 for s in MMEB_TASKS}
    frac = {s.name: 0.4 for s in MMEB_TASKS}
    assert aggregate_mmeb(pct).columns["All"] == pytest.approx(40.0)
    assert aggregate_mmeb(frac).columns["All"] == pytest.approx(40.0)
    assert aggregate_mmeb(frac, scale="percent").columns["All"] == pytest.approx(0.4)
    with pytest.raises(DataError, match="exceed"):
        aggregate_mmeb(pct, scale="fraction")
    with pytest.raises(DataError):
        aggregate_mmeb({"ImageNet-1K": -1.0})


def _uvrb_row(model: str) -> dict[str, float]:
    import csv

    with open(REFERENCE_DIR / "uvrb_datasets_published.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["model"] == model)
    return {s.name: float(row[s.name]) for s in UVRB_TASKS}


def test_uvrb_reproduces_gve_3b():
    agg = aggregate_uvrb(_uvrb_row("GVE-3B"), scale="percent")
    printed = {"AVG": 57.1, "TXT": 61.9, "CMP": 30.4, "VIS": 64.7, "CG": 55.2, "FG": 54.1}
    printed |= {"LC": 76.4, "S": 81.6, "T": 43.0, "PR": 37.7}
    for col, v in printed.items():
        assert agg.columns[col] == pytest.approx(v, abs=0.06), col
    flat = aggregate_uvrb(_uvrb_row("GVE-3B"), scale="percent", definition="flat")
    assert flat.columns["FG"] == pytest.approx((84.6 + 78.6 + 49.6 + 36.3 + 28.0 + 52.2 + 33.0) / 7)
    # Embed-RL-2B's own printed row uses the flat definition
    er = aggregate_uvrb(_uvrb_row("Embed-RL-2B"), scale="percent", definition="flat")
    assert er.columns["TXT"] == pytest.approx(61.1, abs=0.06)
    assert er.columns["AVG"] == pytest.approx(58.7, abs=0.06)


def test_uvrb_missing():
    row = _uvrb_row("GVE-3B")
    del row["MS-TI"]
    agg = aggregate_uvrb(row)
    assert agg.columns["CMP"] is None and agg.columns["AVG"] is None
    assert agg.columns["TXT"] is not None and agg.partial["AVG"] is not None
    assert agg.missing == ["MS-TI"]


def test_check_published_finds_errata():
    notes = check_published_tables()
    key = {(n.table, n.model, n.column): n for n in notes}
    n = key[("mmeb_v2_categories_published.csv", "Embed-RL-4B", "Image")]
    assert n.printed == 70.1 and round(n.recomputed, 1) == 71.2
    n = key[("mmeb_v2_categories_published.csv", "TTE_s-2B", "Video")]
    assert n.printed == 32.1 and n.recomputed == pytest.approx(41.87, abs=0.01)
    n = key[("uvrb_datasets_published.csv", "Embed-RL-2B", "AVG16_as_printed")]
    assert round(n.recomputed, 1) == 57.1
    n = key[("uvrb_datasets_published.csv", "Embed-RL-4B", "AVG16_as_printed")]
    assert round(n.recomputed, 1) == 57.4
    assert ("uvrb_abilities_published.csv", "GME-2B", "AVG") in key
    # consistent rows are not flagged
    assert not any(n.model == "GVE-3B" for n in notes)
    assert not any(n.model == "Embed-RL-2B" and n.table.startswith("mmeb") for n in notes)
    assert "printed 70.1" in str(key[("mmeb_v2_categories_published.csv", "Embed-RL-4B", "Image")])


def test_submission_round_trip(tmp_path):
    ref = json.loads(SUBMISSION.read_text())
    per_task = load_scores(SUBMISSION)
    # use data names / aliases on the way in; scoring names come out
    per_task["ViDoSeek-page"] = per_task.pop("ViDoSeek-page-fixed")
    per_task["ViDoRe_energy"] = per_task.pop("ViDoRe_syntheticDocQA_energy")
    out = write_submission(tmp_path / "sub.json", per_task, ref["metadata"], require_complete=True)
    got = json.loads(out.read_text())
    assert got["metrics"] == ref["metrics"]
    assert list(got["metrics"]["visdoc"]) == list(ref["metrics"]["visdoc"])
    assert got["metadata"]["model_name"] == "Embed-RL-2B"
    assert round(aggregate_mmeb(load_scores(out)).columns["All"], 2) == 66.78


def test_submission_validation():
    meta = {
        "model_name": "m",
        "model_backbone": "b",
        "model_size": "1",
        "embedding_dimension": "8",
        "max_length_tokens": "16",
    }
    sub = build_submission({"ImageNet-1K": {"hit@1": 0.5, "scorer_compatible": True}}, meta)
    assert sub["metadata"]["missing_tasks"][0] == "N24News"
    assert sub["metadata"]["scorer_compatible"] is True
    assert sub["metrics"]["image"] == {"ImageNet-1K": {"hit@1": 0.5}}
    with pytest.raises(DataError, match="missing"):
        build_submission({"ImageNet-1K": {"hit@1": 0.5}}, meta, require_complete=True)
    with pytest.raises(DataError, match=r"0\.\.1"):
        build_submission({"ImageNet-1K": {"hit@1": 50.0}}, meta)
    with pytest.raises(DataError, match="metadata"):
        build_submission({"ImageNet-1K": {"hit@1": 0.5}}, {"model_name": "m"})
    with pytest.raises(DataError, match="not an MMEB"):
        build_submission({"Nope": {"hit@1": 0.5}}, meta)


def test_load_score_dir(tmp_path):
    (tmp_path / "ImageNet-1K_score.json").write_text(json.dumps({"hit@1": 0.25, "num_data": 4}))
    agg = aggregate_mmeb(load_scores(tmp_path))
    assert agg.scores == {"ImageNet-1K": 25.0}
    with pytest.raises(DataError):
        load_scores(tmp_path / "nothing_here")
