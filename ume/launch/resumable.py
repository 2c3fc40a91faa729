"""The resumable-stage protocol: checkpoints in a folder, resume from the last one.

A stage that may be preempted, hit its time limit or be killed takes a ``checkpoint_dir``
and follows three rules:

1. On start, resume from ``CheckpointFolder(checkpoint_dir, fingerprint).latest()`` if any.
2. Save progress every so often with :meth:`CheckpointFolder.save` (atomic: a checkpoint
   folder either exists complete or not at all).
3. Derive everything from (inputs, config, step): a resumed run then writes the same final
   artifacts as an uninterrupted one.

Checkpoints are named ``checkpoint-<step>`` like the Hugging Face Trainer's, so a TRL/HF
trainer can use the same folder: ``trainer.train(resume_from_checkpoint=folder.latest())``
with ``output_dir=checkpoint_dir``. The folder must lie outside the rule's declared outputs
(Snakemake deletes those before a rerun): by convention ``results/<run>/checkpoints/<rule>/``.

The ``fingerprint`` (e.g. a hash of the stage config and input checksums) guards against
resuming from checkpoints of another config: a mismatch clears the folder.

On SLURM the launcher wraps every stage in a submitit ``Checkpointable``: at preemption or
time-out the job is requeued with the same call, which then resumes by rule 1.

>>> ckpt = CheckpointFolder("results/default/checkpoints/toy", fingerprint="abc")  # doctest: +SKIP
>>> start = ckpt.latest_step() or 0                                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ume.io import atomic_path, write_text

PREFIX = "checkpoint-"
_STEP = re.compile(rf"^{PREFIX}(\d+)$")
FINGERPRINT_FILE = "fingerprint.txt"


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (config sections, input checksums)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CheckpointFolder:
    def __init__(self, root: str | Path, fingerprint: str | None = None, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep
        self.root.mkdir(parents=True, exist_ok=True)
        if fingerprint is not None:
            fp_file = self.root / FINGERPRINT_FILE
            old = fp_file.read_text().strip() if fp_file.exists() else None
            if old != fingerprint:
                self.clear()  # checkpoints of another config or other inputs: never resume those
                write_text(fp_file, fingerprint + "\n")

    def steps(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _STEP.match(p.name)))

    def path(self, step: int) -> Path:
        return self.root / f"{PREFIX}{step}"

    def latest(self) -> Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, write: Callable[[Path], None]) -> Path:
        """``write(tmp_folder)`` fills the checkpoint; it appears under its name only when done."""
        with atomic_path(self.path(step), is_dir=True) as tmp:
            write(tmp)
        for old in self.steps()[: -self.keep] if self.keep else []:
            shutil.rmtree(self.path(old), ignore_errors=True)
        return self.path(step)

    def clear(self) -> None:
        for p in self.root.iterdir():
            if _STEP.match(p.name) or p.name.startswith(f".{PREFIX}"):
                shutil.rmtree(p, ignore_errors=True)
