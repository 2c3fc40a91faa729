"""The task registry: counts, names, categories, metrics, suites."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace

import pytest

from ume.errors import ConfigError
from ume.eval.aggregate import REFERENCE_DIR
from ume.suites import registry
from ume.suites.registry import (
    MMEB_CATEGORIES,
    MMEB_TASKS,
    UVRB_TASKS,
    TaskSpec,
    get_task,
    register_suite,
    tasks,
    tasks_by_category,
)

pytestmark = pytest.mark.unit


def test_counts():
    assert len(MMEB_TASKS) == 78
    assert Counter(s.modality for s in MMEB_TASKS) == {"image": 36, "video": 18, "visdoc": 24}
    assert len(UVRB_TASKS) == 16
    assert tasks("mmeb") == MMEB_TASKS and tasks("uvrb") == UVRB_TASKS


def test_category_sizes_match_benchmark():
    sizes = Counter(s.category for s in MMEB_TASKS)
    assert sizes == {
        "I-CLS": 10,
        "I-QA": 10,
        "I-RET": 12,
        "I-GD": 4,
        "V-CLS": 5,
        "V-QA": 5,
        "V-RET": 5,
        "V-MRET": 3,
        "VDRv1": 10,
        "VDRv2": 4,
        "VR": 6,
        "OOD": 4,
    }
    for s in MMEB_TASKS:
        assert MMEB_CATEGORIES[s.category] == s.modality


def test_categories_match_published_table_columns():
    with open(REFERENCE_DIR / "mmeb_v2_categories_published.csv") as f:
        header = next(csv.reader(f))
    assert set(MMEB_CATEGORIES) <= set(header)


def test_names_match_leaderboard_json():
    data = json.loads((REFERENCE_DIR / "mmeb_v2_embed-rl-2b.json").read_text())
    for modality, section in data["metrics"].items():
        names = [s.name for s in MMEB_TASKS if s.modality == modality]
        assert names == list(section), modality  # same names, same order


def test_published_task_rows_resolve():
    with open(REFERENCE_DIR / "mmeb_v2_tasks_published.csv") as f:
        labels = [r["Task"] for r in csv.DictReader(f)]
    task_rows = [lab for lab in labels if not lab.startswith("Avg") and "(" not in lab]
    resolved = {get_task("mmeb", lab).name for lab in task_rows}
    assert len(task_rows) == 78 and len(resolved) == 78


def test_scoring_vs_data_names():
    s = get_task("mmeb", "ViDoSeek-page")
    assert s.name == "ViDoSeek-page-fixed" and s.data_name == "ViDoSeek-page"
    assert get_task("mmeb", "MMLongBench-page-fixed").data_name == "MMLongBench-page"
    assert get_task("mmeb", "ViDoRe_energy").name == "ViDoRe_syntheticDocQA_energy"
    assert get_task("mmeb", "K700").data_name == "Kinetics-700"
    assert get_task("mmeb", "ImageNet-1K").data_name == "ImageNet-1K"  # defaults to name


def test_metrics_layouts_ranking():
    for s in MMEB_TASKS:
        if s.modality == "visdoc":
            assert (s.metric, s.layout, s.ranking) == ("ndcg_linear@5", "beir", "global")
        else:
            assert s.metric == "hit@1"
    assert {s.layout for s in MMEB_TASKS if s.modality == "image"} == {"mmeb_image"}
    assert {s.ranking for s in MMEB_TASKS if s.modality == "image"} == {"local"}
    layouts = {s.category: s.layout for s in MMEB_TASKS if s.modality == "video"}
    assert layouts == {
        "V-CLS": "mmeb_video_cls",
        "V-QA": "mmeb_video_qa",
        "V-RET": "mmeb_video_ret",
        "V-MRET": "mmeb_video_mret",
    }
    # VLM2Vec: classification against the full label list, retrieval against the corpus
    assert get_task("mmeb", "K700").ranking == "global"
    assert get_task("mmeb", "SmthSmthV2").ranking == "local"
    assert get_task("mmeb", "MSR-VTT").ranking == "global"
    assert get_task("mmeb", "NExTQA").ranking == "local"
    assert get_task("mmeb", "QVHighlight").ranking == "local"


def test_uvrb_groups_and_metrics():
    by = tasks_by_category("uvrb")
    names = {k: [s.name for s in v] for k, v in by.items()}
    assert len(names["TXT"]) == 12 and names["CMP"] == ["MS-TI", "MS-TV"]
    assert names["VIS"] == ["MSRVTT-I2V", "LoVR-C2V"]
    assert names["CG"] == ["MSRVTT", "DiDeMo", "CRB-G"]
    assert names["FG"] == ["CRB-S", "VDC-O", "CRB-T", "CMRB", "DREAM-E", "LoVR-TH", "PEV-K"]
    assert names["LC"] == ["LoVR-V", "VDC-D"]
    assert names["S"] == ["CRB-S", "VDC-O"] and names["T"] == ["CRB-T", "CMRB"]
    assert names["PR"] == ["DREAM-E", "LoVR-TH", "PEV-K"]
    metrics = {s.name: s.metric for s in UVRB_TASKS}
    assert metrics["CMRB"] == metrics["LoVR-TH"] == "recall@10"
    assert metrics["MS-TI"] == metrics["MS-TV"] == "precision@1"
    assert Counter(metrics.values())["recall@1"] == 12
    assert all(s.recall_style == "hit" and s.ranking == "global" for s in UVRB_TASKS)


def test_uvrb_dataset_names_match_published_table():
    with open(REFERENCE_DIR / "uvrb_datasets_published.csv") as f:
        header = next(csv.reader(f))
    assert [s.name for s in UVRB_TASKS] == header[2:]


def test_instructions():
    assert get_task("mmeb", "MSR-VTT").instruction.startswith("Find a video that contains")
    assert get_task("mmeb", "ViDoRe_arxivqa").instruction.startswith("Find a document image")
    assert get_task("mmeb", "ImageNet-1K").instruction == ""  # per row in the data
    assert get_task("mmeb", "ImageNet-1K").instruction_source == "data"
    assert all(s.instruction for s in MMEB_TASKS if s.modality != "image")


def test_get_task_unknown():
    with pytest.raises(ConfigError, match="unknown task 'Nope'"):
        get_task("mmeb", "Nope")
    with pytest.raises(ConfigError, match="unknown task suite"):
        tasks("no-such-suite")


def test_register_suite(monkeypatch):
    monkeypatch.setattr(registry, "_SUITES", dict(registry._SUITES))
    spec = TaskSpec("toy", "toy", "image", "I-CLS", "mmeb_image", "local", "hit@1")
    register_suite("toy", [spec])
    register_suite("toy", [spec])  # identical: no-op
    assert get_task("toy", "toy") is spec
    other = replace(spec, metric="hit@5")
    with pytest.raises(ConfigError, match="already registered"):
        register_suite("toy", [other])
    register_suite("toy", [other], replace=True)
    assert get_task("toy", "toy").metric == "hit@5"
    with pytest.raises(ConfigError, match="suite='toy'"):
        register_suite("other", [spec])
    with pytest.raises(ConfigError, match=r"duplicate|used by both"):
        register_suite("toy", [spec, replace(spec, data_name="x")], replace=True)


def test_taskspec_validation():
    with pytest.raises(ConfigError):
        TaskSpec("t", "s", "image", "c", "l", "somewhere", "hit@1")
    positional = TaskSpec("t", "s", "image", "c", "l", "local", "hit@1", ("CG",))
    assert positional.groups == ("CG",) and positional.data_name == "t"


def test_folders_are_vlm2vecs_table_of_local_paths():
    """Every MMEB-V2 task reads (folder, subset, split) of VLM2Vec's dataset_hflocal_path.py
    (copied verbatim in tests/fixtures/real_layouts.py) and its eval configs' frame_root."""
    from tests.fixtures.real_layouts import FRAME_FOLDERS, LOCAL_PATHS, MVBENCH_SUBSETS

    for s in MMEB_TASKS:
        folder, subset, split = LOCAL_PATHS[s.data_name]
        assert (s.folder, s.split) == (folder, split), s.name
        if s.name == "MVBench":  # no subset in the table: its subsets are read one by one
            assert list(s.subsets) == MVBENCH_SUBSETS
        else:
            assert s.subsets == ((subset,) if subset else ()), s.name
        if s.modality == "video":
            assert s.frames == f"video-tasks/frames/{FRAME_FOLDERS[s.data_name]}", s.name
        assert s.hf_repo and not s.language
    v2 = [s for s in MMEB_TASKS if s.category == "VDRv2"]
    assert [s.folder for s in v2] == [
        "visdoc-tasks/esg_reports_human_labeled_v2",
        "visdoc-tasks/biomedical_lectures_v2",
        "visdoc-tasks/economics_reports_v2",
        "visdoc-tasks/esg_reports_v2",
    ]
    assert get_task("mmeb", "ViDoSeek-page-fixed").hf_repo == "VLM2Vec/ViDoSeek-page-fixed"
    assert get_task("mmeb", "YouCook2").hf_repo == "lmms-lab/YouCook2"
    assert all(s.folder == s.name and s.hf_repo == "Alibaba-NLP/UVRB" for s in UVRB_TASKS)
