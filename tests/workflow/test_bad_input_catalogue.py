"""The bad-input catalogue (issue 14): each fault injected into a tiny run, one at a time.

Every case runs the stage that meets the fault through its command line (``python -m ume
<stage>``, called in-process: same parser, same exit status) on a copy of ONE prepared tiny
run, and asserts the message (file, 0-based parquet row, column, the config key that governs
it), the exit status, the manifest counts when the fault is skipped, and that nothing
downstream of the fault was written or changed.

Faults: malformed training rows at every stage that reads them, and in what prepare_pairs
writes; a corrupt benchmark image (the message names eval.on_bad_item); out-of-range config
values; a read-only results folder, a full one, a read-only cache; a run folder moved after
prepare_pairs. The kill-and-rerun recovery of scripts/run.sh is in test_recovery.py (it runs
Snakemake).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.fixtures.tiny_run import tiny_run
from ume import cli
from ume.io import write_json

pytestmark = pytest.mark.workflow

#: The prepared run: a small benchmark, one evaluation variant without a Reasoner (raw).
TINY = {
    "data": {"synthetic": {"eval_queries": 4, "eval_candidates": 4, "eval_corpus": 8}},
    "eval": {"variants": ["raw"]},
}
TABLES = {
    "pairs": "data/pairs.parquet",
    "tcot": "annotate/tcot.parquet",
    "filtered": "filter/filtered.parquet",
    "contrastive": "split/contrastive.parquet",
    "rl": "split/rl.parquet",
}
ROW_KEY = "data.on_bad_item"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One tiny run (base models, data stages, synthetic benchmark), built once."""
    return tiny_run(tmp_path_factory.mktemp("prepared"), overrides=TINY, benchmark=True)


@pytest.fixture
def run(prepared, tmp_path):
    """A copy of the prepared run's data stages (media included: copying a run folder works
    because its tables store media paths relative to it); the models and the benchmark are
    shared (symlinks) and never written by a case."""
    root = tmp_path / "run"
    for part in ("data", "annotate", "filter", "split"):
        shutil.copytree(prepared.root / part, root / part)
    (root / "models").symlink_to(prepared.root / "models")
    return SimpleNamespace(root=root, prepared=prepared, config=config(root, prepared.cfg))


def config(root: Path, cfg, overrides: dict | None = None, name: str = "config.json") -> Path:
    from ume.config import config_from_dict, deep_merge

    return write_json(
        root / name, config_from_dict(deep_merge(cfg.to_dict(), overrides or {})).to_dict()
    )


def ume(capsys, *argv) -> tuple[int, str]:
    """``python -m ume ...`` in-process: (exit status, stderr)."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``root`` (symlinked folders are not followed)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            st = (Path(dirpath) / f).stat()
            out[str((Path(dirpath) / f).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def manifest(root: Path, folder: str) -> dict:
    return json.loads((root / folder / "manifest.json").read_text())


# --------------------------------------------------------------------------- stage commands
TRAIN_OUT = {"train-embedder": "models/embedder", "sft": "models/reasoner-sft",
             "egrl": "models/reasoner-rl"}  # fmt: skip


def command(stage: str, root: Path, cfg_file: Path) -> list:
    """The stage's command line, as its rule writes it."""
    base = root / "models/base"
    t = {k: root / v for k, v in TABLES.items()}
    args = {
        "annotate": ["--pairs", t["pairs"], "--out", t["tcot"]],
        "filter": ["--tcot", t["tcot"], "--out", t["filtered"]],
        "split": ["--filtered", t["filtered"], "--contrastive", t["contrastive"], "--rl", t["rl"]],
        "train-embedder": ["--contrastive", t["contrastive"],
                           "--embedder", base / "embedder/backbone.json",
                           "--datasets", root / "data/datasets.json",
                           "--out", root / TRAIN_OUT["train-embedder"]],
        "sft": ["--pairs", t["contrastive"], "--reasoner", base / "reasoner/backbone.json",
                "--out", root / TRAIN_OUT["sft"]],
        "egrl": ["--rl", t["rl"], "--reasoner", base / "reasoner/backbone.json",
                 "--embedder", base / "embedder/backbone.json",
                 "--discriminator", base / "discriminator/backbone.json",
                 "--out", root / TRAIN_OUT["egrl"]],
    }[stage]  # fmt: skip
    return [stage, "--config", cfg_file, *args]


