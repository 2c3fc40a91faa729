"""The synthetic benchmark generator: determinism, ground truth, real layouts, distractors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ume.config import SyntheticConfig
from ume.data.synthetic_pairs import TRAIN_DATASETS, write_training_pairs
from ume.fingerprints import checksum
from ume.items import PAIR_COLUMNS, Item, check_pairs_frame
from ume.suites.base import GT_SIDECAR, task_dir
from ume.suites.loaders import load_task
from ume.suites.registry import SYNTH_TASKS, get_task, tasks
from ume.suites.synth.scenes import COLORS, Obj, obj_box, render_scene
from ume.suites.synth.writer import write_benchmark

pytestmark = pytest.mark.unit

CFG = SyntheticConfig()


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict, float]:
    root = tmp_path_factory.mktemp("synth")
    t0 = time.perf_counter()
    summary = write_benchmark(CFG, root)
    return root, summary, time.perf_counter() - t0


@pytest.fixture(scope="module")
def loaded(bench) -> dict:
    root, _, _ = bench
    return {s.name: load_task(s.layout, s.name, root) for s in SYNTH_TASKS}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return root, write_training_pairs(CFG, root)


def _box_has_color(image: str | Path, box: list[int], color: str, tol: int = 40) -> bool:
    """Some pixel in the 0..1000 box is close to ``color``; none far outside it is needed."""
    with Image.open(image) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    h, w = a.shape[:2]
    x1, y1, x2, y2 = box
    region = a[
        y1 * h // 1000 : max(y1 * h // 1000 + 1, y2 * h // 1000),
        x1 * w // 1000 : max(x1 * w // 1000 + 1, x2 * w // 1000),
    ]
    d = np.abs(region - np.array(COLORS[color])).sum(-1)
    return bool((d < tol).any())


# --------------------------------------------------------------------------- suite
def test_suite_covers_every_category_and_registers() -> None:
    cats = {s.category for s in SYNTH_TASKS}
    assert {"I-CLS", "I-QA", "I-RET", "I-GD", "V-CLS", "V-QA", "V-RET", "V-MRET"} <= cats
    assert any(s.modality == "visdoc" and s.layout == "beir" for s in SYNTH_TASKS)
    assert {"TXT", "CMP", "VIS"} <= cats
    groups = {g for s in SYNTH_TASKS for g in s.groups}
    assert {"CG", "FG", "LC", "S", "T"} <= groups
    assert all(s.suite == "synth" for s in SYNTH_TASKS)
    assert tasks("synth") == tuple(SYNTH_TASKS)
    assert get_task("synth", "SynthDocRET").metric == "ndcg_linear@5"


def test_generation_is_summarised(bench) -> None:
    root, summary, _ = bench
    assert set(summary) == {s.name for s in SYNTH_TASKS}
    assert all(v["queries"] > 0 and v["candidates"] > 1 for v in summary.values())
    assert (root / "synthetic_summary.json").is_file()


def test_deterministic(tmp_path: Path, bench) -> None:
    root, _, _ = bench
    other = tmp_path / "again"
    write_benchmark(CFG, other)
    for spec in SYNTH_TASKS:  # annotation folders (the loader may add caches to root)
        d = task_dir(spec.layout, spec.name, root)
        assert checksum(d / GT_SIDECAR) == checksum(
            task_dir(spec.layout, spec.name, other) / GT_SIDECAR
        )
    for sub in ("mmeb/image-tasks", "mmeb/video-tasks", "mmeb/MMEB_Test_Instruct"):
        assert checksum(root / sub) == checksum(other / sub), sub
    for spec in SYNTH_TASKS:
        if spec.layout == "uvrb":
            assert checksum(root / "uvrb" / spec.name) == checksum(other / "uvrb" / spec.name)
    different = tmp_path / "seed1"
    write_benchmark(SyntheticConfig(seed=1), different, tasks=["SynthCLS"])
    assert not any((different / "uvrb").iterdir())  # only the requested task was written
    assert checksum(root / "mmeb/image-tasks/SynthCLS") != checksum(
        different / "mmeb/image-tasks/SynthCLS"
    )


def test_rewrite_replaces_stale_files(tmp_path: Path) -> None:
    small = SyntheticConfig(eval_queries=3, eval_corpus=8, eval_candidates=3)
    write_benchmark(SyntheticConfig(eval_queries=5, eval_corpus=8, eval_candidates=3), tmp_path)
    write_benchmark(small, tmp_path)
    assert len(list((tmp_path / "mmeb/image-tasks/SynthCLS").iterdir())) == 3
    t = load_task("mmeb_video_mret", "SynthMomentRET", tmp_path)
    assert len(t.queries) == 3


# --------------------------------------------------------------------------- loading
def test_every_task_loads_with_gt(loaded, bench) -> None:
    _, summary, _ = bench
    for spec in SYNTH_TASKS:
        t = loaded[spec.name]
        assert not t.skipped, (spec.name, t.skipped[:2])
        assert t.ranking == spec.ranking, spec.name
        assert len(t.queries) == summary[spec.name]["queries"] > 0
        assert len(t.candidates) == summary[spec.name]["candidates"]
        assert all(it.gt.get("description") for _, it in t.queries), spec.name
        assert all(it.gt for it in t.candidates.values()), spec.name
        for qid, rel in t.qrels.items():
            assert rel and all(c in t.candidates for c in rel)
            if t.query_candidates is not None:
                assert set(rel) <= set(t.query_candidates[qid])
                assert len(t.query_candidates[qid]) >= 2


def test_sizes_follow_config(loaded) -> None:
    assert len(loaded["SynthT2I"].query_candidates["0"]) == CFG.eval_candidates
    assert len(loaded["SynthDocRET"].candidates) == CFG.eval_corpus
    assert len(loaded["SynthUVRB-S"].candidates) == CFG.eval_corpus
    v = next(iter(loaded["SynthVideoRET"].candidates.values()))
    assert len(v.frames) == CFG.num_frames
    with Image.open(v.frames[0]) as im:
        assert im.size == (CFG.image_size, CFG.image_size)
    with Image.open(next(iter(loaded["SynthDocRET"].candidates.values())).image) as im:
        assert im.size == (CFG.doc_size, CFG.doc_size)


def test_visdoc_graded_and_uvrb_multi_positive(loaded) -> None:
    doc = loaded["SynthDocRET"]
    assert all(sorted(r.values()) == [1.0, 2.0] for r in doc.qrels.values())
    cg = loaded["SynthUVRB-CG"]
    assert any(len(r) > 1 for r in cg.qrels.values())


# --------------------------------------------------------------------------- ground truth
def test_image_gt_boxes_match_pixels(loaded) -> None:
    for name in ("SynthCLS", "SynthVQA", "SynthGrounding"):
        for _, q in loaded[name].queries:
            color = q.gt["keywords"][0]
            assert color in COLORS
            assert _box_has_color(q.image, q.gt["boxes"][0], color), (name, q.gt)


def test_box_is_tight() -> None:
    for shape in ("circle", "square", "triangle", "diamond"):
        o = Obj(shape, "red", 2)
        a = np.asarray(render_scene([o], 64)).astype(int)
        ys, xs = np.where(np.abs(a - np.array(COLORS["red"])).sum(-1) < 10)
        drawn = [
            xs.min() * 1000 / 64,
            ys.min() * 1000 / 64,
            (xs.max() + 1) * 1000 / 64,
            (ys.max() + 1) * 1000 / 64,
        ]
        assert all(
            abs(d - b) <= 1000 / 64 + 1 for d, b in zip(drawn, obj_box(o, 64), strict=True)
        ), shape


def test_video_key_frames_show_the_event(loaded) -> None:
    for name in ("SynthVideoCLS", "SynthVideoRET", "SynthUVRB-S"):
        t = loaded[name]
        items = [it for _, it in t.queries if it.modality == "video"] + [
            it for it in t.candidates.values() if it.modality == "video"
        ]
        assert items, name
        for it in items:
            kf, box, color = it.gt["key_frames"], it.gt["boxes"][0], it.gt["keywords"][0]
            assert kf and all(1 <= k <= len(it.frames) for k in kf)
            for k in kf:  # 1-based
                assert _box_has_color(it.frames[k - 1], box, color, tol=90), (name, it.gt)


def test_document_gt_keywords_are_on_the_page(loaded) -> None:
    doc = loaded["SynthDocRET"]
    for qid, rel in doc.qrels.items():
        best = max(rel, key=rel.get)
        page = doc.candidates[best]
        q = dict(doc.queries)[qid]
        assert set(q.gt["keywords"]) <= set(page.gt["keywords"])
        assert all(k in page.gt["description"] for k in q.gt["keywords"])
        assert len(page.gt["boxes"]) == 3


# --------------------------------------------------------------------------- distractors
def test_image_distractors_share_shape(loaded) -> None:
    cls = loaded["SynthCLS"]
    for ids in cls.query_candidates.values():
        color, shape = ids[0].split()
        assert any(c.split()[1] == shape and c.split()[0] != color for c in ids[1:]), ids
    t2i = loaded["SynthT2I"]
    n_fine = 0
    for _qid, ids in t2i.query_candidates.items():
        pos = t2i.candidates[ids[0]].gt["description"].split(", ")
        for c in ids[1:]:
            neg = t2i.candidates[c].gt["description"].split(", ")
            diff = [(a, b) for a, b in zip(pos, neg, strict=False) if a != b]
            same_shape = len(diff) == 1 and diff[0][0].split()[2] == diff[0][1].split()[2]
            n_fine += same_shape
    assert n_fine >= len(t2i.query_candidates)


def test_video_distractors_same_shape_other_colour_or_place(loaded) -> None:
    ret = loaded["SynthVideoRET"]
    gts = [c.gt for c in ret.candidates.values()]
    # keywords: colour, shape, event kind, place
    with_twin = [
        g
        for g in gts
        if any(
            h["keywords"][1:3] == g["keywords"][1:3] and h["keywords"] != g["keywords"] for h in gts
        )
    ]
    assert len(with_twin) >= len(gts) // 2
    mret = loaded["SynthMomentRET"]
    for qid, ids in mret.query_candidates.items():
        pos = next(iter(mret.qrels[qid]))
        shape = mret.candidates[pos].gt["keywords"][1]
        negs = [mret.candidates[c].gt for c in ids if c != pos]
        assert all(n["keywords"][1] == shape for n in negs)
        assert all(n["description"] != mret.candidates[pos].gt["description"] for n in negs)


# --------------------------------------------------------------------------- training pairs
def test_training_pairs(pairs) -> None:
    _, df = pairs
    check_pairs_frame(df, "synthetic")
    assert list(df.columns) == list(PAIR_COLUMNS)
    assert sorted(df["dataset"].unique()) == sorted(TRAIN_DATASETS)
    assert (df.groupby("dataset").size() == CFG.train_pairs_per_dataset).all()
    for ds, modality in TRAIN_DATASETS.items():
        sub = df[df["dataset"] == ds]
        assert (sub["modality"] == modality).all()
    for _, row in df.iterrows():
        for side in ("qry", "pos"):
            it = Item.from_row(row, side)
            assert it.gt and it.gt["description"]
            if it.image:
                assert Path(it.image).is_absolute() and Path(it.image).is_file()
            assert all(Path(f).is_file() for f in it.frames)
            if it.modality == "image" and side == "qry":
                assert _box_has_color(it.image, it.gt["boxes"][0], it.gt["keywords"][0])
            if it.modality == "video":
                assert len(it.frames) == CFG.num_frames and it.gt["key_frames"]
    mods = set(df["qry_modality"]) | set(df["pos_modality"])
    assert mods == {"text", "image", "video", "document"}


def test_training_pairs_deterministic(pairs, tmp_path: Path) -> None:
    root, df = pairs
    df2 = write_training_pairs(CFG, tmp_path)
    assert checksum(root) == checksum(tmp_path)
    strip = lambda d, r: d.map(lambda v: v.replace(str(r), "") if isinstance(v, str) else v)  # noqa: E731
    a, b = (
        strip(df.drop(columns=["qry_frames", "pos_frames"]), root),
        strip(df2.drop(columns=["qry_frames", "pos_frames"]), tmp_path),
    )
    assert a.equals(b)
