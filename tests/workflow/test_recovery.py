"""Recovery after a kill (issue 14, item 6): the README's command, ``bash scripts/run.sh``,
reruns by itself after a run was killed mid-stage, and never takes a half-written output as
done; it removes a stale lock only when nothing works in the directory any more."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ume.pair_table import RowPolicy, read_pair_table

pytestmark = pytest.mark.workflow

RUN = "killed"
# prepare_pairs writes a few hundred images and frame folders: long enough to be killed
# in the middle of it; the rest of the data stage stays small.
CONFIG = f"""run: {RUN}
data:
  synthetic:
    train_pairs_per_dataset: 48
    eval_queries: 4
    eval_candidates: 4
    eval_corpus: 8
"""
IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", ".snakemake", "__pycache__", ".pytest_cache", ".ruff_cache"
)


@pytest.fixture
def clone(repo, tmp_path):
    """A copy of the repository (what a user has), sharing this checkout's environment."""
    dst = tmp_path / "clone"
    shutil.copytree(repo, dst, ignore=IGNORE)
    (dst / "small.yaml").write_text(CONFIG)
    return dst


def env_for(clone: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["UME_VENV"] = str(Path(sys.executable).parents[1])  # scripts/env.sh: reuse it
    env["UME_CORES"] = "2"
    env["PYTHONPATH"] = str(clone)
    return env


def run_sh(clone: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "scripts/run.sh", *args],
        cwd=clone,
        env=env_for(clone),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_a_run_killed_mid_stage_recovers_with_the_same_command(clone):
    out = clone / "results" / RUN / "data"
    first = run_sh(clone, "data", "--configfile", "small.yaml", start_new_session=True)
    deadline = time.time() + 300
    # kill (the whole session, as a closed terminal or a scheduler does) once prepare_pairs
    # has written part of its media and not yet its table
    while time.time() < deadline and first.poll() is None:
        media = out / "media"
        if media.is_dir() and sum(1 for _ in media.rglob("*.png")) > 40:
            break
        time.sleep(0.05)
    assert first.poll() is None, f"the run ended before it could be killed:\n{first.stdout.read()}"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not (out / "pairs.parquet").exists()  # atomic: no table, only part of the media
    assert any((clone / ".snakemake/locks").iterdir())  # a stale lock
    assert any((clone / ".snakemake/incomplete").rglob("*"))  # outputs marked incomplete

    second = run_sh(clone, "data", "--configfile", "small.yaml")
    log, _ = second.communicate(timeout=900)
    assert second.returncode == 0, log[-6000:]
    assert "removing the stale lock of an interrupted run" in log
    assert "rule prepare_pairs:" in log  # the killed job ran again, not taken as done
    table = read_pair_table(out / "pairs.parquet", policy=RowPolicy(), media="verify")
    assert len(table.df) == 9 * 48 and not table.skipped  # every image whole
    for f in ("split/contrastive.parquet", "split/rl.parquet", "split/manifest.json"):
        assert (clone / "results" / RUN / f).is_file()
    locks = clone / ".snakemake/locks"
    assert not locks.exists() or not any(locks.iterdir())


def test_a_lock_held_by_a_live_job_is_not_removed(clone):
    locks = clone / ".snakemake/locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(str(clone / "results"))
    # a job of a killed snakemake that still runs here (same working directory)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "-m ume data"], cwd=clone
    )
    try:
        dry = run_sh(clone, "-n", "data", "--configfile", "small.yaml")
        log, _ = dry.communicate(timeout=300)
    finally:
        worker.kill()
        worker.wait()
    assert "another run is still working" in log and str(worker.pid) in log, log[-3000:]
    assert (locks / "0.output.lock").exists()
