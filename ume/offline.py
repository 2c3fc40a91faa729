"""Keep every process off the model hub: ume never downloads weights or data at run time."""

from __future__ import annotations

import os
import re

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


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(path: str) -> bool:
    """``Qwen/Qwen3-VL-8B-Instruct`` (one slash, no leading ./ or /) and not a local folder."""
    return bool(_HUB_ID.match(path)) and not os.path.exists(os.path.expanduser(path))
