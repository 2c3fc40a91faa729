"""Benchmark loaders on fixtures that copy the real layouts (tests/fixtures/real_layouts.py).

Registry tasks are read where VLM2Vec's table of local paths puts them (the fixtures write
there without asking the registry); ``load_task(layout, name, root)`` reads the layout's
default place (the synthetic writer's).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures import real_layouts as fx
from ume.errors import DataError
from ume.suites.base import LAYOUTS, DataRoots, Source, locate, sample_frames, split_files
from ume.suites.loaders import load_spec, load_task
from ume.suites.mmeb_image import candidate_id, clean_text
from ume.suites.registry import get_task

pytestmark = pytest.mark.unit


def load(name: str, root, suite: str = "mmeb", **kw):
    return load_spec(get_task(suite, name), root, **kw)


def files_under(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in Path(root).rglob("*")}


# --------------------------------------------------------------------------- MMEB image
def test_mmeb_image_positive_first_and_markers(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    assert table == tmp_path / "mmeb/image-tasks/MSCOCO_i2t/test-00000-of-00001.parquet"
    t = load("MSCOCO_i2t", tmp_path)
    assert t.ranking == "local" and len(t.queries) == 3 and not t.skipped
    for qid, q in t.queries:
        assert q.modality == "image" and Path(q.image).is_absolute() and Path(q.image).is_file()
        assert "<|image_1|>" not in q.inst and q.inst.startswith("Find an image caption")
        ids = t.query_candidates[qid]
        assert t.qrels[qid] == {ids[0]: 1.0}
        assert t.candidates[ids[0]].text == f"caption {qid}"
    # candidates shared across rows appear once
    assert sorted(t.candidates) == [f"caption {i}" for i in range(5)]


def test_mmeb_image_annotation_root_apart_from_image_root(tmp_path: Path) -> None:
    """Setups like Embed-RL's keep the annotation snapshot apart from the images."""
    fx.write_mmeb_image(tmp_path)
    ann = tmp_path / "MMEB_Test_Instruct"
    (tmp_path / "mmeb/image-tasks/MSCOCO_i2t/test-00000-of-00001.parquet").rename(
        (ann / "MSCOCO_i2t").mkdir(parents=True)
        or ann / "MSCOCO_i2t" / "test-00000-of-00001.parquet"
    )
    images = tmp_path / "images"
    (tmp_path / "mmeb/image-tasks").rename(images)
    roots = DataRoots(mmeb=tmp_path / "mmeb", mmeb_image_annotations=ann, mmeb_images=images)
    t = load("MSCOCO_i2t", roots)
    assert len(t.queries) == 3 and all(q.image.startswith(str(images)) for _, q in t.queries)
    with pytest.raises(DataError, match="missing at"):
        load("MSCOCO_i2t", tmp_path)  # the default roots hold nothing now


def test_mmeb_grounding_candidate_id_is_path_colon_text(tmp_path: Path) -> None:
    fx.write_mmeb_grounding(tmp_path)
    t = load("RefCOCO-Matching", tmp_path)
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
    table = fx.write_video_ret(tmp_path, n_frames=20)
    assert table == tmp_path / "mmeb/video-tasks/MSR-VTT/test_1k/test-00000-of-00001.parquet"
    t = load("MSR-VTT", tmp_path, num_frames=8)
    assert t.ranking == "global" and len(t.queries) == 4 and len(t.candidates) == 3
    v = t.candidates["video7000"]
    names = [Path(p).name for p in v.frames]
    expected = [f"{i:04d}.jpg" for i in np.linspace(0, 19, 8, dtype=int)]
    assert names == expected == [f"{i:04d}.jpg" for i in (0, 2, 5, 8, 10, 13, 16, 19)]
    assert t.qrels["3"] == {"video7000": 1.0}  # second caption of the same video
    assert len(load("MSR-VTT", tmp_path, num_frames=4).candidates["video7001"].frames) == 4
    t64 = load("MSR-VTT", tmp_path, num_frames=64)
    assert len(t64.candidates["video7001"].frames) == 20  # fewer frames than asked: all


