"""Training-source loaders on fixtures that copy the real layouts (tests/fixtures/train_sources.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from ume.config import RealSourcesConfig, SourceDatasetConfig
from ume.data.sources import (
    MMEB_TRAIN_SUBSETS,
    SOURCE_DATASETS,
    load_source,
    load_sources,
    sample_frame_files,
)
from ume.errors import ConfigError, DataError
from ume.items import PAIR_COLUMNS, check_pairs_frame

try:
    from tests.fixtures import train_sources as fx
except ModuleNotFoundError:  # pytest started without the repo root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.fixtures import train_sources as fx

pytestmark = pytest.mark.unit

EXPECTED = {  # dataset: (task modality, query side, positive side)
    "ImageNet_1K": ("image", "image", "text"),
    "OK-VQA": ("image", "image", "text"),
    "MSCOCO_t2i": ("image", "text", "image"),
    "NIGHTS": ("image", "image", "image"),
    "llavahound_caption_retrieval": ("video", "video", "text"),
    "llavahound_qa": ("video", "video", "text"),
    "llavahound_video_retrieval": ("video", "text", "video"),
    "ViDoRe": ("visdoc", "text", "document"),
    "VisRAG": ("visdoc", "text", "document"),
}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> RealSourcesConfig:
    return fx.write_all(tmp_path_factory.mktemp("sources"))


def _with(real: RealSourcesConfig, **datasets: SourceDatasetConfig) -> RealSourcesConfig:
    return real.model_copy(update={"datasets": datasets})


def _files(root: str | Path) -> set[str]:
    return {str(p) for p in Path(root).rglob("*")}


# --------------------------------------------------------------------------- registry
def test_registry_covers_the_paper_sources():
    assert len(MMEB_TRAIN_SUBSETS) == 20
    for name in MMEB_TRAIN_SUBSETS:
        assert SOURCE_DATASETS[name] == ("mmeb_train", "image", name)
    kinds = {spec.kind for spec in SOURCE_DATASETS.values()}
    assert kinds == {
        "mmeb_train",
        "llava_hound_caption",
        "llava_hound_qa",
        "llava_hound_video_ret",
        "vidore",
        "visrag",
    }
    assert {spec.modality for spec in SOURCE_DATASETS.values()} == {"image", "video", "visdoc"}


# --------------------------------------------------------------------------- every kind loads
@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_kind_loads_into_the_pair_format(name, real, tmp_path):
    res = load_source(name, real, extract_dir=tmp_path / "pages")
    df = res.df
    check_pairs_frame(df, name)
    assert list(df.columns) == list(PAIR_COLUMNS)
    assert len(df) == res.total_before_cap > 0 and res.skipped == []
    task, qry, pos = EXPECTED[name]
    assert set(df["modality"]) == {task} and set(df["dataset"]) == {name}
    assert set(df["qry_modality"]) == {qry} and set(df["pos_modality"]) == {pos}
    assert df["pair_id"].str.startswith(f"{name}:").all()
    for side, modality in (("qry", qry), ("pos", pos)):
        for _, row in df.iterrows():
            paths = [row[f"{side}_image"]] if row[f"{side}_image"] else []
            paths += list(row[f"{side}_frames"])
            if modality in ("image", "document"):
                assert len(paths) == 1
            elif modality == "video":
                assert 1 <= len(paths) <= 8
            else:
                assert paths == [] and row[f"{side}_text"]
            for p in paths:
                assert os.path.isabs(p) and os.path.isfile(p), p
            assert "<|image_1|>" not in row[f"{side}_text"]
            assert "<video>" not in row[f"{side}_text"] + row[f"{side}_inst"]


def test_mmeb_rows_keep_text_and_resolve_images_against_the_image_root(real, tmp_path):
    df = load_source("NIGHTS", real).df
    row = df.iloc[3]
    assert row["qry_text"] == "Find a day-to-day image that looks similar to the provided image."
    assert row["pos_text"] == "Represent the given image."
    assert row["qry_image"] == os.path.join(
        real.mmeb_train_root, "images/NIGHTS/Train/ref_003_002.jpg"
    )
    # a separate image root (mmeb_train_image_root) is honoured
    moved = tmp_path / "imgs"
    os.symlink(real.mmeb_train_root, moved)
    other = real.model_copy(update={"mmeb_train_image_root": str(moved)})
    assert load_source("NIGHTS", other).df.iloc[3]["qry_image"].startswith(str(moved))
    # only the 'original' split is read (diverse_instruction holds 1 row beside it)
    assert load_source("OK-VQA", real).total_before_cap == 6


def test_llava_hound_frames_and_texts(real):
    cap = load_source("llavahound_caption_retrieval", real).df
    frames = list(cap.iloc[0]["qry_frames"])
    names = [Path(p).name for p in frames]
    # 12 frames c01_0001, c01_0022, ... -> 8 spread uniformly, in natural order
    assert names == [f"c01_{1 + 21 * f:04d}.jpeg" for f in (0, 1, 3, 4, 6, 7, 9, 11)]
    assert len(cap.iloc[-1]["qry_frames"]) == 4  # a video with fewer frames keeps them all
    assert cap.iloc[0]["qry_inst"] == fx.CAPTION_PROMPTS[0]
    assert cap.iloc[0]["pos_text"].startswith("The video opens with scene 0")
    qa = load_source("llavahound_qa", real, num_frames=3).df
    assert qa.iloc[1]["qry_text"] == "What happens in part 1 of the video?"
    assert all(len(f) == 3 for f in qa["qry_frames"])
    vr = load_source("llavahound_video_retrieval", real).df
    assert vr.iloc[2]["qry_text"] == cap.iloc[2]["pos_text"]
    assert list(vr.iloc[2]["pos_frames"]) == list(cap.iloc[2]["qry_frames"])


def test_sample_frame_files_is_natural_and_uniform():
    names = [f"frame_{i}.jpg" for i in (10, 2, 1, 3)]
    assert sample_frame_files(names, 8) == [
        "frame_1.jpg",
        "frame_2.jpg",
        "frame_3.jpg",
        "frame_10.jpg",
    ]
    assert sample_frame_files([f"{i}.png" for i in range(64)], 8) == [
        f"{i}.png" for i in (0, 9, 18, 27, 36, 45, 54, 63)
    ]


def test_document_pages_are_extracted_outside_the_read_only_root(real, tmp_path):
    before = _files(real.vidore_root) | _files(real.visrag_root)
    res = load_source("ViDoRe", real, extract_dir=tmp_path / "pages")
    assert res.total_before_cap == 6  # two train shards; the test shard is not read
    pages = list(res.df["pos_image"])
    assert len(set(pages)) == 6
    for p in pages:
        assert p.startswith(str(tmp_path / "pages" / "ViDoRe")) and p.endswith(".png")
        with Image.open(p) as im:
            assert im.size == (8, 6)
    assert res.df.iloc[0]["qry_text"] == "What is the total amount on invoice 0?"
    assert (
        load_source("VisRAG", real, extract_dir=tmp_path / "pages")
        .df.iloc[0]["pos_image"]
        .endswith(".jpg")
    )
    assert _files(real.vidore_root) | _files(real.visrag_root) == before
    # a second run reuses the extracted files (content-addressed) and leaves no temporaries
    again = load_source("ViDoRe", real, extract_dir=tmp_path / "pages")
    assert list(again.df["pos_image"]) == pages
    assert not [p for p in _files(tmp_path / "pages") if ".tmp-" in p]
    with pytest.raises(ValueError, match="extract_dir"):
        load_source("VisRAG", real)


# --------------------------------------------------------------------------- caps and weights
def test_caps_and_weights_come_from_config(real):
    cfg = _with(
        real,
        llavahound_qa=SourceDatasetConfig(weight=4.38, cap=4),
        NIGHTS=SourceDatasetConfig(weight=0.23, cap=100),
    )
    res = load_source("llavahound_qa", cfg)
    assert (res.weight, res.cap, res.total_before_cap, res.kept) == (4.38, 4, 10, 4)
    ids = [int(p.split(":")[1]) for p in res.df["pair_id"]]
    assert ids == sorted(ids) and len(set(ids)) == 4  # source order, no duplicates
    full = load_source("NIGHTS", cfg)
    assert (full.weight, full.cap, full.kept) == (0.23, 100, 6)
    # a dataset not listed in data.real.datasets gets the defaults
    dflt = load_source("OK-VQA", cfg)
    assert (dflt.weight, dflt.cap) == (1.0, None)
    empty = load_source("NIGHTS", _with(real, NIGHTS=SourceDatasetConfig(cap=0))).df
    assert len(empty) == 0 and list(empty.columns) == list(PAIR_COLUMNS)


def test_cap_sampling_is_deterministic_and_seeded(real):
    cfg = _with(real, llavahound_qa=SourceDatasetConfig(cap=4))

    def pick(seed):
        return tuple(load_source("llavahound_qa", cfg, seed=seed).df["pair_id"])

    assert pick(0) == pick(0)
    assert len({pick(s) for s in range(6)}) > 1


def test_load_sources_concatenates_and_reports_stats(real, tmp_path):
    cfg = _with(
        real,
        ImageNet_1K=SourceDatasetConfig(weight=2.25, cap=3),
        llavahound_video_retrieval=SourceDatasetConfig(weight=5.76),
        VisRAG=SourceDatasetConfig(weight=6.0, cap=2),
    )
    df, stats = load_sources(cfg, extract_dir=tmp_path / "pages", on_bad_item="skip", seed=1)
    check_pairs_frame(df, "all")
    assert df["dataset"].value_counts().to_dict() == {
        "llavahound_video_retrieval": 5,
        "ImageNet_1K": 3,
        "VisRAG": 2,
    }
    assert stats["ImageNet_1K"] == {
        "weight": 2.25,
        "cap": 3,
        "total_before_cap": 6,
        "kept": 3,
        "skipped": 0,
        "skipped_items": [],
    }
    assert stats["VisRAG"]["total_before_cap"] == 5 and stats["VisRAG"]["kept"] == 2


# --------------------------------------------------------------------------- config errors
def test_unknown_dataset_names_the_key_and_the_known_names(real, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.real\.datasets\.ImageNet-1K") as e:
        load_source("ImageNet-1K", real)
    assert "ImageNet_1K" in str(e.value) and "llavahound_qa" in str(e.value)
    with pytest.raises(ConfigError, match=r"data\.real\.datasets\.COCO"):
        load_sources(
            _with(real, NIGHTS=SourceDatasetConfig(), COCO=SourceDatasetConfig()),
            extract_dir=tmp_path,
        )
    with pytest.raises(ConfigError, match=r"data\.real\.datasets is empty"):
        load_sources(_with(real), extract_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ImageNet_1K", "mmeb_train_root"),
        ("llavahound_qa", "llava_hound_root"),
        ("ViDoRe", "vidore_root"),
        ("VisRAG", "visrag_root"),
    ],
)
def test_missing_root_names_the_key(name, key, real, tmp_path):
    unset = real.model_copy(update={key: None})
    with pytest.raises(ConfigError, match=rf"data\.real\.{key} is not set; set it to a local copy"):
        load_source(name, unset, extract_dir=tmp_path)
    gone = real.model_copy(update={key: str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match=rf"data\.real\.{key} = .*nowhere.*no such folder"):
        load_source(name, gone, extract_dir=tmp_path)


def test_bad_config_values(real):
    with pytest.raises(ConfigError, match=r"data\.on_bad_item"):
        load_source("NIGHTS", real, on_bad_item="ignore")
    with pytest.raises(ConfigError, match=r"data\.real\.datasets\.NIGHTS\.cap"):
        load_source("NIGHTS", _with(real, NIGHTS=SourceDatasetConfig.model_construct(cap=-1)))
    with pytest.raises(ConfigError, match=r"data\.real\.mmeb_train_image_root"):
        load_source("NIGHTS", real.model_copy(update={"mmeb_train_image_root": "/no/such/dir"}))


# --------------------------------------------------------------------------- bad items
@pytest.fixture
def mmeb(tmp_path) -> RealSourcesConfig:
    return RealSourcesConfig(mmeb_train_root=str(fx.write_mmeb_train(tmp_path / "m", ("NIGHTS",))))


def test_corrupt_image_is_an_error_naming_file_and_row_or_is_skipped(mmeb):
    bad = Path(mmeb.mmeb_train_root) / "images/NIGHTS/Train/distort_002_002_0.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    parquet = Path(mmeb.mmeb_train_root) / "NIGHTS" / "original-00000-of-00001.parquet"
    with pytest.raises(DataError) as e:
        load_source("NIGHTS", mmeb)
    msg = str(e.value)
    assert str(parquet) in msg and "row 2" in msg and str(bad) in msg
    assert "corrupt image" in msg and "data.on_bad_item: skip" in msg
    res = load_source("NIGHTS", mmeb, on_bad_item="skip")
    assert res.kept == 5 and res.total_before_cap == 6
    # the skipped-record convention of every stage (ume.pair_table.SKIP_FIELDS), 0-based row
    assert res.skipped == [
        {
            "file": str(parquet),
            "row": 2,
            "pair_id": "NIGHTS:2",
            "column": None,
            "reason": res.skipped[0]["reason"],
        }
    ]
    assert "NIGHTS:2" not in set(res.df["pair_id"])
    # a cap refills from the remaining rows: still `cap` good pairs when enough exist
    capped = _with(mmeb, NIGHTS=SourceDatasetConfig(cap=5))
    for seed in range(4):
        assert load_source("NIGHTS", capped, on_bad_item="skip", seed=seed).kept == 5
    # verify_images=False trusts the files (existence is still checked)
    assert load_source("NIGHTS", mmeb, verify_images=False).kept == 6


def test_missing_image_says_what_to_do(mmeb):
    (Path(mmeb.mmeb_train_root) / "images/NIGHTS/Train/ref_004_002.jpg").unlink()
    with pytest.raises(
        DataError,
        match=r"row 4 \(0-based parquet row\): image .*ref_004_002.jpg not found; unzip images_zip/NIGHTS.zip",
    ):
        load_source("NIGHTS", mmeb)
    assert load_source("NIGHTS", mmeb, on_bad_item="skip").skipped[0]["row"] == 4


def test_malformed_mmeb_rows_and_files(mmeb, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = Path(mmeb.mmeb_train_root) / "NIGHTS" / "original-00000-of-00001.parquet"
    table = pq.read_table(parquet)
    rows = table.to_pylist()
    rows[1] |= {"qry": "<|image_1|>\n", "qry_image_path": None}  # nothing left once unmarked
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), parquet)
    with pytest.raises(
        DataError, match=r"row 1 \(0-based parquet row\): malformed row: empty query"
    ):
        load_source("NIGHTS", mmeb, verify_images=False)
    pq.write_table(table.drop(["pos_text"]), parquet)
    with pytest.raises(DataError, match=r"missing columns \['pos_text'\]"):
        load_source("NIGHTS", mmeb)
    parquet.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"original-00000-of-00001.parquet: not a readable parquet"):
        load_source("NIGHTS", mmeb)
    parquet.unlink()
    (parquet.parent / "diverse_instruction-00000-of-00001.parquet").unlink()
    with pytest.raises(DataError, match=r"no MMEB-train parquet for subset NIGHTS"):
        load_source("NIGHTS", mmeb)


@pytest.fixture
def hound(tmp_path) -> RealSourcesConfig:
    return RealSourcesConfig(llava_hound_root=str(fx.write_llava_hound(tmp_path / "h", n=4)))


def test_missing_frame_folder_is_an_error_or_skipped(hound):
    import shutil

    root = Path(hound.llava_hound_root)
    vid = fx.video_ids(4)[1]
    shutil.rmtree(root / "train_300k" / vid)
    jsonl = root / "video_instruction/train/sft/video_caption_300k.jsonl"
    with pytest.raises(DataError) as e:
        load_source("llavahound_caption_retrieval", hound)
    msg = str(e.value)
    assert (
        str(jsonl) in msg
        and "line 2" in msg
        and f"frame folder {root}/train_300k/{vid} missing" in msg
    )
    assert "chunk_*.tar.gz" in msg
    res = load_source("llavahound_qa", hound, on_bad_item="skip")
    assert res.total_before_cap == 8 and res.kept == 6
    assert [s["line"] for s in res.skipped] == [3, 4]  # both QA lines of that video (1-based)


def test_corrupt_frame_and_malformed_jsonl_lines(hound):
    root = Path(hound.llava_hound_root)
    jsonl = root / "video_instruction/train/sft/video_caption_300k.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[2] = lines[2][:30]  # truncated JSON
    lines.insert(1, "")  # blank lines are not rows
    lines.append('{"id": "x", "video": "x", "conversations": "not a list"}')
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        DataError, match=r"video_caption_300k.jsonl: line 4: malformed row: not valid JSON"
    ):
        load_source("llavahound_caption_retrieval", hound)
    res = load_source("llavahound_video_retrieval", hound, on_bad_item="skip")
    assert res.total_before_cap == 5 and res.kept == 3
    assert [(s["line"], s["reason"].split(":")[0]) for s in res.skipped] == [
        (4, "malformed row"),
        (6, "malformed row"),
    ]
    frame = root / "train_300k" / fx.video_ids(4)[0] / "c01_0001.jpeg"
    frame.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"line 1: corrupt image .*c01_0001.jpeg"):
        load_source("llavahound_qa", hound)


@pytest.mark.parametrize("name", ["ViDoRe", "VisRAG"])
def test_malformed_document_rows(name, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if name == "ViDoRe":
        real = RealSourcesConfig(vidore_root=str(fx.write_vidore(tmp_path / "d", n=4, shards=1)))
        parquet = tmp_path / "d/data/train-00000-of-00001.parquet"
    else:
        real = RealSourcesConfig(visrag_root=str(fx.write_visrag(tmp_path / "d", n=4)))
        parquet = tmp_path / "d/data/train-00000-of-00001.parquet"
    table = pq.read_table(parquet)
    images = table.column("image").to_pylist()
    images[1] = {"bytes": b"garbage", "path": None}
    images[3] = {"bytes": None, "path": "page.png"}
    col = table.schema.get_field_index("image")
    pq.write_table(table.set_column(col, "image", pa.array(images, fx.IMAGE_STRUCT)), parquet)
    with pytest.raises(
        DataError, match=rf"{parquet}: row 1 \(0-based parquet row\): corrupt image bytes"
    ):
        load_source(name, real, extract_dir=tmp_path / "x")
    res = load_source(name, real, extract_dir=tmp_path / "x", on_bad_item="skip")
    assert res.kept == 2
    assert [(s["row"], s["reason"]) for s in res.skipped][1] == (
        3,
        "malformed row: 'image' holds no bytes",
    )
    (tmp_path / "d/data").rename(tmp_path / "d/elsewhere")
    with pytest.raises(DataError, match=r"no data/train-\*.parquet found"):
        load_source(name, real, extract_dir=tmp_path / "x")


def test_paper_sources_snippet_loads_into_the_config():
    import yaml

    from ume.config import config_from_dict

    snippet = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "ume/data/paper_sources.yaml").read_text()
    )
    cfg = config_from_dict({"data": {"real": {"datasets": snippet}}})
    datasets = cfg.data.real.datasets
    assert set(datasets) <= set(SOURCE_DATASETS)
    # the three few-class sets are left out of contrastive training (method.md)
    assert not {"HatefulMemes", "N24News", "VOC2007"} & set(datasets)
    assert len(datasets) == 22
    caps = {"image": 50_000, "video": 300_000, "visdoc": 100_000}
    for name, d in datasets.items():
        assert d.cap == caps[SOURCE_DATASETS[name].modality], name
        assert d.weight > 0
