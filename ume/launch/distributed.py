"""torch.distributed inside a SLURM job, from submitit's helpers; DeepSpeed/accelerate configs.

A distributed stage runs as one submitit task per GPU (``tasks_per_node = gpus``) on
``nodes`` nodes. Before the stage starts, the launcher exports MASTER_ADDR, MASTER_PORT,
RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from SLURM
(``submitit.helpers.TorchDistributedEnvironment``), so that
``torch.distributed.init_process_group("nccl")``, the Hugging Face Trainer / TRL with
``deepspeed=<config json>`` and accelerate all find their process group with the default
``env://`` method. Every rank runs the same stage function: only rank 0 writes artifacts
and the manifest (:func:`is_main_process`).

Configs in the repository (paths relative to the repository root):

* ``workflow/deepspeed/zero2.json`` — DeepSpeed ZeRO-2 with the HF Trainer's ``"auto"``
  values; the paper preset's ``train_embedder.deepspeed``, ``sft.deepspeed`` and
  ``egrl.deepspeed`` (TRL's ``SFTConfig(deepspeed=...)``, ``GRPOConfig(deepspeed=...)``).
* ``workflow/accelerate/zero2.yaml`` — the same for ``accelerate launch`` by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED_CONFIGS = {"zero2": "workflow/deepspeed/zero2.json"}
ACCELERATE_CONFIGS = {"zero2": "workflow/accelerate/zero2.yaml"}
_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def export_torch_env() -> dict[str, str]:
    """In a submitit job with several tasks: export the torch.distributed variables.

    CUDA_VISIBLE_DEVICES is left alone: DeepSpeed and accelerate select
    ``cuda:LOCAL_RANK`` themselves. Returns the exported variables.
    """
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return {k: os.environ[k] for k in _VARS if k in os.environ}


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed): the process that writes artifacts."""
    return rank() == 0


def resolve_config(path: str | os.PathLike | None) -> Path | None:
    """A DeepSpeed/accelerate config path from the config: absolute, or relative to the
    working directory, else to the repository (so ``workflow/deepspeed/zero2.json`` works
    from a Snakemake ``--directory`` elsewhere)."""
    if not path:
        return None
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO / p