# --------------------------------------------------------------------------- row faults
def fault_row(df: pd.DataFrame, column: str) -> int:
    """A row (not the first, where there is another) where ``column`` holds what the fault
    breaks: an image for ``*_image``, frames for ``*_frames``."""
    side = column.split("_")[0]
    ok = pd.Series(True, index=df.index)
    if column.endswith("_image"):
        ok = df[f"{side}_modality"].isin(["image", "document"])
    elif column.endswith("_frames"):
        ok = df[f"{side}_modality"] == "video"
    rows = [int(i) for i in ok.to_numpy().nonzero()[0]]
    return rows[1] if len(rows) > 1 else rows[0]


def first_use(df: pd.DataFrame, rel: str) -> tuple[int, str]:
    """(row, column) where the checker first meets the media file ``rel``."""
    for i, rec in enumerate(df.to_dict("records")):
        for side in ("qry", "pos"):
            if rec[f"{side}_image"] == rel:
                return i, f"{side}_image"
            if rel in list(rec[f"{side}_frames"]):
                return i, f"{side}_frames"
    raise AssertionError(rel)


def inject(root: Path, table: str, column: str, fault: str) -> tuple[int, str, str, str]:
    """Break ``column`` of one row of ``table``: (row, column, pair_id, words of the reason)."""
    path = root / TABLES[table]
    df = pd.read_parquet(path)  # as stored: media paths relative to the run folder
    row = fault_row(df, column)
    pid = str(df.loc[row, "pair_id"])
    if fault in ("delete", "corrupt"):
        value = df.loc[row, column]
        rel = value if isinstance(value, str) else list(value)[-1]
        media = root / rel
        if fault == "delete":
            media.unlink()
        else:
            media.write_bytes(b"not an image")
        row, column = first_use(df, rel)
        pid = str(df.loc[row, "pair_id"])
        return row, column, pid, "not found" if fault == "delete" else "does not open as an image"
    df[column] = df[column].astype(object)
    words = "is null"
    if fault == "null":
        df.at[row, column] = None
    elif fault == "nan":
        df.at[row, column] = float("nan")
    elif fault == "duplicate":
        df.at[row, column] = pid = str(df.loc[0, column])
        words = "repeats row 0"
    else:  # a value of the wrong kind
        df.at[row, column] = fault
        words = f"{fault!r} is not one of"
    df.to_parquet(path, index=False)
    return row, column, pid, words


