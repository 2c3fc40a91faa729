"""Two CPU processes (torchrun, gloo) train exactly like one process with the whole batch:
the sampler's per-process slices, the cross-process gather of in-batch negatives, the loss
scaling under gradient averaging and the deferred all-reduce of gradient caching, end to end."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.fixtures.contrastive_pairs import small_pairs

pytestmark = pytest.mark.integration

SCRIPT = """
import sys, torch
from ume.config import load_config
from ume.train.contrastive import train_embedder
torch.set_num_threads(1)
repo, pairs, backbone, out = sys.argv[1:5]
over = {"train_embedder": {"max_steps": 3, "save_steps": 2, "global_batch_size": 8,
        "sub_batch_size": 4, "gradcache_chunk_size": 2, "lora": {"r": 4, "alpha": 8,
        "dropout": 0.0}}, "split": {"exclude_from_contrastive": []}}
cfg = load_config(repo + "/config/config.yaml", overrides=over)
train_embedder(cfg, pairs, backbone, out, out + ".ck")
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _curve(out):
    return [
        [float(r[k]) for k in ("loss", "accuracy", "grad_norm", "pairs", "inputs")]
        for r in csv.DictReader((out / "curves.csv").open())
    ]


def test_two_processes_match_one(tmp_path, repo):
    from ume.config import load_config
    from ume.models.stage import build_base_models

    cfg = load_config(repo / "config" / "config.yaml")
    build_base_models(cfg, tmp_path / "models", ("embedder",))
    backbone = tmp_path / "models" / "embedder" / "backbone.json"
    pairs = small_pairs(tmp_path / "data", n=8)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    args = [str(repo), str(pairs), str(backbone)]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, str(script), *args, str(one)], check=True, env=env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_port", str(_free_port())]
    subprocess.run([*torchrun, str(script), *args, str(two)], check=True, env=env)
    assert json.loads((two / "manifest.json").read_text())["world_size"] == 2
    a, b = _curve(one), _curve(two)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b, strict=True):
        assert rb == pytest.approx(ra, rel=1e-4, abs=1e-5)  # loss, accuracy, grad norm, counts
