"""The data check (ume.suites.check, `python -m ume check-data`) on fixture roots laid out
as users have them, and its agreement with what evaluation records."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import real_layouts as fx
from ume.cli import main
from ume.eval.run import EvalContext, evaluate_task, outputs
from ume.suites.base import DataRoots
from ume.suites.check import check_suites, check_task, report, task_status
from ume.suites.registry import get_task

pytestmark = pytest.mark.unit


def files_under(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in Path(root).rglob("*")}


@pytest.fixture(scope="module")
def full_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full")
    fx.write_all(root)
    return root


def test_every_one_of_the_94_tasks_is_found_with_counts(full_root: Path) -> None:
    before = files_under(full_root)
    roots = DataRoots.of(full_root)
    statuses = check_suites({"mmeb": roots, "uvrb": roots})
    assert len(statuses) == 94
    assert [s.task for s in statuses if s.status != "found"] == []
    for s in statuses:
        c = s.counts
        assert c["queries"] > 0 and c["candidates"] > 1 and c["positives"] >= c["queries"], s.task
    by = {s.task: s.counts for s in statuses}
    assert by["MVBench"]["queries"] == 2 and by["SmthSmthV2"]["candidates"] == 7
    assert by["ViDoRe_arxivqa"] == {"queries": 3, "candidates": 4, "positives": 4, "skipped": 0}
    assert report(statuses).endswith("94 task(s): 94 found, 0 incomplete, 0 missing, 0 malformed")
    assert files_under(full_root) == before  # the check writes nothing, pages included


def _status(name: str, root: Path, suite: str = "mmeb"):
    return task_status(get_task(suite, name), root)


@pytest.mark.parametrize(
    ("task", "suite", "write", "remove", "absent"),
    [
        # annotations without media
        ("MSCOCO_i2t", "mmeb", fx.write_mmeb_image, "mmeb/image-tasks/MSCOCO_i2t/*.png",
         "image-tasks/MSCOCO_i2t"),
        ("MSR-VTT", "mmeb", fx.write_video_ret, "mmeb/video-tasks/frames/video_ret/MSR-VTT",
         "video-tasks/frames/video_ret/MSR-VTT"),
        ("ViDoRe_arxivqa", "mmeb", fx.write_beir,
         "mmeb/visdoc-tasks/arxivqa_test_subsampled_beir/corpus", "corpus/test-*.parquet"),
        ("MS-TI", "uvrb", fx.write_uvrb, "uvrb/MS-TI/videos_frames", "MS-TI/videos_frames"),
        # media without annotations
        ("MSCOCO_i2t", "mmeb", fx.write_mmeb_image,
         "mmeb/image-tasks/MSCOCO_i2t/test-00000-of-00001.parquet",
         "image-tasks/MSCOCO_i2t/test-*.parquet"),
        ("MSR-VTT", "mmeb", fx.write_video_ret, "mmeb/video-tasks/MSR-VTT",
         "video-tasks/MSR-VTT/test_1k/test-*.parquet"),
        ("ViDoRe_arxivqa", "mmeb", fx.write_beir,
         "mmeb/visdoc-tasks/arxivqa_test_subsampled_beir/qrels", "qrels/test-*.parquet"),
        ("MS-TI", "uvrb", fx.write_uvrb, "uvrb/MS-TI/jsonl", "MS-TI/jsonl/queries.jsonl"),
    ],
)  # fmt: skip
def test_half_downloaded_task_is_incomplete_with_the_missing_path(
    tmp_path, task, suite, write, remove, absent
) -> None:
    write(tmp_path, get_task(suite, task).data_name)
    assert _status(task, tmp_path, suite).found
    for target in tmp_path.glob(remove):
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    st = _status(task, tmp_path, suite)
    assert st.status == "incomplete" and any(p.endswith(absent) for p in st.missing), st.missing
    assert len(st.download) == 1 and "half downloaded" in st.reason


@pytest.mark.parametrize(
    ("task", "repo", "folder"),
    [
        ("ImageNet-1K", "ziyjiang/MMEB_Test_Instruct, subset ImageNet-1K, split test",
         "image-tasks/ImageNet-1K/"),
        ("NExTQA", "VLM2Vec/NExTQA, subset(s) MC, split test", "video-tasks/NExTQA/"),
        ("YouCook2", "lmms-lab/YouCook2, split val", "video-tasks/YouCook2/"),
        ("ViDoRe_docvqa", "vidore/docvqa_test_subsampled_beir",
         "visdoc-tasks/docvqa_test_subsampled_beir/"),
        ("MMLongBench-page-fixed", "VLM2Vec/MMLongBench-page-fixed", "visdoc-tasks/MMLongBench/"),
    ],
)  # fmt: skip
def test_missing_task_says_what_to_download_and_where(tmp_path, task, repo, folder) -> None:
    st = _status(task, tmp_path)
    assert st.status == "missing" and st.missing and st.looked_for
    hint = "; ".join(st.download)
    assert repo in hint and str(tmp_path / folder) in hint
    if get_task("mmeb", task).modality != "visdoc":
        assert "TIGER-Lab/MMEB-V2" in hint  # the media archive


def test_one_missing_image_is_a_bad_item_not_a_missing_half(tmp_path: Path) -> None:
    fx.write_mmeb_image(tmp_path)
    (tmp_path / "mmeb/image-tasks/MSCOCO_i2t/COCO_0.jpg.png").unlink()
    spec = get_task("mmeb", "MSCOCO_i2t")
    assert task_status(spec, tmp_path).found
    st = check_task(spec, tmp_path)
    assert st.status == "malformed" and "row 0" in st.error and "COCO_0.jpg.png" in st.error


def test_no_root_configured() -> None:
    st = task_status(get_task("uvrb", "MS-TI"), None)
    assert st.status == "missing" and "eval.uvrb_root" in st.reason


def test_malformed_row_names_file_and_row_or_is_counted(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    df = pd.read_parquet(table)
    df.at[2, "tgt_img_path"] = ["", ""]
    df.to_parquet(table, index=False)
    spec = get_task("mmeb", "MSCOCO_i2t")
    st = check_task(spec, tmp_path)
    assert st.status == "malformed" and f"{table}: row 2:" in st.error and st.error in st.line()
    skip = check_task(spec, tmp_path, on_bad_item="skip")
    assert skip.found and skip.counts["skipped"] == 1 and "1 item(s) skipped" in skip.line()


def test_old_split_clone_is_noted(tmp_path: Path) -> None:
    fx.write_beir(tmp_path, "ViDoSeek-page", origin="VLM2Vec/ViDoSeek-page")
    st = check_task(get_task("mmeb", "ViDoSeek-page-fixed"), tmp_path)
    assert st.found and st.origin == "VLM2Vec/ViDoSeek-page" and "old split" in st.notes[0]
    fx.write_beir(tmp_path, "MMLongBench-page", origin="VLM2Vec/MMLongBench-page-fixed")
    fixed = check_task(get_task("mmeb", "MMLongBench-page-fixed"), tmp_path)
    assert fixed.origin == "VLM2Vec/MMLongBench-page-fixed" and not fixed.notes


def test_command_strict_and_json(tmp_path: Path, capsys) -> None:
    fx.write_mmeb_image(tmp_path, "ImageNet-1K")
    fx.write_video_ret(tmp_path)
    shutil.rmtree(tmp_path / "mmeb/video-tasks/frames")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"eval:\n  suites: [mmeb]\n  mmeb_root: {tmp_path / 'mmeb'}\n")
    args = ["check-data", "--config", "config/config.yaml", str(cfg), "--task", "ImageNet-1K",
            "MSR-VTT", "ViDoRe_tatdqa", "--json", str(tmp_path / "v.json")]  # fmt: skip
    assert main(args) == 0  # a report, not a failure, unless asked
    out = capsys.readouterr().out
    assert "ImageNet-1K" in out and "found" in out and "queries 3" in out
    assert "incomplete" in out and "video-tasks/frames/video_ret/MSR-VTT" in out
    assert "vidore/tatdqa_test_beir" in out
    assert "3 task(s): 1 found, 1 incomplete, 1 missing, 0 malformed" in out
    verdicts = {v["task"]: v["status"] for v in json.loads((tmp_path / "v.json").read_text())}
    assert verdicts == {"ImageNet-1K": "found", "MSR-VTT": "incomplete", "ViDoRe_tatdqa": "missing"}
    assert main([*args, "--strict"]) == 1
    assert main([*args[:6], "--strict"]) == 0  # ImageNet-1K alone is complete


def test_evaluation_records_the_checks_verdict(tmp_path: Path) -> None:
    """A half-downloaded task is recorded incomplete by evaluation, with the data check's
    path, and never scored on what is there."""
    fx.write_video_ret(tmp_path)
    shutil.rmtree(tmp_path / "mmeb/video-tasks/frames/video_ret/MSR-VTT")
    spec = get_task("mmeb", "MSR-VTT")
    st = task_status(spec, tmp_path)
    ctx = EvalContext(encoder=None, reasoners={})  # no model: nothing to score
    res = evaluate_task(spec, tmp_path, tmp_path / "eval", ["main"], ctx)
    rec = json.loads(outputs(tmp_path / "eval", "main", "mmeb", "MSR-VTT")["score"].read_text())
    assert rec == res["main"] and rec["status"] == "incomplete" == st.status
    assert rec["missing_paths"] == st.missing and rec["download"] == st.download
    assert "hit@1" not in rec and rec["reason"] == st.reason


def test_leaderboard_marks_what_the_check_found_incomplete(tmp_path: Path) -> None:
    from ume.report.leaderboard import build_leaderboard

    fx.write_beir(tmp_path, "ViDoRe_arxivqa")
    shutil.rmtree(fx.beir_folder(tmp_path, "ViDoRe_arxivqa") / "corpus")  # half downloaded
    spec = get_task("mmeb", "ViDoRe_arxivqa")
    assert check_task(spec, tmp_path).status == "incomplete"
    evaluate_task(
        spec, tmp_path, tmp_path / "eval", ["main"], EvalContext(encoder=None, reasoners={})
    )
    summary = build_leaderboard({"r": tmp_path / "eval"}, ["mmeb"], tmp_path / "lb")
    state = summary["suites"]["mmeb"]["r / main"]
    assert state["incomplete"] == ["ViDoRe_arxivqa"] and state["overall"] is None
    with open(tmp_path / "lb" / "mmeb_tasks.csv", newline="") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert rows["ViDoRe_arxivqa"]["r / main"] == "incomplete"
