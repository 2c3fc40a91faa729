"""A stage's resources: what a Snakemake rule declares, what the launcher asks SLURM for.

The rules pass their ``resources:`` to the CLI as ``--resources nodes=1 gpus=8 ...``:

=================  =========================================  ==============================
rule resource      meaning                                    sbatch option (via submitit)
=================  =========================================  ==============================
``nodes``          nodes                                      ``--nodes``
``gpus``           GPUs per node                              ``--gpus-per-node`` (if > 0)
``cpus_per_task``  CPUs per task                              ``--cpus-per-task``
``mem_mb``         memory per node, MB                        ``--mem``
``runtime``        time limit, minutes                        ``--time``
``tasks_per_node`` processes per node (default: 1, or one     ``--ntasks-per-node``
                   per GPU for distributed stages)
=================  =========================================  ==============================

Partition, account, QoS, constraint and further sbatch options come from the config
(``launch.slurm``), which the slurm profile can set.

>>> Resources.parse(["gpus=2", "mem_mb=8000"]).gpus
2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ume.errors import ConfigError


@dataclass(frozen=True)
class Resources:
    nodes: int = 1
    gpus: int = 0  # per node
    cpus_per_task: int = 1
    mem_mb: int = 2000  # per node
    runtime: int = 60  # minutes
    tasks_per_node: int | None = None  # None: 1, or one per GPU for distributed stages

    @classmethod
    def parse(cls, items: list[str] | None) -> Resources:
        """``["nodes=1", "gpus=8", ...]`` -> Resources; unknown names and non-integers are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for item in items or []:
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ConfigError(
                    f"--resources {item!r}: expected NAME=INTEGER with NAME one of "
                    f"{', '.join(sorted(names))}"
                )
            try:
                values[key] = int(float(value))
            except ValueError:
                raise ConfigError(f"--resources {item!r}: {value!r} is not a number") from None
        res = cls(**values)
        for f in dataclasses.fields(res):
            v = getattr(res, f.name)
            if v is not None and v < (0 if f.name == "gpus" else 1):
                raise ConfigError(f"--resources {f.name}={v}: must be at least 1 (gpus: 0)")
        return res

    def tasks(self, distributed: bool) -> int:
        """Processes per node: as declared, else one per GPU when the stage is distributed."""
        if self.tasks_per_node:
            return self.tasks_per_node
        return max(1, self.gpus) if distributed else 1

    def submitit_parameters(self, distributed: bool = False) -> dict[str, Any]:
        """Parameters of ``submitit.AutoExecutor.update_parameters`` (cluster-independent ones)."""
        params: dict[str, Any] = {
            "nodes": self.nodes,
            "tasks_per_node": self.tasks(distributed),
            "cpus_per_task": self.cpus_per_task,
            "mem_gb": self.mem_mb / 1024,
            "timeout_min": self.runtime,
        }
        if self.gpus:  # --gpus-per-node=0 is refused by clusters without GPU gres
            params["gpus_per_node"] = self.gpus
        return params

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items() if v is not None)
