"""Keep every process off the model hub: ume never downloads weights or data at run time."""

from __future__ import annotations

import os
import re
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


def set_offline_env() -> None:
    """Switch huggingface_hub / transformers / datasets to offline mode (idempotent).

    Sets ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``,
    ``HF_HUB_DISABLE_TELEMETRY``; huggingface_hub reads them at import time, so call this
    first; if huggingface_hub was imported already, its constants are switched as well.
    """
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v
    consts = sys.modules.get("huggingface_hub.constants")
    if consts is not None:
        consts.HF_HUB_OFFLINE = True
        if hasattr(consts, "HF_HUB_DISABLE_TELEMETRY"):
            consts.HF_HUB_DISABLE_TELEMETRY = True
        if hasattr(consts, "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
            consts.HF_HUB_DISABLE_IMPLICIT_TOKEN = True


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_hub_id(path: str) -> bool:
    """``Qwen/Qwen3-VL-8B-Instruct`` (one slash, no leading ./ or /) and not a local folder."""
    return bool(_HUB_ID.match(path)) and not os.path.exists(os.path.expanduser(path))
