"""The DAG itself: lint, dry run, a full run on the embedded default, reruns and failures."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.workflow


def with_fast(repo: Path, args: tuple[str, ...]) -> list[str]:
    """``args`` with the embedded default made small (tests/fixtures/fast.yaml) layered first:
    given config files come after it, else it is the only overlay."""
    fast = [str(repo / "config/config.yaml"), str(repo / "tests/fixtures/fast.yaml")]
    args = list(args)
    if "--configfile" in args:
        i = args.index("--configfile") + 1
        return args[:i] + fast + args[i:]
    return [*args, "--configfile", *fast]


def snakemake(repo: Path, workdir: Path, *args: str, check: bool = True):
    args = tuple(with_fast(repo, args))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(repo / "Snakefile"),
            "-d",
            str(workdir),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"snakemake {args} failed:\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}"
        )
    return res


def test_lint_is_clean(repo, tmp_path):
    res = snakemake(repo, tmp_path, "--lint")
    assert "Lints for" not in res.stdout + res.stderr


def test_dry_run_of_all_plans_every_stage(repo, tmp_path):
    res = snakemake(repo, tmp_path, "-n", "all")
    out = res.stdout + res.stderr
    for rule in (
        "stage_config",
        "base_models",
        "prepare_pairs",
        "synth_benchmark",
        "annotate_tcot",
        "relevance_filter",
        "split_data",
    ):
        assert rule in out


@pytest.mark.parametrize(
    "ablation, not_planned, egrl_reasoner",
    [
        ("no_sft", "sft_reasoner", "results/abl-no-sft/models/base/reasoner/backbone.json"),
        ("no_egrl", "egrl", None),
    ],
)
def test_a_switched_off_stage_is_not_planned(repo, tmp_path, ablation, not_planned, egrl_reasoner):
    # the stage's rule exists; the plan (ume.plan) never asks for its output
    conf = str(repo / f"config/ablations/{ablation}.yaml")
    res = snakemake(repo, tmp_path, "-n", "-p", "all", "--configfile", conf)
    out = res.stdout + res.stderr
    assert not re.search(rf"^{not_planned}\s+\d+$", out, flags=re.M)
    assert re.search(r"^eval_task\s+16$", out, flags=re.M)
    if egrl_reasoner:  # EG-RL starts from the base Reasoner
        assert f"--reasoner {egrl_reasoner} --embedder" in out


def test_bad_config_stops_before_anything_runs(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("annotate:\n  backend: gpt\n")
    res = snakemake(repo, tmp_path, "-n", "--configfile", str(bad), check=False)
    assert res.returncode != 0
    assert "annotate.backend: 'gpt' is not allowed; allowed values: 'oracle', 'hf', 'server'" in (
        res.stdout + res.stderr
    )


def test_unknown_eval_task_stops_with_its_name(repo, tmp_path):
    bad = tmp_path / "tasks.yaml"
    bad.write_text("eval:\n  tasks: [SynthT2I, NoSuchTask]\n")
    res = snakemake(repo, tmp_path, "all", "-n", "--configfile", str(bad), check=False)
    assert res.returncode != 0
    assert "eval.tasks: unknown task 'NoSuchTask'" in res.stdout + res.stderr


@pytest.fixture(scope="module")
def full_run(repo, tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    snakemake(repo, work, "all")
    return work / "results" / "default"


def test_full_run_writes_every_artifact_with_manifests(full_run):
    r = full_run
    for stage in ("models/base", "data", "annotate", "filter", "split", "bench/synth"):
        man = json.loads((r / stage / "manifest.json").read_text())
        for key in ("config", "versions", "git_commit", "host", "start", "end", "inputs"):
            assert key in man, (stage, key)
        assert man["versions"]["torch"].startswith("2.13.0")
    for log in ("base_models", "prepare_pairs", "annotate_tcot", "relevance_filter", "split_data"):
        assert (r / "logs" / f"{log}.log").exists()
        assert (r / "timings" / f"{log}.tsv").exists()
    # each stage reads (and records) only the config sections it depends on
    assert set(json.loads((r / "config/split.json").read_text())) == {"seed", "data", "split"}
    assert set(json.loads((r / "annotate/manifest.json").read_text())["config"]) == {
        "seed",
        "data",
        "models",
        "budgets",
        "annotate",
    }


def test_editing_one_stage_keys_reruns_that_stage_only(repo, full_run, tmp_path):
    work = full_run.parents[1]
    other = tmp_path / "split.yaml"
    other.write_text("split:\n  rl_per_dataset: 3\n")
    res = snakemake(repo, work, "all", "-n", "--configfile", str(other))
    out = res.stdout + res.stderr
    assert "split_data" in out
    for rule in ("prepare_pairs", "annotate_tcot", "relevance_filter", "base_models"):
        assert f"rule {rule}:" not in out


def test_full_run_data_is_consistent(full_run):
    r = full_run
    pairs = pd.read_parquet(r / "data/pairs.parquet")
    tcot = pd.read_parquet(r / "annotate/tcot.parquet")
    filt = pd.read_parquet(r / "filter/filtered.parquet")
    con = pd.read_parquet(r / "split/contrastive.parquet")
    rl = pd.read_parquet(r / "split/rl.parquet")
    assert len(pairs) == len(tcot) == len(filt) > 0
    assert {"image", "video", "visdoc"} <= set(pairs["modality"])
    assert tcot["qry_tcot"].str.contains("</answer>").all()
    man = json.loads((r / "filter/manifest.json").read_text())
    assert man["kept"] == int(filt["relevant"].sum()) and man["dropped"] > 0
    assert man["kept_per_dataset"] == filt[filt["relevant"]]["dataset"].value_counts().to_dict()
    assert len(con) + len(rl) <= man["kept"]
    assert not set(con["pair_id"]) & set(rl["pair_id"])
    assert len(rl) > 0 and len(con) > 0
    for col in ("qry_image", "pos_image"):
        for p in pairs[col]:
            assert not p or (r / p).exists()  # stored relative to the run folder


def test_tiny_models_are_saved_and_load_offline(full_run):
    from ume.models.backbone import load_backbone
    from ume.models.stage import read_backbone

    for role in ("embedder", "annotator"):
        rec = read_backbone(full_run / f"models/base/{role}/backbone.json")
        model, processor = load_backbone(rec["path"], role=role)
        assert model.config.model_type.startswith(("qwen3_vl", "qwen2_vl"))
        assert processor.tokenizer.convert_tokens_to_ids("<emb>") is not None


def test_synthetic_benchmark_loads_with_the_real_loaders(full_run):
    from ume.suites.loaders import load_task
    from ume.suites.registry import SYNTH_TASKS

    for spec in SYNTH_TASKS:
        task = load_task(spec.layout, spec.name, full_run / "bench/synth")
        assert task.queries and task.candidates and task.qrels


def test_second_run_has_nothing_to_do(repo, full_run):
    work = full_run.parents[1]
    res = snakemake(repo, work, "-n", "all")
    assert "Nothing to be done" in res.stdout + res.stderr


def test_forcerun_reruns_the_stage_and_downstream_only(repo, full_run):
    work = full_run.parents[1]
    res = snakemake(repo, work, "-n", "--forcerun", "relevance_filter", "all")
    out = res.stdout + res.stderr
    assert "relevance_filter" in out and "split_data" in out
    for upstream in ("prepare_pairs", "annotate_tcot", "base_models"):
        assert f"rule {upstream}:" not in out


def test_failed_stage_leaves_nothing_a_rerun_would_take_as_done(repo, full_run, tmp_path):
    work = full_run.parents[1]
    bad = tmp_path / "server.yaml"
    bad.write_text(
        "annotate:\n  backend: server\n  server:\n    url: http://127.0.0.1:9/v1\n"
        "    model: m\n    max_retries: 0\n    timeout_s: 2\n    max_tokens: 64\n"
    )
    res = snakemake(repo, work, "data", "--configfile", str(bad), check=False)
    assert res.returncode != 0
    log = (full_run / "logs/annotate_tcot.log").read_text()
    assert "annotate.server.url" in log
    assert not (full_run / "annotate/tcot.parquet").exists()
    assert not list((full_run / "annotate").glob(".*tmp*"))
    # back to the default config: the stage reruns and completes
    snakemake(repo, work, "data")
    assert (full_run / "annotate/tcot.parquet").exists()
