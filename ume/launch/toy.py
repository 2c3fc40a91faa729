"""A toy resumable stage: the launcher's test subject (``python -m ume toy ...``).

It "trains" for ``steps`` steps: the state is a hash chain seeded by ``seed``, one link per
step, checkpointed every ``save_every`` steps through :class:`CheckpointFolder`. The final
artifact (``out``, JSON) depends only on (seed, steps), so a run killed mid-way and run again
resumes from its last checkpoint and writes the same bytes as an uninterrupted run. Each
start is appended to ``<checkpoint_dir>/starts.jsonl`` (step it started from, SLURM job id),
which shows that a rerun resumed rather than restarted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ume.errors import UmeError
from ume.io import Manifest, write_json
from ume.launch.resumable import CheckpointFolder, fingerprint_of


def _step(state: str, step: int) -> str:
    return hashlib.sha256(f"{state}:{step}".encode()).hexdigest()


def toy_stage(
    out: str | Path,
    checkpoint_dir: str | Path,
    steps: int = 10,
    seed: int = 0,
    save_every: int = 1,
    sleep_s: float = 0.0,
    fail_at: int | None = None,
) -> str:
    """Run (or resume) the toy stage; returns the final state (a hex digest)."""
    ckpt = CheckpointFolder(checkpoint_dir, fingerprint=fingerprint_of("toy", seed, steps))
    manifest = Manifest("toy", {"seed": seed, "steps": steps})
    start, state = 0, hashlib.sha256(str(seed).encode()).hexdigest()
    if (last := ckpt.latest()) is not None:
        saved = json.loads((last / "state.json").read_text())
        start, state = saved["step"], saved["state"]
    with open(ckpt.root / "starts.jsonl", "a") as f:
        f.write(json.dumps({"from_step": start, "job": os.environ.get("SLURM_JOB_ID")}) + "\n")
    for step in range(start + 1, steps + 1):
        if fail_at is not None and step == fail_at:
            raise UmeError(f"toy stage: failing at step {step} as asked (fail_at)")
        time.sleep(sleep_s)
        state = _step(state, step)
        if step % save_every == 0 or step == steps:
            snapshot = {"step": step, "state": state}
            ckpt.save(step, lambda tmp, s=snapshot: write_json(tmp / "state.json", s))
    write_json(out, {"seed": seed, "steps": steps, "state": state})
    manifest.record(resumed_from=start)
    manifest.write(Path(out).parent)
    return state


def toy_allreduce(out: str | Path) -> None:
    """A toy distributed stage: every task joins the process group the launcher set up from
    SLURM (env://, gloo on CPU) and all-reduces its rank; rank 0 writes what it saw."""
    import torch
    import torch.distributed as dist

    from ume.launch.distributed import is_main_process

    dist.init_process_group("gloo")
    try:
        total = torch.tensor([float(dist.get_rank())])
        dist.all_reduce(total)
        if is_main_process():
            env = {k: os.environ.get(k) for k in ("MASTER_ADDR", "WORLD_SIZE", "LOCAL_WORLD_SIZE")}
            write_json(out, {"world_size": dist.get_world_size(), "rank_sum": total.item(), **env})
    finally:
        dist.destroy_process_group()
