"""The resumable-stage protocol: checkpoints in a folder, resume from the last one.

A stage that may be preempted, hit its time limit or be killed takes a ``checkpoint_dir``
and follows three rules:

1. On start, resume from ``resume_point(checkpoint_dir, fingerprint)`` if any (the newest
   complete checkpoint; a folder left by another config or other inputs is cleared first).
2. Save progress every so often with :meth:`CheckpointFolder.save` (atomic: a checkpoint
   folder either exists complete or not at all).
3. Derive everything from (inputs, config, step): a resumed run then writes the same final
   artifacts as an uninterrupted one.

Checkpoints are named ``checkpoint-<step>`` like the Hugging Face Trainer's, so a TRL/HF
trainer can use the same folder: ``trainer.train(resume_from_checkpoint=resume_point(...))``
with ``output_dir=checkpoint_dir`` (the Trainer writes its checkpoints in place, so only one
holding ``trainer_state.json``, which it writes last, counts as complete). The folder must lie outside the rule's declared outputs
(Snakemake deletes those before a rerun): by convention ``results/<run>/checkpoints/<rule>/``.

The ``fingerprint`` (:func:`ume.fingerprints.fingerprint_of` of the stage config and
:func:`~ume.fingerprints.input_identity` of its inputs) guards against resuming from
checkpoints of another config: a mismatch clears the folder.

On SLURM the launcher wraps every stage in a submitit ``Checkpointable``: at preemption or
time-out the job is requeued with the same call, which then resumes by rule 1.

>>> ckpt = CheckpointFolder("results/default/checkpoints/toy", fingerprint="abc")  # doctest: +SKIP
>>> start = ckpt.latest_step() or 0                                                  # doctest: +SKIP
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ume.io import atomic_path, write_text

PREFIX = "checkpoint-"
_STEP = re.compile(rf"^{PREFIX}(\d+)$")
FINGERPRINT_FILE = "fingerprint.txt"
TRAINER_STATE = "trainer_state.json"  # written last into a Trainer checkpoint


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

    def latest(self, require: str | None = None) -> Path | None:
        """The newest checkpoint (holding the file ``require``, when given) or None."""
        for step in reversed(self.steps()):
            if require is None or (self.path(step) / require).is_file():
                return self.path(step)
        return None

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


def checkpoint_dir(out_dir: str | Path, given: str | Path | None) -> Path:
    """Where a stage's checkpoints go: ``given``, else beside the output folder
    (``<out>.checkpoints``), never inside it (a workflow removes a failed job's output folder,
    and with it what resumption needs)."""
    out_dir = Path(out_dir)
    return Path(given) if given else out_dir.with_name(out_dir.name + ".checkpoints")


def last_checkpoint(folder: str | Path, require: str | None = TRAINER_STATE) -> str | None:
    """The newest complete ``checkpoint-N`` under ``folder`` (see :meth:`CheckpointFolder.latest`),
    or None; no fingerprint check (use :func:`resume_point` to decide whether to resume)."""
    if not Path(folder).is_dir():
        return None
    latest = CheckpointFolder(folder).latest(require)
    return str(latest) if latest else None


def resume_point(
    folder: str | Path,
    fingerprint: str,
    *,
    is_main: bool = True,
    require: str | None = TRAINER_STATE,
) -> str | None:
    """Where a stage resumes: the newest complete checkpoint under ``folder``, or None.

    Checkpoints written under another ``fingerprint`` (another config, other inputs) are
    cleared first, so they are never resumed. Only the main process (``is_main``) checks and
    clears; in a distributed run every process then waits for it (a barrier) before looking.
    """
    if is_main:
        CheckpointFolder(folder, fingerprint=fingerprint)
    _barrier()
    return last_checkpoint(folder, require)


def _barrier() -> None:
    import sys

    if "torch" not in sys.modules:  # no torch loaded: not a distributed run
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
