"""launch — where a stage runs: in-process (local, the default) or a SLURM job via submitit.

* :func:`run_stage` — the one entry point the CLI uses for launched stages (``launcher.py``).
* :class:`Resources` — a rule's resources as the CLI receives them (``resources.py``).
* :class:`CheckpointFolder` — the resumable-stage protocol (``resumable.py``).
* ``distributed.py`` — torch.distributed set-up inside a job; DeepSpeed/accelerate configs.

See docs/cluster.md for profiles, the mapping of rule resources to SLURM options, and how to
add a launched stage.
"""

from ume.launch.launcher import LaunchError, StageCall, run_stage
from ume.launch.resources import Resources
from ume.launch.resumable import CheckpointFolder

__all__ = [
    "CheckpointFolder",
    "LaunchError",
    "Resources",
    "StageCall",
    "run_stage",
]