#: (stage, table it reads, column, fault): every stage that reads rows, every kind of fault.
ROW_FAULTS = [
    ("annotate", "pairs", "qry_image", "null"),  # the issue's null qry_image
    ("annotate", "pairs", "qry_text", "nan"),
    ("annotate", "pairs", "pos_image", "delete"),
    ("annotate", "pairs", "qry_image", "corrupt"),
    ("annotate", "pairs", "pos_frames", "null"),
    ("annotate", "pairs", "pos_modality", "audio"),
    ("annotate", "pairs", "pair_id", "duplicate"),
    ("filter", "tcot", "qry_tcot", "null"),
    ("split", "filtered", "relevant", "null"),
    ("train-embedder", "contrastive", "pos_tcot", "null"),
    ("sft", "contrastive", "qry_image", "null"),  # where the issue's row finally crashed
    ("egrl", "rl", "pos_frames", "delete"),
    ("egrl", "rl", "dataset", "null"),
]
DATA_STAGE_OUT = {"annotate": ("annotate", ["tcot"]), "filter": ("filter", ["filtered"]),
                  "split": ("split", ["contrastive", "rl"])}  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "table", "column", "fault"),
    ROW_FAULTS,
    ids=[f"{s}-{c}-{f}" for s, _, c, f in ROW_FAULTS],
)
def test_a_bad_row_stops_its_stage_naming_file_row_column_and_key(
    run, capsys, stage, table, column, fault
):
    row, col, pid, words = inject(run.root, table, column, fault)
    before = snapshot(run.root)
    rc, err = ume(capsys, *command(stage, run.root, run.config))
    assert rc == 2, err
    file = run.root / TABLES[table]
    assert f"{file}: row {row} (0-based parquet row, pair_id {pid!r}), column {col}: " in err, err
    assert words in err and f"set {ROW_KEY}: skip" in err, err
    assert snapshot(run.root) == before  # nothing written, nothing downstream changed
    if stage in TRAIN_OUT:
        assert not (run.root / TRAIN_OUT[stage]).exists()


DATA_FAULTS = [f for f in ROW_FAULTS if f[0] in DATA_STAGE_OUT]


@pytest.mark.parametrize(
    ("stage", "table", "column", "fault"),
    DATA_FAULTS,
    ids=[f"{s}-{c}-{f}" for s, _, c, f in DATA_FAULTS],
)
def test_with_skip_a_bad_row_is_counted_and_the_next_stage_never_sees_it(
    run, capsys, stage, table, column, fault
):
    row, col, pid, words = inject(run.root, table, column, fault)
    n_in = len(pd.read_parquet(run.root / TABLES[table]))
    skip = config(run.root, run.prepared.cfg, {"data": {"on_bad_item": "skip"}}, "skip.json")
    rc, err = ume(capsys, *command(stage, run.root, skip))
    assert rc == 0, err
    folder, outs = DATA_STAGE_OUT[stage]
    bad = manifest(run.root, folder)["bad_rows"]
    assert bad["skipped"] == 1 and bad["key"] == ROW_KEY and bad["policy"] == "skip"
    (rec,) = bad["rows"]
    assert rec["file"] == str(run.root / TABLES[table])
    assert (rec["row"], rec["column"], rec["pair_id"]) == (row, col, pid)
    assert words in rec["reason"]
    assert manifest(run.root, folder)["rows_read"] == n_in
    for out in outs:
        assert pid not in set(pd.read_parquet(run.root / TABLES[out])["pair_id"]) or (
            column == "pair_id"  # a duplicate id: its first (good) row stays
        )
    if stage != "split":
        assert len(pd.read_parquet(run.root / TABLES[outs[0]])) == n_in - 1


def test_the_issues_null_image_never_reaches_training_with_skip(run, capsys):
    """The issue's path end to end: a null qry_image in pairs.parquet under skip is left out by
    annotation, counted once, and no later table holds the pair."""
    _, _, pid, _ = inject(run.root, "pairs", "qry_image", "null")
    skip = config(run.root, run.prepared.cfg, {"data": {"on_bad_item": "skip"}}, "skip.json")
    for stage in ("annotate", "filter", "split"):
        rc, err = ume(capsys, *command(stage, run.root, skip))
        assert rc == 0, err
    assert manifest(run.root, "annotate")["bad_rows"]["skipped"] == 1
    assert manifest(run.root, "filter")["bad_rows"]["skipped"] == 0
    assert manifest(run.root, "split")["bad_rows"]["skipped"] == 0
    for t in ("tcot", "filtered", "contrastive", "rl"):
        assert pid not in set(pd.read_parquet(run.root / TABLES[t])["pair_id"])


