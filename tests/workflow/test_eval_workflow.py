"""The evaluation rules in the DAG: one job per task, reruns of one task, missing data, report.

Runs on the base models (eval.embedder_stage/reasoner_stage: base) and one synthetic task so
that it stays short; the full embedded default is exercised by test_workflow.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.workflow.test_workflow import snakemake

pytestmark = pytest.mark.workflow

SMALL = """
eval:
  suites: [synth, mmeb]
  tasks: [SynthCLS, MSCOCO_i2t]
  variants: [main, answer_only]
  embedder_stage: base
  reasoner_stage: base
  max_new_tokens: 80    # >= the annotated T-CoTs (checked)
  mmeb_root: null
"""


@pytest.fixture(scope="module")
def small_run(repo, tmp_path_factory) -> tuple[Path, list[str]]:
    work = tmp_path_factory.mktemp("evalwf")
    cfg = work / "small.yaml"
    cfg.write_text(SMALL)
    args = ["--configfile", str(cfg)]  # after config.yaml and tests/fixtures/fast.yaml
    snakemake(repo, work, "leaderboards", *args)
    return work, args


def test_dry_run_plans_one_eval_job_per_task(repo, tmp_path):
    res = snakemake(repo, tmp_path, "-n", "eval")
    out = res.stdout + res.stderr
    counts = re.findall(r"^eval_task\s+(\d+)$", out, flags=re.M)
    assert counts and int(counts[0]) == 16  # every synthetic task, each its own job


def test_scores_leaderboard_and_missing_task(small_run):
    work, _ = small_run
    r = work / "results/default"
    for v in ("main", "answer_only"):
        score = json.loads((r / f"eval/{v}/synth/SynthCLS.score.json").read_text())
        assert score["status"] == "ok" and score["num_pred"] == score["num_data"] > 0
        missing = json.loads((r / f"eval/{v}/mmeb/MSCOCO_i2t.score.json").read_text())
        assert missing["status"] == "missing"
    cost = json.loads((r / "eval/answer_only/synth/SynthCLS.cost.json").read_text())
    assert cost["reasoning"]["generated"] == 0 and cost["reasoning"]["cached"] > 0
    assert (r / "logs/eval/synth/SynthCLS.log").exists()
    assert (r / "timings/eval/synth/SynthCLS.tsv").exists()
    md = (r / "leaderboard/leaderboard.md").read_text()
    assert "default / main" in md and "INCOMPLETE" in md
    assert (r / "leaderboard/leaderboard.png").stat().st_size > 0
    assert (r / "leaderboard/submissions/mmeb_default_main.json").exists()


def test_one_task_reruns_alone_from_the_caches(repo, small_run):
    work, args = small_run
    target = "results/default/eval/main/synth/SynthCLS.score.json"
    (work / target).unlink()
    res = snakemake(repo, work, target, *args)
    out = res.stdout + res.stderr
    assert re.search(r"^eval_task\s+1$", out, flags=re.M)  # this task's job, no other
    assert "suite=synth, task=SynthCLS" in out and "base_models" not in out
    cost = json.loads((work / "results/default/eval/main/synth/SynthCLS.cost.json").read_text())
    assert cost["reasoning"]["generated"] == 0 and cost["encoding"]["encoded"] == 0


def test_report_builds(repo, small_run):
    work, args = small_run
    snakemake(repo, work, "leaderboards", *args)  # the rerun above made it out of date
    snakemake(repo, work, "leaderboards", "--report", str(work / "report.zip"), *args)
    assert (work / "report.zip").stat().st_size > 10_000
