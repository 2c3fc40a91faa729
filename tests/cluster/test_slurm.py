"""The slurm profile against a real (one-node, localhost) SLURM.

``snakemake --profile slurm all`` from the repository root, with the embedded default
(``--configfile config/config.yaml`` replaces the profile's paper-scale config files), so
that every launched rule goes through submitit to SLURM on this machine's CPUs. Then: one
stage rerun with ``--forcerun``, and the ways a job ends badly, each a rule failure with the
rule's name and log (never a hang: every run has a timeout).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

LAUNCHED = {
    "base_models": "models/init",
    "pretrain_tiny": "models/base",
    "annotate_tcot": "annotate",
    "relevance_filter": "filter",
}
# The tier tests the launch path, not training: poll SLURM every second, few steps, one task.
FAST = """\
launch:
  slurm:
    poll_interval_s: 1.0
train_embedder:
  max_steps: 2
sft:
  max_steps: 2
egrl:
  max_steps: 1
eval:
  tasks: [SynthI2T]
"""
SLURM_CLIENT = {"sbatch", "srun", "salloc", "squeue", "scancel", "scontrol", "sinfo", "sacct"}


def command(work: Path, *args: str, extra: str = "") -> list[str]:
    """``snakemake --profile slurm <args> --configfile config/config.yaml <fast> [<extra>]
    -d <work>``, to run from the repository root (where `--profile slurm` is found)."""
    work.mkdir(parents=True, exist_ok=True)
    files = [work / "fast.yaml"]
    files[0].write_text(FAST)
    if extra:  # a further config file, merged over the others
        files.append(work / "extra.yaml")
        files[1].write_text(extra)
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "slurm",
        *args,
        "--configfile",
        "config/config.yaml",
        "tests/fixtures/fast.yaml",  # the embedded default made small
        *map(str, files),
        "-d",
        str(work),
    ]


def snakemake(cluster, repo: Path, work: Path, *args: str, env=None, extra="", timeout=420):
    res = subprocess.run(
        command(work, *args, extra=extra),
        cwd=repo,
        env=env or cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return res.returncode, res.stdout + res.stderr


def executed_rules(out: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):$", out, flags=re.M))


@pytest.fixture(scope="module")
def full_run(slurm, repo, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm-all")
    t0 = time.monotonic()
    rc, out = snakemake(slurm, repo, work, "all")
    assert rc == 0, out[-6000:]
    print(
        f"\n[cluster] snakemake --profile slurm all: {time.monotonic() - t0:.1f}s", file=sys.stderr
    )
    return work, out


def test_profile_all_runs_launched_stages_as_slurm_jobs(slurm, full_run):
    work, out = full_run
    r = work / "results" / "default"
    assert (r / "split" / "contrastive.parquet").exists()
    assert (r / "split" / "rl.parquet").exists()
    assert LAUNCHED.keys() <= executed_rules(out)
    for rule, folder in LAUNCHED.items():
        rec = json.loads((r / folder / "job.json").read_text())
        assert rec["state"] == "COMPLETED" and rec["nodes"] == "localhost", rec
        job_id = rec["job_id"]
        assert job_id.isdigit()
        # written by the stage inside the job (SLURM env) and completed by the launcher
        job = json.loads((r / folder / "manifest.json").read_text())["job"]
        assert job["SLURM_JOB_ID"] == job_id and job["state"] == "COMPLETED"
        assert slurm.squeue("-j", job_id, "-o", "%T") == "COMPLETED"
        log = (r / "logs" / f"{rule}.log").read_text()
        assert f"submitted SLURM job {job_id}" in log and f"SLURM job {job_id} COMPLETED" in log
    # every launched rule (training and evaluation stages too) left a completed job record
    records = [json.loads(p.read_text()) for p in sorted(r.rglob("job.json"))]
    assert len(records) >= len(LAUNCHED)
    assert all(rec["state"] == "COMPLETED" for rec in records), records
    assert len({rec["job_id"] for rec in records}) == len(records)  # one job per launched rule
    print(f"\n[cluster] SLURM jobs: {len(records)}", file=sys.stderr)


def test_forcerun_reruns_one_stage_and_its_dependants_not_upstream(slurm, repo, full_run):
    work, _ = full_run
    r = work / "results" / "default"
    before = {f: json.loads((r / f / "job.json").read_text())["job_id"] for f in LAUNCHED.values()}
    pairs_mtime = (r / "data" / "pairs.parquet").stat().st_mtime
    # the README's form: a stage's target rule, and the rule to redo
    rc, out = snakemake(slurm, repo, work, "data", "--forcerun", "relevance_filter")
    assert rc == 0, out[-6000:]
    ran = executed_rules(out)
    assert {"relevance_filter", "split_data"} <= ran
    assert not ran & {"base_models", "prepare_pairs", "annotate_tcot", "synth_benchmark"}
    after = {f: json.loads((r / f / "job.json").read_text())["job_id"] for f in LAUNCHED.values()}
    assert after["filter"] != before["filter"]
    assert after["annotate"] == before["annotate"] and after["models/base"] == before["models/base"]
    assert (r / "data" / "pairs.parquet").stat().st_mtime == pairs_mtime


def test_a_failing_job_is_a_rule_failure_with_its_error_and_log(slurm, repo, tmp_path):
    bad = "models:\n  embedder:\n    source: path\n    path: /nonexistent/Qwen3-VL-2B\n"
    rc, out = snakemake(
        slurm,
        repo,
        tmp_path,
        "models",
        "--set-resources",
        "base_models:cpus_per_task=1",
        "base_models:mem_mb=2000",
        extra=bad,
    )
    assert rc != 0
    assert "Error in rule base_models" in out
    assert re.search(r"rule base_models: SLURM job \d+ ended FAILED: \S*ConfigError", out), out[
        -4000:
    ]
    assert "/nonexistent/Qwen3-VL-2B" in out and "log: results/default/logs/base_models.log" in out


def test_a_cancelled_job_is_a_rule_failure_not_a_hang(slurm, repo, tmp_path):
    slow = "launch:\n  slurm:\n    setup: ['sleep 120']\n"  # the job sits in its set-up
    proc = subprocess.Popen(
        command(tmp_path, "models", extra=slow),
        cwd=repo,
        env=slurm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job_id, deadline = "", time.monotonic() + 120
        while not job_id and time.monotonic() < deadline:
            job_id = slurm.squeue("-t", "running", "-n", "ume-base_models", "-o", "%i")
            time.sleep(0.5)
        assert job_id, "the job never started"
        subprocess.run(["scancel", job_id], check=True, env=slurm.env, timeout=30)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert f"rule base_models: SLURM job {job_id} ended CANCELLED without a result" in out
    assert "Error in rule base_models" in out and "logs/base_models.log" in out


@pytest.mark.parametrize(
    ("extra", "args", "sbatch_says"),
    [
        ("launch:\n  slurm:\n    partition: nosuch\n", (), "invalid partition specified: nosuch"),
        ("", ("--set-resources", "base_models:gpus=4"), "Invalid generic resource"),
    ],
    ids=["unknown-partition", "more-gpus-than-a-node-has"],
)
def test_a_refused_submission_is_shown_with_the_rule_name(
    slurm, repo, tmp_path, extra, args, sbatch_says
):
    rc, out = snakemake(slurm, repo, tmp_path, "models", *args, extra=extra, timeout=120)
    assert rc != 0
    assert "Error in rule base_models" in out
    assert "rule base_models: SLURM refused the job" in out and sbatch_says in out


def test_missing_sbatch_tells_how_to_run_locally(slurm, repo, tmp_path):
    bin_ = tmp_path / "bin"  # every tool of /usr/bin but the SLURM client
    bin_.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name not in SLURM_CLIENT:
            (bin_ / tool.name).symlink_to(tool)
    env = dict(slurm.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{bin_}")
    rc, out = snakemake(slurm, repo, tmp_path / "w", "models", env=env, timeout=120)
    assert rc != 0
    assert "rule base_models: launch.launcher is 'slurm'" in out
    assert "no SLURM client" in out and "leave out `--profile slurm`" in out


def test_a_preempted_job_is_requeued_and_resumes_to_the_same_artifact(slurm, repo, tmp_path):
    """submitit's Checkpointable on SLURM: preemption -> requeue -> resume from checkpoint."""
    launch = tmp_path / "launch.yaml"
    launch.write_text("launch:\n  launcher: slurm\n  slurm:\n    poll_interval_s: 1.0\n")
    toy = [sys.executable, "-m", "tests.fixtures.toy_stage", "--steps", "8"]
    subprocess.run(
        [*toy, "--out", str(tmp_path / "ref.json"), "--checkpoint-dir", str(tmp_path / "ck_ref")],
        check=True,
        cwd=repo,
        timeout=120,
    )
    ck = tmp_path / "ck"
    cmd = [
        *toy,
        "--out",
        str(tmp_path / "out.json"),
        "--checkpoint-dir",
        str(ck),
        "--sleep-s",
        "0.5",
        "--launch",
        str(launch),
        "--log",
        str(tmp_path / "logs/toy.log"),
    ]
    proc = subprocess.Popen(cmd, cwd=repo, env=slurm.env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (ck / "checkpoint-2").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        job_id = slurm.squeue("-n", "ume-toy", "-t", "running", "-o", "%i")
        assert job_id, "the toy job never ran"
        for sig in ("SIGTERM", "USR2"):  # what SLURM sends at preemption (submitit's _interrupt)
            subprocess.run(["scancel", job_id, "--signal", sig], check=True, env=slurm.env)
        # SLURM holds a requeued job ~2 min (BeginTime); release it now
        while proc.poll() is None and time.monotonic() < deadline:
            if slurm.squeue("-j", job_id, "-o", "%r") == "BeginTime":
                subprocess.run(
                    ["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                    env=slurm.env,
                    capture_output=True,
                )
            time.sleep(0.5)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-4000:]
    assert "requeued; resumes from the last checkpoint" in err
    starts = [json.loads(x) for x in (ck / "starts.jsonl").read_text().splitlines()]
    assert len(starts) == 2 and starts[1]["from_step"] >= 2
    assert starts[0]["job"] == starts[1]["job"] == job_id  # requeued: the same job
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    assert json.loads((tmp_path / "job.json").read_text())["state"] == "COMPLETED"


def test_a_distributed_stage_gets_one_task_per_process_and_a_process_group(slurm, repo, tmp_path):
    """tasks_per_node=2 on SLURM: two srun tasks, torch.distributed (gloo) from SLURM's env."""
    launch = tmp_path / "launch.yaml"
    launch.write_text("launch:\n  launcher: slurm\n  slurm:\n    poll_interval_s: 1.0\n")
    out = tmp_path / "dist.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.fixtures.toy_stage",
        "--distributed",
        "--out",
        str(out),
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--launch",
        str(launch),
        "--resources",
        "tasks_per_node=2",
        "--log",
        str(tmp_path / "logs/dist.log"),
    ]
    res = subprocess.run(cmd, cwd=repo, env=slurm.env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-4000:]
    seen = json.loads(out.read_text())
    assert seen["world_size"] == 2 and seen["rank_sum"] == 1.0  # ranks 0 + 1
    assert seen["MASTER_ADDR"] == "localhost" and seen["LOCAL_WORLD_SIZE"] == "2"
    assert res.stderr.count("----- SLURM job") >= 3  # both tasks' output (+ the end marker)
