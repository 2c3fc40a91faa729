"""The prepared GPU check (issue 10, item 7): its plan on any machine, its refusal without a
GPU (this project's CPU machines have none; on a GPU machine the real check runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_prints_its_plan_and_refuses_a_machine_without_a_gpu(tmp_path):
    run = ["bash", str(REPO / "scripts/gpu_check.sh")]
    dry = subprocess.run([*run, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    for stage in ("train_embedder", "sft_reasoner", "egrl", "eval"):
        assert f". {stage}:" in dry.stdout
    assert '"dtype": "bfloat16"' in dry.stdout and '"attn_implementation": "sdpa"' in dry.stdout
    assert '"num_generations": 8' in dry.stdout
    if torch.cuda.is_available():  # pragma: no cover - a GPU machine runs the real check
        return
    assert "no CUDA GPU here" in dry.stdout
    real = subprocess.run(
        [*run, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert real.returncode == 2 and "no CUDA GPU here" in real.stderr
    assert not (tmp_path / "out" / "run").exists()  # nothing ran