@pytest.mark.parametrize("name", ["MSR-VTT", "MSVD", "DiDeMo", "YouCook2", "VATEX"])
def test_video_ret_each_dataset_schema(tmp_path: Path, name: str) -> None:
    fx.write_video_ret(tmp_path, name, n_frames=6)
    t = load(name, tmp_path)
    assert sorted(t.candidates) == ["video7000", "video7001", "video7002"]
    assert [q.text for _, q in t.queries] == ["a man cooks 0", "a man cooks 1", "a man cooks 2",
                                              "cooking"]  # fmt: skip
    assert t.qrels["3"] == {"video7000": 1.0}
    assert t.queries[0][1].inst == get_task("mmeb", name).instruction  # VLM2Vec's, per dataset


def test_sample_frames_natural_order() -> None:
    frames = [f"{i}.jpg" for i in range(10)]
    assert sample_frames(frames, 3) == ["0.jpg", "4.jpg", "9.jpg"]
    assert sample_frames(frames[:2], 8) == frames[:2]


def test_video_cls_label_list(tmp_path: Path) -> None:
    fx.write_video_cls(tmp_path)
    t = load("UCF101", tmp_path)
    assert sorted(t.candidates) == ["ApplyEyeMakeup", "Archery", "Basketball"]
    assert t.qrels["1"] == {"Archery": 1.0} and t.query_candidates is None
    assert t.queries[0][1].modality == "video" and len(t.queries[0][1].frames) == 8
    fx.write_video_cls(tmp_path, "HMDB51", labels=False)
    t2 = load("HMDB51", tmp_path)
    assert sorted(t2.candidates) == ["ApplyEyeMakeup", "Archery"] and "labels.json" in t2.notes[0]


def test_k700_reads_kinetics_table_and_k700_frames(tmp_path: Path) -> None:
    fx.write_video_cls(tmp_path, "Kinetics-700")
    assert (tmp_path / "mmeb/video-tasks/frames/video_cls/K700").is_dir()
    t = load("K700", tmp_path)
    assert t.name == "K700" and len(t.queries) == 3 and "/K700/" in t.queries[0][1].frames[0]


def test_ssv2_per_row_candidates(tmp_path: Path) -> None:
    fx.write_ssv2(tmp_path)
    t = load("SmthSmthV2", tmp_path)
    assert t.ranking == "local"
    assert t.query_candidates["1"] == ["Pushing something 1", "Holding something",
                                       "Dropping something 1"]  # fmt: skip
    assert t.qrels == {"0": {"Pushing something 0": 1.0}, "1": {"Holding something": 1.0},
                       "2": {"Dropping something 2": 1.0}}  # fmt: skip
    assert len(t.candidates) == 7  # "Holding something" is shared by every row
    assert "/SSv2/101/" in t.queries[1][1].frames[0]


def test_ssv2_positive_outside_the_candidates_is_a_bad_row(tmp_path: Path) -> None:
    table = fx.write_ssv2(tmp_path)
    df = pd.read_parquet(table)
    df.at[2, "pos_text"] = "Something else"
    df.to_parquet(table, index=False)
    with pytest.raises(DataError, match=rf"{table}: row 2: pos_text 'Something else'"):
        load("SmthSmthV2", tmp_path)
    assert len(load("SmthSmthV2", tmp_path, on_bad_item="skip").queries) == 2


