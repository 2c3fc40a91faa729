"""Where this process runs a model, and in which precision: one choice for every role.

On a GPU machine a model goes to this process's GPU (``cuda:<LOCAL_RANK>``: torchrun,
accelerate and the launcher's torch.distributed set-up export LOCAL_RANK; a single process
gets ``cuda:0``) in the configured dtype and attention kernel. On a CPU-only machine a model
configured in half precision or with flash-attention runs in float32 with sdpa attention
instead (half precision is slow or unsupported on CPUs, flash-attention needs CUDA), with a
warning naming the key; a float32 config runs as configured.

Training, the EG-RL reward models and evaluation all ask :func:`choose_device`:

>>> dev = choose_device("bfloat16", "flash_attention_2", role="embedder")  # doctest: +SKIP
>>> dev.device, dev.dtype, dev.trainer_flags()                              # doctest: +SKIP
('cpu', 'float32', {'use_cpu': True, 'bf16': False, 'fp16': False})
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)
_warned: set[tuple[str, str, str]] = set()  # warn once per model and setting, not per load


@dataclass(frozen=True)
class DeviceChoice:
    gpu: bool
    device: str  # "cuda:<LOCAL_RANK>" or "cpu"
    dtype: str  # the precision to load the weights in
    attn_implementation: str

    @property
    def bf16(self) -> bool:
        return self.gpu and self.dtype == "bfloat16"

    @property
    def fp16(self) -> bool:
        return self.gpu and self.dtype == "float16"

    def trainer_flags(self) -> dict[str, bool]:
        """The precision flags of a Hugging Face ``TrainingArguments`` (TRL's configs too)."""
        return {"use_cpu": not self.gpu, "bf16": self.bf16, "fp16": self.fp16}


def choose_device(
    dtype: str = "float32", attn_implementation: str = "sdpa", *, role: str
) -> DeviceChoice:
    """This process's device for the model of ``models.<role>`` configured with ``dtype`` and
    ``attn_implementation`` (see the module docstring)."""
    import torch

    if torch.cuda.is_available():
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        return DeviceChoice(True, f"cuda:{rank}", dtype, attn_implementation)
    if dtype == "float32" and attn_implementation != "flash_attention_2":
        return DeviceChoice(False, "cpu", dtype, attn_implementation)
    if (role, dtype, attn_implementation) not in _warned:
        _warned.add((role, dtype, attn_implementation))
        log.warning(
            "no GPU: models.%s runs in float32 with sdpa attention (config: %s, %s)",
            role,
            dtype,
            attn_implementation,
        )
    return DeviceChoice(False, "cpu", "float32", "sdpa")