def test_prepare_pairs_checks_what_it_writes(prepared, tmp_path, capsys, monkeypatch):
    from ume.data import synthetic_pairs

    original = synthetic_pairs.write_training_pairs

    def with_a_bad_row(cfg, root):
        df = original(cfg, root)
        df.at[3, "qry_image"] = None  # a generator bug, say
        return df

    monkeypatch.setattr(synthetic_pairs, "write_training_pairs", with_a_bad_row)
    out = tmp_path / "run/data"
    rc, err = ume(capsys, "data", "--config", prepared.config, "--out", out)
    assert rc == 2
    assert f"{out / 'pairs.parquet'} (as prepared): row 3 (0-based parquet row" in err
    assert "column qry_image: is null" in err and f"set {ROW_KEY}: skip" in err
    assert not any((out / f).exists() for f in ("pairs.parquet", "datasets.json", "manifest.json"))

    skip = config(tmp_path, prepared.cfg, {"data": {"on_bad_item": "skip"}}, "skip.json")
    rc, err = ume(capsys, "data", "--config", skip, "--out", out)
    assert rc == 0, err
    bad = manifest(out.parent, "data")["bad_rows"]
    assert bad["skipped"] == 1 and bad["rows"][0]["row"] == 3
    pairs = pd.read_parquet(out / "pairs.parquet")
    pid = bad["rows"][0]["pair_id"]
    assert pid not in set(pairs["pair_id"])
    kept = json.loads((out / "datasets.json").read_text())[pid.split(":")[0]]["kept"]
    assert kept == prepared.cfg.data.synthetic.train_pairs_per_dataset - 1


# --------------------------------------------------------------------------- evaluation
def eval_command(run, cfg_file: Path, bench: Path, cache: Path | str) -> list:
    return ["eval", "--config", cfg_file, "--suite", "synth", "--task", "SynthCLS",
            "--out-dir", run.root / "eval", "--root", bench,
            "--embedder", run.root / "models/base/embedder/backbone.json",
            "--cache-dir", cache]  # fmt: skip


def test_a_corrupt_benchmark_image_names_eval_on_bad_item(run, capsys):
    bench = run.root / "bench"
    shutil.copytree(run.prepared.bench, bench)
    image = bench / "mmeb/image-tasks/SynthCLS/q0001.png"
    image.write_bytes(b"not an image")
    table = bench / "mmeb/MMEB_Test_Instruct/SynthCLS/test-00000-of-00001.parquet"
    rc, err = ume(capsys, *eval_command(run, run.config, bench, run.root / "cache"))
    assert rc == 2
    assert f"{table}: row 1" in err and str(image) in err
    assert "eval.on_bad_item: skip" in err and "data.on_bad_item" not in err
    assert not (run.root / "eval").exists()

    skip = config(run.root, run.prepared.cfg, {"eval": {"on_bad_item": "skip"}}, "skip.json")
    rc, err = ume(capsys, *eval_command(run, skip, bench, run.root / "cache"))
    assert rc == 0, err
    score = json.loads((run.root / "eval/raw/synth/SynthCLS.score.json").read_text())
    assert score["num_skipped"] == 1 and score["skipped"][0]["row"] == 1


# --------------------------------------------------------------------------- config values
#: The issue's values that passed validation and crashed later (item 3).
BAD_VALUES = [
    ("sft:\n  batch_size: -2\n", "sft.batch_size"),
    ("annotate:\n  hf:\n    batch_size: 0\n", "annotate.hf.batch_size"),
    ("train_embedder:\n  lora:\n    r: 0\n", "train_embedder.lora.r"),
    ("egrl:\n  embed_batch_size: 0\n", "egrl.embed_batch_size"),
    ("egrl:\n  discriminator_batch_size: -1\n", "egrl.discriminator_batch_size"),
    ("annotate:\n  server:\n    timeout_s: 0\n", "annotate.server.timeout_s"),
    ("eval:\n  server:\n    concurrency: 0\n", "eval.server.concurrency"),
    ("egrl:\n  embedder_server:\n    max_retries: -1\n", "egrl.embedder_server.max_retries"),
    ("budgets:\n  image_min_tokens: 0\n", "budgets.image_min_tokens"),
    ("sft:\n  max_steps: 0\n", "sft.max_steps"),
    ("annotate:\n  backend: server\n  server:\n    model: m\n", "annotate.server.url"),
]