@pytest.mark.parametrize(
    ("name", "answers", "cand", "text"),
    [
        ("Video-MME", ("0:1", "1:2"), "a dog", "What happens 0?\nA. a cat\nB. a dog"),
        ("NExTQA", ("0:1", "1:2"), "to play", "why did the boy run 0\nOptions:\n(A) to eat"),
        ("EgoSchema", ("0:1", "1:2"), "clean", "What did C do 0?A. cook B. clean"),
        ("ActivityNetQA", ("0:0", "1:1"), "no", "is the man dancing 0? (A) yes; (B) no."),
    ],
)
def test_video_qa_each_dataset_schema(tmp_path, name, answers, cand, text) -> None:
    table = fx.write_video_qa(tmp_path, name)
    assert table.parent.name == {"NExTQA": "MC", "EgoSchema": "Subset"}.get(name, "data")
    t = load(name, tmp_path)
    assert (t.qrels["0"], t.qrels["1"]) == ({answers[0]: 1.0}, {answers[1]: 1.0})
    assert t.candidates["0:1"].text == cand
    assert t.queries[0][1].text.startswith(text) and len(t.queries[0][1].frames) == 8


def test_mvbench_reads_every_subset_folder(tmp_path: Path) -> None:
    fx.write_mvbench(tmp_path)
    assert len(list((tmp_path / "mmeb/video-tasks/MVBench").iterdir())) == 20
    t = load("MVBench", tmp_path)
    assert len(t.queries) == 2
    q = t.queries[1][1]
    assert "/MVBench/object_shuffle/object_shuffle_clip.mp4/" in q.frames[0]
    assert q.text.endswith("(B) Took the towel.\n(C) Opened the door.")
    assert t.candidates["1:1"].text == "(B) Took the towel." and t.qrels["1"] == {"1:1": 1.0}


def test_video_mret_clips(tmp_path: Path) -> None:
    fx.write_video_mret(tmp_path)
    t = load("QVHighlight", tmp_path, num_frames=4)
    assert t.query_candidates["0"] == ["clip_0/negative_0", "clip_0/negative_1", "clip_0/positive"]
    assert t.qrels["0"] == {"clip_0/positive": 1.0}
    q = t.queries[0][1]
    assert q.text == "a person waves 0" and len(q.frames) == 4 and "/query/" in q.frames[0]
    fx.write_video_mret(tmp_path, "Charades-STA")  # frames in Charades_STA
    assert len(load("Charades-STA", tmp_path).queries) == 2


def test_momentseeker_query_kinds_and_clips(tmp_path: Path) -> None:
    fx.write_momentseeker(tmp_path)
    t = load("MomentSeeker", tmp_path, num_frames=4)
    q = dict(t.queries)
    assert q["0"].modality == "text" and q["0"].inst.startswith(
        "Find the clip that corresponds to the given text"
    )
    assert q["1"].modality == "image" and q["1"].image.endswith("query_ego4d/q1.jpg")
    assert q["2"].modality == "video" and "movie101_77" in q["2"].frames[0]
    assert t.query_candidates["0"] == ["clips_v0_pos", "clips_v0_neg0", "clips_v0_neg1"]
    assert t.qrels["2"] == {"clips_v2_pos": 1.0}
    assert len(t.candidates["clips_v1_neg1"].frames) == 4


# --------------------------------------------------------------------------- BEIR
def test_beir_graded_qrels_pages_in_the_cache_not_the_root(tmp_path: Path) -> None:
    fx.write_beir(tmp_path, "ViDoRe_docvqa")
    before = files_under(tmp_path / "mmeb")
    t = load("ViDoRe_docvqa", tmp_path, cache_dir=tmp_path / "cache")
    assert files_under(tmp_path / "mmeb") == before  # nothing new, nothing touched
    assert t.ranking == "global" and len(t.candidates) == 4
    assert t.qrels["q0"] == {"doc0": 2.0, "doc1": 1.0}  # the repeated pair keeps grade 2
    assert t.qrels["q2"] == {"doc3": 1.0}  # score 0 is not relevant
    doc1 = Path(t.candidates["doc1"].image)
    assert doc1.suffix == ".jpg" and doc1.is_file() and t.candidates["doc1"].modality == "document"
    assert doc1.parent == tmp_path / "cache/pages/docvqa_test_subsampled_beir"
    mtime = os.stat(doc1).st_mtime_ns
    load("ViDoRe_docvqa", tmp_path, cache_dir=tmp_path / "cache")
    assert os.stat(doc1).st_mtime_ns == mtime  # decoded once
    # without a cache folder: a temporary folder, still nothing in the data root
    nocache = load("ViDoRe_docvqa", tmp_path)
    assert not Path(nocache.candidates["doc0"].image).is_relative_to(tmp_path)
    assert files_under(tmp_path / "mmeb") == before


