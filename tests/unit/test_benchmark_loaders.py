"""Benchmark loaders on fixtures that copy the real layouts (tests/fixtures/real_layouts.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures import real_layouts as fx
from ume.errors import DataError
from ume.suites.base import LAYOUTS, sample_frames
from ume.suites.loaders import load_spec, load_task
from ume.suites.mmeb_image import candidate_id, clean_text

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- MMEB image
def test_mmeb_image_positive_first_and_markers(tmp_path: Path) -> None:
    fx.write_mmeb_image(tmp_path)
    t = load_task("mmeb_image", "MSCOCO_i2t", tmp_path)
    assert t.ranking == "local" and len(t.queries) == 3 and not t.skipped
    for qid, q in t.queries:
        assert q.modality == "image" and Path(q.image).is_absolute() and Path(q.image).is_file()
        assert "<|image_1|>" not in q.inst and q.inst.startswith("Find an image caption")
        ids = t.query_candidates[qid]
        assert t.qrels[qid] == {ids[0]: 1.0}
        assert t.candidates[ids[0]].text == f"caption {qid}"
    # candidates shared across rows appear once
    assert sorted(t.candidates) == [f"caption {i}" for i in range(5)]


def test_mmeb_grounding_candidate_id_is_path_colon_text(tmp_path: Path) -> None:
    fx.write_mmeb_grounding(tmp_path)
    t = load_task("mmeb_image", "RefCOCO-Matching", tmp_path)
    ids = t.query_candidates["1"]
    assert ids == ["RefCOCO-Matching/img1.png:man in red", "RefCOCO-Matching/img1.png:woman left",
                   "RefCOCO-Matching/img1.png:dog"]  # fmt: skip
    assert t.qrels["1"] == {ids[0]: 1.0}
    assert len(t.candidates) == 9  # 3 images x 3 expressions, all distinct
    c = t.candidates[ids[1]]
    assert c.modality == "image" and c.text == '"woman left"' and c.image.endswith("img1.png")
    assert candidate_id("a.png", "") == "a.png" and candidate_id("", "cat") == "cat"


def test_clean_text() -> None:
    assert clean_text("<|image_1|>\nRepresent the image") == "Represent the image"
    assert clean_text(None) == ""


# --------------------------------------------------------------------------- MMEB video
def test_video_ret_uniform_sampling_and_global(tmp_path: Path) -> None:
    fx.write_video_ret(tmp_path, n_frames=20)
    t = load_task("mmeb_video_ret", "MSR-VTT", tmp_path, num_frames=8)
    assert t.ranking == "global" and len(t.queries) == 4 and len(t.candidates) == 3
    v = t.candidates["video7000"]
    names = [Path(p).name for p in v.frames]
    expected = [f"{i:04d}.jpg" for i in np.linspace(0, 19, 8, dtype=int)]
    assert names == expected == [f"{i:04d}.jpg" for i in (0, 2, 5, 8, 10, 13, 16, 19)]
    assert t.qrels["3"] == {"video7000": 1.0}  # second caption of the same video
    t4 = load_task("mmeb_video_ret", "MSR-VTT", tmp_path, num_frames=4)
    assert len(t4.candidates["video7001"].frames) == 4
    t64 = load_task("mmeb_video_ret", "MSR-VTT", tmp_path, num_frames=64)
    assert len(t64.candidates["video7001"].frames) == 20  # fewer frames than asked: all


def test_sample_frames_natural_order() -> None:
    frames = [f"{i}.jpg" for i in range(10)]
    assert sample_frames(frames, 3) == ["0.jpg", "4.jpg", "9.jpg"]
    assert sample_frames(frames[:2], 8) == frames[:2]


def test_video_cls_label_list(tmp_path: Path) -> None:
    fx.write_video_cls(tmp_path)
    t = load_task("mmeb_video_cls", "UCF101", tmp_path)
    assert sorted(t.candidates) == ["ApplyEyeMakeup", "Archery", "Basketball"]
    assert t.qrels["1"] == {"Archery": 1.0} and t.query_candidates is None
    assert t.queries[0][1].modality == "video" and len(t.queries[0][1].frames) == 8
    fx.write_video_cls(tmp_path, "HMDB51", labels=False)
    t2 = load_task("mmeb_video_cls", "HMDB51", tmp_path)
    assert sorted(t2.candidates) == ["ApplyEyeMakeup", "Archery"] and "labels.json" in t2.notes[0]


def test_video_qa_letters_and_options(tmp_path: Path) -> None:
    fx.write_video_qa(tmp_path)
    t = load_task("mmeb_video_qa", "Video-MME", tmp_path)
    assert t.query_candidates["0"] == ["0:0", "0:1", "0:2", "0:3"]
    assert t.qrels["0"] == {"0:1": 1.0} and t.qrels["1"] == {"1:2": 1.0}
    assert t.candidates["0:1"].text == "a dog"
    assert "(B) a dog" in t.queries[0][1].text


def test_video_mret_clips(tmp_path: Path) -> None:
    fx.write_video_mret(tmp_path)
    t = load_task("mmeb_video_mret", "QVHighlight", tmp_path, num_frames=4)
    assert t.query_candidates["0"] == ["clip_0/negative_0", "clip_0/negative_1", "clip_0/positive"]
    assert t.qrels["0"] == {"clip_0/positive": 1.0}
    q = t.queries[0][1]
    assert q.text == "a person waves 0" and len(q.frames) == 4 and "/query/" in q.frames[0]


def test_load_spec_frames_name(tmp_path: Path) -> None:
    from ume.suites.registry import TaskSpec

    fx.write_video_cls(tmp_path, "Kinetics-700")
    (tmp_path / "mmeb/video-tasks/frames/video_cls/Kinetics-700").rename(
        tmp_path / "mmeb/video-tasks/frames/video_cls/K700"
    )
    spec = TaskSpec("K700", "mmeb", "video", "V-CLS", "mmeb_video_cls", "global", "hit@1",
                    data_name="Kinetics-700", data_path="video-tasks/frames/video_cls/K700")  # fmt: skip
    t = load_spec(spec, tmp_path)
    assert t.name == "K700" and len(t.queries) == 3


# --------------------------------------------------------------------------- BEIR
def test_beir_graded_qrels_and_image_cache(tmp_path: Path) -> None:
    fx.write_beir(tmp_path)
    t = load_task("beir", "ViDoRe_arxivqa", tmp_path)
    assert t.ranking == "global" and len(t.candidates) == 4
    assert t.qrels["q0"] == {"doc0": 2.0, "doc1": 1.0}
    assert t.qrels["q2"] == {"doc3": 1.0}  # score 0 is not relevant
    doc1 = Path(t.candidates["doc1"].image)
    assert doc1.suffix == ".jpg" and doc1.is_file() and t.candidates["doc1"].modality == "document"
    assert doc1.parent == tmp_path / "mmeb/visdoc-tasks/ViDoRe_arxivqa/_cache/corpus_images"
    mtime = os.stat(doc1).st_mtime_ns
    load_task("beir", "ViDoRe_arxivqa", tmp_path)
    assert os.stat(doc1).st_mtime_ns == mtime  # extracted once
    en = load_task("beir", "ViDoRe_arxivqa", tmp_path, language="english")
    assert [q for q, _ in en.queries] == ["q0", "q2"]
    other = load_task("beir", "ViDoRe_arxivqa", tmp_path, cache_dir=tmp_path / "cache")
    assert Path(other.candidates["doc0"].image).parent == tmp_path / "cache/ViDoRe_arxivqa"


def test_beir_query_without_qrels_is_listed(tmp_path: Path) -> None:
    fx.write_beir(tmp_path)
    qrels = tmp_path / "mmeb/visdoc-tasks/ViDoRe_arxivqa/qrels" / fx.TABLE
    df = pd.read_parquet(qrels)
    df[df["query-id"] != "q1"].to_parquet(qrels, index=False)
    t = load_task("beir", "ViDoRe_arxivqa", tmp_path)
    assert [q for q, _ in t.queries] == ["q0", "q2"]
    assert len(t.skipped) == 1 and "q1" in t.skipped[0]["reason"]


# --------------------------------------------------------------------------- UVRB
def test_uvrb_multi_positive_and_query_kinds(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    t = load_task("uvrb", "MS-TI", tmp_path)
    assert t.ranking == "global" and len(t.candidates) == 4 and not t.skipped
    assert t.qrels["t0"] == {"c0": 1.0, "c1": 1.0} and t.qrels["t2"] == {"c3": 1.0, "c0": 1.0}
    q = dict(t.queries)
    assert q["t0"].modality == "text" and q["t0"].text == "a dog runs"
    assert q["t1"].modality == "image" and q["t1"].image.endswith("images/q1.jpg")
    assert q["t2"].modality == "image" and q["t2"].text == "make it night"
    assert q["t3"].modality == "video" and len(q["t3"].frames) == 4
    assert t.candidates["c3"].frames[0].endswith(".png")


def test_suite_roots_as_users_have_them(tmp_path: Path) -> None:
    """eval.mmeb_root / eval.uvrb_root name the clones themselves (no mmeb/ or uvrb/ level)."""
    fx.write_mmeb_image(tmp_path)
    fx.write_beir(tmp_path)
    fx.write_uvrb(tmp_path)
    combined = load_task("mmeb_image", "MSCOCO_i2t", tmp_path)
    direct = load_task("mmeb_image", "MSCOCO_i2t", tmp_path / "mmeb")
    assert direct.qrels == combined.qrels and direct.candidates == combined.candidates
    assert load_task("beir", "ViDoRe_arxivqa", tmp_path / "mmeb").qrels
    assert (
        load_task("uvrb", "MS-TI", tmp_path / "uvrb").qrels
        == load_task("uvrb", "MS-TI", tmp_path).qrels
    )


# --------------------------------------------------------------------------- bad input
def test_unknown_task_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task NoSuchTask missing at .*MMEB_Test_Instruct"):
        load_task("mmeb_image", "NoSuchTask", tmp_path)
    with pytest.raises(DataError, match="unknown layout"):
        load_task("mmeb_audio", "X", tmp_path)
    for layout in LAYOUTS:
        with pytest.raises(DataError, match="missing at"):
            load_task(layout, "Nope", tmp_path)


def test_corrupt_image_error_and_skip(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    bad = tmp_path / "mmeb/image-tasks/MSCOCO_i2t/COCO_1.jpg.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError) as e:
        load_task("mmeb_image", "MSCOCO_i2t", tmp_path)
    msg = str(e.value)
    assert str(table) in msg and "row 1" in msg and str(bad) in msg and "on_bad_item: skip" in msg
    t = load_task("mmeb_image", "MSCOCO_i2t", tmp_path, on_bad_item="skip")
    assert [q for q, _ in t.queries] == ["0", "2"]
    assert t.skipped == [{"file": str(table), "row": 1, "reason": t.skipped[0]["reason"]}]
    assert "corrupt" in t.skipped[0]["reason"]


def test_missing_frame_folder_error_and_skip(tmp_path: Path) -> None:
    table = fx.write_video_ret(tmp_path)
    frames = tmp_path / "mmeb/video-tasks/frames/video_ret/MSR-VTT/video7001"
    for p in frames.iterdir():
        p.unlink()
    frames.rmdir()
    with pytest.raises(DataError, match=rf"{table}: row 1: frame folder .*video7001 missing"):
        load_task("mmeb_video_ret", "MSR-VTT", tmp_path)
    t = load_task("mmeb_video_ret", "MSR-VTT", tmp_path, on_bad_item="skip")
    assert "video7001" not in t.candidates and len(t.queries) == 3
    assert len(t.skipped) == 1 and t.skipped[0]["row"] == 1


def test_malformed_jsonl_row_error_and_skip(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    qfile = tmp_path / "uvrb/MS-TI/jsonl/queries.jsonl"
    lines = qfile.read_text().splitlines()
    lines[1] = '{"id": "t1", "image": '  # truncated JSON on line 2
    qfile.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{qfile}: line 2: not valid JSON"):
        load_task("uvrb", "MS-TI", tmp_path)
    t = load_task("uvrb", "MS-TI", tmp_path, on_bad_item="skip")
    assert [q for q, _ in t.queries] == ["t0", "t2", "t3"]
    reasons = [s["reason"] for s in t.skipped]
    assert len(reasons) == 2 and "not valid JSON" in reasons[0] and "t1" in reasons[1]


def test_uvrb_missing_corpus_frames_drops_dependent_queries(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    d = tmp_path / "uvrb/MS-TI/videos_frames/vid2"
    for p in d.iterdir():
        p.unlink()
    t = load_task("uvrb", "MS-TI", tmp_path, on_bad_item="skip")
    assert "c2" not in t.candidates and "t1" not in dict(t.queries)
    assert len(t.skipped) == 2 and "no .jpg" in t.skipped[0]["reason"]


def test_missing_column_names_file(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    pd.read_parquet(table).drop(columns=["qry_inst"]).to_parquet(table, index=False)
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match=rf"{table}: missing column\(s\) \['qry_inst'\]"):
            load_task("mmeb_image", "MSCOCO_i2t", tmp_path, on_bad_item=mode)


def test_malformed_parquet_file_and_row(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    df = pd.read_parquet(table)
    df.at[2, "tgt_img_path"] = ["", ""]  # 3 texts, 2 paths
    df.to_parquet(table, index=False)
    with pytest.raises(DataError, match=rf"{table}: row 2: tgt_text has 3 entries"):
        load_task("mmeb_image", "MSCOCO_i2t", tmp_path)
    assert len(load_task("mmeb_image", "MSCOCO_i2t", tmp_path, on_bad_item="skip").skipped) == 1
    table.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=rf"{table}: not a readable parquet file"):
        load_task("mmeb_image", "MSCOCO_i2t", tmp_path)


def test_beir_corrupt_image_bytes(tmp_path: Path) -> None:
    fx.write_beir(tmp_path)
    corpus = tmp_path / "mmeb/visdoc-tasks/ViDoRe_arxivqa/corpus" / fx.TABLE
    df = pd.read_parquet(corpus)
    df.at[3, "image"] = {"bytes": b"\x89PNG broken", "path": "doc3.png"}
    df.to_parquet(corpus, index=False)
    with pytest.raises(DataError, match=rf"{corpus}: row 3: image bytes of corpus-id 'doc3'"):
        load_task("beir", "ViDoRe_arxivqa", tmp_path)
    t = load_task("beir", "ViDoRe_arxivqa", tmp_path, on_bad_item="skip")
    assert "doc3" not in t.candidates and "q2" not in dict(t.queries)
    assert [s["row"] for s in t.skipped] == [3, 2]  # the corpus row, then the orphaned query


def test_video_qa_bad_answer_row(tmp_path: Path) -> None:
    table = fx.write_video_qa(tmp_path)
    df = pd.read_parquet(table)
    df.at[0, "answer"] = "a horse"
    df.to_parquet(table, index=False)
    with pytest.raises(DataError, match=rf"{table}: row 0: answer 'a horse' is none of"):
        load_task("mmeb_video_qa", "Video-MME", tmp_path)


def test_skipped_is_json_serialisable(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    (tmp_path / "uvrb/MS-TI/images/q1.jpg").unlink()
    t = load_task("uvrb", "MS-TI", tmp_path, on_bad_item="skip")
    assert json.loads(json.dumps(t.skipped))[0]["row"] == 2
    assert "not found" in t.skipped[0]["reason"]
