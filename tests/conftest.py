"""Shared test set-up: offline always, repository paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ume.offline import set_offline_env

set_offline_env()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# Subprocesses started by the tests (the toy stage's CLI, submitit's local and SLURM jobs)
# import test code such as tests.fixtures.toy_stage by name, from any working directory.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