def test_read_only_data_root(tmp_path: Path) -> None:
    """A root on a read-only mount loads (where this machine lets the test make one)."""
    fx.write_beir(tmp_path / "src", "ViDoRe_arxivqa")
    fx.write_video_ret(tmp_path / "src")
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(tmp_path / "src"), str(ro)],
                             capture_output=True).returncode == 0  # fmt: skip
    if mounted:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True)
    try:
        if not mounted or (os.access(ro, os.W_OK) and _writable(ro)):
            pytest.skip("cannot make a read-only mount here (the no-write test above covers it)")
        t = load("ViDoRe_arxivqa", ro, cache_dir=tmp_path / "cache")
        assert len(t.candidates) == 4 and len(load("MSR-VTT", ro).queries) == 4
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], capture_output=True)


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@settings(max_examples=40, deadline=None)
@given(grades=st.lists(st.integers(-1, 3), min_size=1, max_size=5), data=st.data())
def test_repeated_qrels_keep_the_highest_grade_whatever_the_order(tmp_path_factory, grades, data):
    root = tmp_path_factory.mktemp("qrels")
    fx.write_beir(root, "ViDoRe_arxivqa")
    qrels = fx.beir_folder(root, "ViDoRe_arxivqa") / "qrels" / fx.TABLE
    order = data.draw(st.permutations(grades))
    rows = [{"query-id": "q2", "corpus-id": "doc3", "score": 1}]
    rows += [{"query-id": "q0", "corpus-id": "doc1", "score": g} for g in order]
    pd.DataFrame(rows).to_parquet(qrels, index=False)
    t = load("ViDoRe_arxivqa", root, cache_dir=root / "cache", on_bad_item="skip")
    best = max(grades)
    assert t.qrels.get("q0") == ({"doc1": float(best)} if best > 0 else None)


def test_vidore_v2_multilingual_reads_the_whole_folder(tmp_path: Path) -> None:
    fx.write_beir(tmp_path, "ViDoRe_biomedical_lectures_v2_multilingual")
    folder = tmp_path / "mmeb/visdoc-tasks/biomedical_lectures_v2"
    assert folder.is_dir()
    t = load("ViDoRe_biomedical_lectures_v2_multilingual", tmp_path, cache_dir=tmp_path / "c")
    assert [q for q, _ in t.queries] == ["q0", "q1", "q2"]
    # the plain (english) task VLM2Vec also defines: the same folder, english queries only
    english = Source("biomedical_lectures_v2", "beir", "visdoc-tasks/biomedical_lectures_v2",
                     language="english")  # fmt: skip
    from ume.suites.loaders import read_files

    en = read_files(locate(english, tmp_path), cache_dir=tmp_path / "c")
    assert [q for q, _ in en.queries] == ["q0", "q2"]


def test_visrag_reads_its_train_split(tmp_path: Path) -> None:
    fx.write_beir(tmp_path, "VisRAG_ArxivQA")
    assert (
        tmp_path / "mmeb/visdoc-tasks/VisRAG-Ret-Test-ArxivQA/corpus/train-00000-of-00001.parquet"
    ).is_file()
    assert len(load("VisRAG_ArxivQA", tmp_path, cache_dir=tmp_path / "c").queries) == 3


@pytest.mark.parametrize(
    ("task", "folder"),
    [("ViDoSeek-page-fixed", "ViDoSeek-page"), ("ViDoSeek-doc", "ViDoSeek"),
     ("MMLongBench-page-fixed", "MMLongBench"), ("MMLongBench-doc", "MMLongBench-doc")],
)  # fmt: skip
def test_ood_folders(tmp_path: Path, task: str, folder: str) -> None:
    fx.write_beir(tmp_path, get_task("mmeb", task).data_name)
    assert (tmp_path / "mmeb/visdoc-tasks" / folder / "qrels").is_dir()
    assert load(task, tmp_path, cache_dir=tmp_path / "c").name == task


