"""Backbones: tiny random-initialised Qwen-VL models built locally, and local real checkpoints.

Names are re-exported lazily so ``import ume.models`` stays light (transformers is imported only
when a name that needs it is used, after ``set_offline_env`` has run).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # ume.models.tiny
    "SPECIAL_TOKENS": "tiny",
    "CHAT_TOKENS": "tiny",
    "PROJECT_TOKENS": "tiny",
    "TCOT_TAGS": "tiny",
    "EMB_TOKEN": "tiny",
    "CHAT_TEMPLATE": "tiny",
    "train_tokenizer": "tiny",
    "make_image_processor": "tiny",
    "make_processor": "tiny",
    "make_config": "tiny",
    "make_tiny": "tiny",
    "build_tiny": "tiny",
    "read_tiny_info": "tiny",
    "register_processors": "tiny",
    "UmeTinyQwen2VLProcessor": "tiny",
    "UmeTinyQwen3VLProcessor": "tiny",
    # ume.models.backbone
    "set_offline_env": "backbone",
    "resolve_backbone": "backbone",
    "load_backbone": "backbone",
    "chat_generate": "backbone",
    "conversation_images": "backbone",
    "SUPPORTED_MODEL_TYPES": "backbone",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ume.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ume.models.{mod}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
