"""What every writer of the synthetic benchmark shares: the table file name and the sidecar
of ground truth (``_synth_gt.json``, attached to the items by :mod:`ume.suites.loaders`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ume.io import write_json
from ume.suites.base import GT_SIDECAR

TABLE = "test-00000-of-00001.parquet"


def write_sidecar(folder: Path, queries: dict[str, Any], candidates: dict[str, Any]) -> None:
    write_json(folder / GT_SIDECAR, {"queries": queries, "candidates": candidates})