def test_beir_query_without_qrels_is_listed(tmp_path: Path) -> None:
    fx.write_beir(tmp_path)
    qrels = fx.beir_folder(tmp_path, "ViDoRe_arxivqa") / "qrels" / fx.TABLE
    df = pd.read_parquet(qrels)
    df[df["query-id"] != "q1"].to_parquet(qrels, index=False)
    t = load("ViDoRe_arxivqa", tmp_path)
    assert [q for q, _ in t.queries] == ["q0", "q2"]
    assert len(t.skipped) == 1 and "q1" in t.skipped[0]["reason"]


# --------------------------------------------------------------------------- UVRB
def test_uvrb_multi_positive_and_query_kinds(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    t = load("MS-TI", tmp_path, suite="uvrb")
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
    combined = load("MSCOCO_i2t", tmp_path)
    direct = load("MSCOCO_i2t", tmp_path / "mmeb")
    assert direct.qrels == combined.qrels and direct.candidates == combined.candidates
    assert load("ViDoRe_arxivqa", tmp_path / "mmeb").qrels
    uvrb = load("MS-TI", tmp_path / "uvrb", suite="uvrb")
    assert uvrb.qrels == load("MS-TI", tmp_path, suite="uvrb").qrels


# --------------------------------------------------------------------------- split files
def test_split_files_as_hf_names_them(tmp_path: Path) -> None:
    def touch(rel: str) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
        return p

    a = touch("a/data/test-00000-of-00002.parquet")
    b = touch("a/data/test-00001-of-00002.parquet")
    touch("a/data/train-00000-of-00001.parquet")
    assert split_files(tmp_path / "a", "test") == [a, b]
    c = touch("b/val/part0.parquet")
    assert split_files(tmp_path / "b", "val") == [c] and split_files(tmp_path / "b", "test") == []
    d = touch("c/whatever.parquet")  # names no split: taken whole
    assert split_files(tmp_path / "c", "test") == [d]
    assert split_files(tmp_path / "missing", "test") == []


def test_wrong_split_names_what_is_there(tmp_path: Path) -> None:
    fx.write_video_ret(tmp_path, "YouCook2")  # split val
    table = tmp_path / "mmeb/video-tasks/YouCook2/data/val-00000-of-00001.parquet"
    table.rename(table.with_name("test-00000-of-00001.parquet"))
    with pytest.raises(DataError, match=r"no parquet file of split 'val'.*test-00000"):
        load("YouCook2", tmp_path)


# --------------------------------------------------------------------------- bad input
def test_unknown_task_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task NoSuchTask missing at .*MMEB_Test_Instruct"):
        load_task("mmeb_image", "NoSuchTask", tmp_path)
    with pytest.raises(DataError, match="unknown layout"):
        load_task("mmeb_audio", "X", tmp_path)
    for layout in LAYOUTS:
        with pytest.raises(DataError, match=r"missing at|folder missing"):
            load_task(layout, "Nope", tmp_path)


def test_corrupt_image_error_and_skip(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    bad = tmp_path / "mmeb/image-tasks/MSCOCO_i2t/COCO_1.jpg.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError) as e:
        load("MSCOCO_i2t", tmp_path)
    msg = str(e.value)
    assert str(table) in msg and "row 1" in msg and str(bad) in msg
    assert "eval.on_bad_item: skip" in msg  # the key that governs evaluation
    t = load("MSCOCO_i2t", tmp_path, on_bad_item="skip")
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
        load("MSR-VTT", tmp_path)
    t = load("MSR-VTT", tmp_path, on_bad_item="skip")
    assert "video7001" not in t.candidates and len(t.queries) == 3
    assert len(t.skipped) == 1 and t.skipped[0]["row"] == 1


def test_malformed_jsonl_row_error_and_skip(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    qfile = tmp_path / "uvrb/MS-TI/jsonl/queries.jsonl"
    lines = qfile.read_text().splitlines()
    lines[1] = '{"id": "t1", "image": '  # truncated JSON on line 2
    qfile.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{qfile}: line 2: not valid JSON"):
        load("MS-TI", tmp_path, suite="uvrb")
    t = load("MS-TI", tmp_path, suite="uvrb", on_bad_item="skip")
    assert [q for q, _ in t.queries] == ["t0", "t2", "t3"]
    reasons = [s["reason"] for s in t.skipped]
    assert len(reasons) == 2 and "not valid JSON" in reasons[0] and "t1" in reasons[1]


def test_uvrb_missing_corpus_frames_drops_dependent_queries(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    d = tmp_path / "uvrb/MS-TI/videos_frames/vid2"
    for p in d.iterdir():
        p.unlink()
    t = load("MS-TI", tmp_path, suite="uvrb", on_bad_item="skip")
    assert "c2" not in t.candidates and "t1" not in dict(t.queries)
    assert len(t.skipped) == 2 and "no .jpg" in t.skipped[0]["reason"]


def test_missing_column_names_file(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    pd.read_parquet(table).drop(columns=["qry_inst"]).to_parquet(table, index=False)
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match=rf"{table}: missing column\(s\) \['qry_inst'\]"):
            load("MSCOCO_i2t", tmp_path, on_bad_item=mode)


def test_malformed_parquet_file_and_row(tmp_path: Path) -> None:
    table = fx.write_mmeb_image(tmp_path)
    df = pd.read_parquet(table)
    df.at[2, "tgt_img_path"] = ["", ""]  # 3 texts, 2 paths
    df.to_parquet(table, index=False)
    with pytest.raises(DataError, match=rf"{table}: row 2: tgt_text has 3 entries"):
        load("MSCOCO_i2t", tmp_path)
    assert len(load("MSCOCO_i2t", tmp_path, on_bad_item="skip").skipped) == 1
    table.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=rf"{table}: not a readable parquet file"):
        load("MSCOCO_i2t", tmp_path)


def test_beir_corrupt_image_bytes(tmp_path: Path) -> None:
    fx.write_beir(tmp_path)
    corpus = fx.beir_folder(tmp_path, "ViDoRe_arxivqa") / "corpus" / fx.TABLE
    df = pd.read_parquet(corpus)
    df.at[3, "image"] = {"bytes": b"\x89PNG broken", "path": "doc3.png"}
    df.to_parquet(corpus, index=False)
    with pytest.raises(DataError, match=rf"{corpus}: row 3: image bytes of corpus-id 'doc3'"):
        load("ViDoRe_arxivqa", tmp_path)
    t = load("ViDoRe_arxivqa", tmp_path, on_bad_item="skip")
    assert "doc3" not in t.candidates and "q2" not in dict(t.queries)
    assert [s["row"] for s in t.skipped] == [3, 2]  # the corpus row, then the orphaned query


def test_video_qa_bad_answer_row(tmp_path: Path) -> None:
    table = fx.write_video_qa(tmp_path)
    df = pd.read_parquet(table)
    df.at[0, "answer"] = "E"
    df.to_parquet(table, index=False)
    with pytest.raises(DataError, match=rf"{table}: row 0: answer 'E' is not the letter"):
        load("Video-MME", tmp_path)


def test_skipped_is_json_serialisable(tmp_path: Path) -> None:
    fx.write_uvrb(tmp_path)
    (tmp_path / "uvrb/MS-TI/images/q1.jpg").unlink()
    t = load("MS-TI", tmp_path, suite="uvrb", on_bad_item="skip")
    assert json.loads(json.dumps(t.skipped))[0]["line"] == 2  # a JSONL line (1-based)
    assert "not found" in t.skipped[0]["reason"]
