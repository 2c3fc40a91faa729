"""The launcher without SLURM: resources, the resumable protocol, in-process runs, and the
submitit path through submitit's local executor (a real subprocess job)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.fixtures.toy_stage import build_parser as toy_parser
from tests.fixtures.toy_stage import toy_stage
from ume.cli import main
from ume.config import LaunchConfig, SlurmConfig, load_config
from ume.errors import ConfigError
from ume.launch import CheckpointFolder, LaunchError, Resources, run_stage
from ume.launch.distributed import resolve_config
from ume.launch.launcher import StageCall, SubmittedStage

pytestmark = pytest.mark.unit

SLURM = LaunchConfig(launcher="slurm", slurm=SlurmConfig(poll_interval_s=0.2))


# ---------------------------------------------------------------------- resources
@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], Resources()),
        (["gpus=8", "nodes=2", "mem_mb=64000"], Resources(nodes=2, gpus=8, mem_mb=64000)),
        (["runtime=90.0", "cpus_per_task=4"], Resources(runtime=90, cpus_per_task=4)),
        (["tasks_per_node=4"], Resources(tasks_per_node=4)),
    ],
)
def test_resources_parse(items, expected):
    assert Resources.parse(items) == expected


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["gpu=1"], "expected NAME=INTEGER with NAME one of"),
        (["gpus"], "expected NAME=INTEGER"),
        (["mem_mb=lots"], "'lots' is not a number"),
        (["nodes=0"], "nodes=0: must be at least 1"),
    ],
)
def test_resources_parse_refuses_bad_items(items, message):
    with pytest.raises(ConfigError, match=message):
        Resources.parse(items)


def test_resources_map_to_submitit_parameters():
    p = Resources(nodes=2, gpus=8, cpus_per_task=10, mem_mb=2048, runtime=30)
    assert p.submitit_parameters(distributed=True) == {
        "nodes": 2,
        "tasks_per_node": 8,  # one process per GPU
        "cpus_per_task": 10,
        "mem_gb": 2.0,
        "timeout_min": 30,
        "gpus_per_node": 8,
    }
    assert p.submitit_parameters(distributed=False)["tasks_per_node"] == 1
    # no --gpus-per-node=0: clusters without GPU gres refuse it
    assert "gpus_per_node" not in Resources().submitit_parameters()


# ---------------------------------------------------------------------- resumable protocol
def test_checkpoint_folder_saves_atomically_keeps_the_last_and_guards_the_config(tmp_path):
    ck = CheckpointFolder(tmp_path / "ck", fingerprint="a", keep=2)
    assert ck.latest() is None
    for step in (1, 2, 3):
        ck.save(step, lambda tmp, s=step: (tmp / "s.txt").write_text(str(s)))
    assert ck.steps() == [2, 3]
    assert ck.latest() == tmp_path / "ck" / "checkpoint-3"  # the HF Trainer's naming
    assert (ck.latest() / "s.txt").read_text() == "3"

    def boom(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError):
        ck.save(4, boom)
    assert ck.latest_step() == 3  # a half-written checkpoint never shows up
    assert CheckpointFolder(tmp_path / "ck", fingerprint="a").latest_step() == 3
    assert CheckpointFolder(tmp_path / "ck", fingerprint="b").latest() is None  # other config


def test_toy_stage_resumes_to_the_same_artifact(tmp_path):
    ref = toy_stage(tmp_path / "ref.json", tmp_path / "ck_ref", steps=6)
    with pytest.raises(Exception, match="failing at step 4"):
        toy_stage(tmp_path / "out.json", tmp_path / "ck", steps=6, fail_at=4)
    assert toy_stage(tmp_path / "out.json", tmp_path / "ck", steps=6) == ref
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    starts = [json.loads(x) for x in (tmp_path / "ck" / "starts.jsonl").read_text().splitlines()]
    assert [s["from_step"] for s in starts] == [0, 3]


def test_toy_stage_killed_mid_way_and_run_again_gives_the_same_bytes(tmp_path, repo):
    """SIGKILL (no chance to clean up) mid-way through the CLI, then the same command again."""
    cmd = [sys.executable, "-m", "tests.fixtures.toy_stage", "--steps", "8", "--checkpoint-dir"]
    subprocess.run(
        [*cmd, str(tmp_path / "ck_ref"), "--out", str(tmp_path / "ref.json")],
        check=True,
        cwd=repo,
        capture_output=True,
        timeout=120,
    )
    args = [*cmd, str(tmp_path / "ck"), "--out", str(tmp_path / "out.json"), "--sleep-s", "0.3"]
    proc = subprocess.Popen(args, cwd=repo, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (tmp_path / "ck" / "checkpoint-3").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (tmp_path / "out.json").exists()
    subprocess.run(args, check=True, cwd=repo, capture_output=True, timeout=120)
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "ref.json").read_bytes()
    starts = (tmp_path / "ck" / "starts.jsonl").read_text().splitlines()
    assert len(starts) == 2 and json.loads(starts[1])["from_step"] >= 3


# ---------------------------------------------------------------------- local (in-process)
def test_local_launcher_runs_in_process():
    seen = []

    def fn(x, y=0):
        seen.append((x, y))
        return 7

    assert run_stage(fn, (1,), stage="s") == 7
    assert run_stage(fn, (2,), {"y": 3}, stage="s", launch=LaunchConfig()) == 7
    assert seen == [(1, 0), (2, 3)]


def test_stage_call_is_checkpointable_and_requeues_itself():
    call = StageCall(toy_stage, ("a", "b"), {"steps": 2})
    again = call.checkpoint()
    assert again.function is call  # same call, same arguments: the stage resumes on its own


# ---------------------------------------------------------------------- submitit path, no SLURM
def test_submitted_stage_records_the_job_in_job_json_and_manifest(tmp_path):
    out = tmp_path / "toy" / "out.json"
    log = tmp_path / "logs" / "toy_rule.log"
    run_stage(
        toy_stage,
        (str(out), str(tmp_path / "ck")),
        {"steps": 3},
        stage="toy",
        launch=SLURM,
        resources=Resources(),
        log_path=log,
        record_dir=out.parent,
        cluster="local",
    )
    rec = json.loads((out.parent / "job.json").read_text())
    assert rec["state"] == "COMPLETED" and rec["job_id"] and rec["stage"] == "toy"
    assert rec["folder"].startswith(str(log.with_suffix(".slurm")))
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert manifest["job"]["job_id"] == rec["job_id"] and manifest["job"]["state"] == "COMPLETED"
    assert json.loads(out.read_text())["steps"] == 3


def test_a_failing_job_is_a_launch_error_naming_rule_log_and_cause(tmp_path, capsys):
    log = tmp_path / "logs" / "toy_rule.log"
    with pytest.raises(LaunchError) as e:
        run_stage(
            toy_stage,
            (str(tmp_path / "o.json"), str(tmp_path / "ck")),
            {"steps": 3, "fail_at": 2},
            stage="toy",
            launch=SLURM,
            log_path=log,
            record_dir=tmp_path,
            cluster="local",
        )
    msg = str(e.value)
    assert msg.startswith("rule toy_rule: ") and f"log: {log}" in msg
    assert "failing at step 2 as asked" in msg.splitlines()[0]
    assert json.loads((tmp_path / "job.json").read_text())["state"] == "FAILED"
    assert "----- end of SLURM job" in capsys.readouterr().err  # job output copied to the log


def test_missing_sbatch_says_the_profile_needs_a_slurm_client(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError) as e:
        run_stage(
            print, stage="annotate", launch=SLURM, log_path="results/r/logs/annotate_tcot.log"
        )
    msg = str(e.value)
    assert msg.startswith("rule annotate_tcot: ") and "no SLURM client" in msg
    assert "leave out `--profile slurm`" in msg and "snakemake --cores all all" in msg


@pytest.mark.parametrize(
    ("log", "who"),
    [
        ("results/default/logs/annotate_tcot.log", "rule annotate_tcot"),
        ("results/default/logs/eval/synth/SynthI2T.log", "job eval/synth/SynthI2T"),
        (None, "stage annotate"),
    ],
)
def test_messages_name_the_job_after_its_log(log, who):
    s = SubmittedStage(
        StageCall(print, (), {}),
        stage="annotate",
        launch=SLURM,
        resources=Resources(),
        rule=None,
        log_path=log,
        record_dir=None,
        distributed=False,
        cluster="local",
    )
    assert s._who() == who


# ---------------------------------------------------------------------- CLI
def test_cli_launch_options_route_through_the_launcher(tmp_path, capsys):
    launch = tmp_path / "launch.yaml"
    launch.write_text(yaml.safe_dump({"launch": {"launcher": "local"}}))
    out = tmp_path / "toy" / "out.json"
    common = ["--out", str(out), "--checkpoint-dir", str(tmp_path / "ck"), "--steps", "2"]
    launch_args = ["--launch", str(launch), "--resources", "gpus=0", "mem_mb=100"]
    assert main([*common, *launch_args], parser=toy_parser()) == 0
    assert json.loads(out.read_text())["steps"] == 2
    assert main([*common, "--resources", "gpu=1"], parser=toy_parser()) == 2
    assert "--resources 'gpu=1'" in capsys.readouterr().err


# ---------------------------------------------------------------------- configs in the repo
def test_deepspeed_and_accelerate_configs_ship_and_the_paper_preset_points_at_them(repo):
    cfg = load_config(repo / "config/config.yaml", repo / "config/paper.yaml")
    ds = resolve_config(cfg.train_embedder.deepspeed)
    assert ds is not None and ds.exists()
    assert json.loads(ds.read_text())["zero_optimization"]["stage"] == 2
    acc = yaml.safe_load((repo / "workflow/accelerate/zero2.yaml").read_text())
    assert (repo / acc["deepspeed_config"]["deepspeed_config_file"]).exists()
    assert resolve_config(None) is None


def test_the_slurm_profile_selects_the_paper_preset_and_the_slurm_launcher(repo):
    prof = yaml.safe_load((repo / "slurm/config.yaml").read_text())
    assert prof["configfiles"] == ["config/config.yaml", "config/paper.yaml"]
    assert prof["config"]["launch"]["launcher"] == "slurm"
    assert all((repo / f).exists() for f in prof["configfiles"])
    assert os.access(repo / "scripts/slurm/bin/sacct", os.X_OK)
    assert Path(repo / "docs/cluster.md").exists()


def test_resume_point_clears_another_fingerprint_and_skips_incomplete_checkpoints(tmp_path):
    from ume.fingerprints import input_identity
    from ume.launch.resumable import resume_point

    ck = tmp_path / "ck"
    assert resume_point(ck, "a") is None
    for step, complete in ((2, True), (5, False)):  # a Trainer writes trainer_state.json last
        (ck / f"checkpoint-{step}").mkdir()
        if complete:
            (ck / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert resume_point(ck, "a") == str(ck / "checkpoint-2")
    assert resume_point(ck, "a", require=None) == str(ck / "checkpoint-5")
    assert resume_point(ck, "b") is None  # another config or other inputs: cleared
    assert not any(ck.glob("checkpoint-*"))

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 8}')
    before = input_identity(model)
    (model / "config.json").write_text('{"hidden_size": 16}')
    assert input_identity(model) != before
    (tmp_path / "backbone.json").write_text('{"weights_sha256": "x"}')  # a trained stage's
    assert input_identity(model) == input_identity(tmp_path / "backbone.json")


def test_reasoner_fingerprint_leaves_out_the_run_length(tmp_path, repo):
    from ume.config import load_config
    from ume.train.reasoner_common import fingerprint

    cfg = load_config(repo / "config" / "config.yaml")
    pairs = tmp_path / "pairs.parquet"
    pairs.write_bytes(b"a")
    fp = fingerprint(cfg, [pairs, None])
    cfg.sft.max_steps, cfg.egrl.epochs = 7, 3  # extending a run is a legitimate resume
    assert fingerprint(cfg, [pairs]) == fp
    cfg.sft.learning_rate *= 2
    assert fingerprint(cfg, [pairs]) != fp
    cfg.sft.learning_rate /= 2
    pairs.write_bytes(b"b")
    assert fingerprint(cfg, [pairs]) != fp
