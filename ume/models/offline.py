"""Keep every process off the model hub: ume never downloads weights or data at run time."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


def set_offline_env() -> None:
    """Set the offline switches of huggingface_hub / transformers / datasets (idempotent).

    Must run before those libraries are imported: huggingface_hub reads them at import time.
    """
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