@pytest.mark.parametrize(("yaml", "key"), BAD_VALUES, ids=[k for _, k in BAD_VALUES])
def test_an_out_of_range_value_is_refused_at_validation_naming_the_key(
    repo, tmp_path, capsys, yaml, key
):
    (tmp_path / "bad.yaml").write_text(yaml)
    rc, err = ume(
        capsys, "validate", "--config", repo / "config/config.yaml", tmp_path / "bad.yaml"
    )
    assert rc == 2 and f"{key}:" in err, err


# --------------------------------------------------------------------------- storage
def no_temporaries(folder: Path) -> bool:
    return not any(".tmp-" in p.name for p in folder.rglob("*"))


def test_a_read_only_results_folder_is_named_with_results_dir(prepared, capsys):
    # /sys refuses writes even to root (chmod would not: the tests run as root)
    out = Path("/sys/ume-catalogue/results/run/data")
    rc, err = ume(capsys, "data", "--config", prepared.config, "--out", out)
    assert rc == 2
    assert "/sys/ume-catalogue" in err and "set results_dir" in err and "Traceback" not in err
    assert not Path("/sys/ume-catalogue").exists()


@pytest.fixture
def full_disk_under(monkeypatch):
    """Writes under the folders given get ENOSPC from the kernel: their temporary file is a
    link to /dev/full (what a full disk does to the stage's own write)."""
    folders: list[Path] = []
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        fd, name = real(*a, dir=dir, **k)
        if any(Path(name).is_relative_to(f) for f in folders):
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            fd = os.open(name, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folders.append


def test_a_full_results_disk_leaves_nothing_half_written(run, capsys, full_disk_under):
    full_disk_under(run.root / "split")
    before = snapshot(run.root)
    rc, err = ume(capsys, *command("split", run.root, run.config))
    assert rc == 2
    assert f"the folder {run.root / 'split'} is on a full disk" in err and "set results_dir" in err
    assert snapshot(run.root) == before and no_temporaries(run.root / "split")


def test_a_read_only_cache_is_named_with_eval_cache_dir(run, capsys):
    cache = Path("/sys/ume-catalogue-cache")
    rc, err = ume(capsys, *eval_command(run, run.config, run.prepared.bench, cache))
    assert rc == 2
    assert str(cache) in err and "set eval.cache_dir" in err and "Traceback" not in err
    assert not (run.root / "eval").exists()


# --------------------------------------------------------------------------- movable results
def test_a_run_folder_moved_after_prepare_pairs_continues(prepared, tmp_path, capsys):
    first = tmp_path / "first/run"
    shutil.copytree(prepared.root / "data", first / "data")
    stored = pd.read_parquet(first / TABLES["pairs"])
    media = [p for p in stored["qry_image"] if p]
    assert media and not any(os.path.isabs(p) for p in media)  # relative to the run folder
    moved = tmp_path / "elsewhere/run"
    shutil.move(first.parent, moved.parent)
    (moved / "models").symlink_to(prepared.root / "models")
    cfg_file = config(moved, prepared.cfg)
    for stage in ("annotate", "filter", "split"):
        rc, err = ume(capsys, *command(stage, moved, cfg_file))
        assert rc == 0, err
    from ume.train import reasoner_common

    rows = reasoner_common.read_rows(prepared.cfg, moved / TABLES["rl"]).df  # as training reads
    paths = [p for p in rows["pos_image"] if p] + [f for fr in rows["pos_frames"] for f in fr]
    assert paths and all(p.startswith(str(moved)) and os.path.isfile(p) for p in paths)
