"""Shared test set-up: offline always, repository paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ume.offline import set_offline_env

set_offline_env()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
