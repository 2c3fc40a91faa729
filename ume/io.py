"""Atomic writes and stage manifests.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted
stage never leaves a file that a rerun (or Snakemake) would take as finished. Every stage's
output folder gets a ``manifest.json``: resolved config, package versions, git commit, host,
start/end time, input checksums (:func:`ume.fingerprints.checksum`) and stage-specific counts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ume.fingerprints import checksum

MANIFEST_NAME = "manifest.json"
_VERSIONED = (
    "ume",
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "tokenizers",
    "snakemake",
    "submitit",
    "pandas",
    "pyarrow",
    "faiss-cpu",
    "faiss-gpu",
    "deepspeed",
    "flash-attn",
    "pillow",
    "numpy",
)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _umask_modes(tmp)
        if is_dir and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask_modes(path: Path) -> None:
    """mkstemp/mkdtemp make 0600/0700 entries; give artifacts the modes of the user's umask
    (shared caches and other users' runs on a cluster must be able to read them)."""
    umask = os.umask(0)
    os.umask(umask)
    entries = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in entries:
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[Mapping[str, Any]]) -> Path:
    return write_text(
        path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
    )


def write_parquet(path: str | os.PathLike, df) -> Path:
    """Write a pandas DataFrame as parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    out["python"] = platform.python_version()
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return res.stdout.strip()
    return res.stdout.strip() + ("-dirty" if dirty else "")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class Manifest:
    """Collects a stage's provenance; written atomically by :meth:`write`.

    >>> m = Manifest("data", config={"seed": 0}, inputs=[])  # doctest: +SKIP
    >>> m.record(kept=10, dropped={"VOC2007": 2})            # doctest: +SKIP
    >>> m.write("results/default/data")                       # doctest: +SKIP
    """

    def __init__(
        self,
        stage: str,
        config: Mapping[str, Any] | None = None,
        inputs: list[str | os.PathLike] | None = None,
    ) -> None:
        self.data: dict[str, Any] = {
            "stage": stage,
            "config": dict(config or {}),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "start": _now(),
            "inputs": {str(p): checksum(p) for p in (inputs or []) if Path(p).exists()},
            "job": _slurm_job_info(),
        }

    def record(self, **fields: Any) -> None:
        self.data.update(fields)

    def write(self, folder: str | os.PathLike) -> Path:
        self.data["end"] = _now()
        return write_json(Path(folder) / MANIFEST_NAME, self.data)


def _slurm_job_info() -> dict[str, str] | None:
    keys = ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_PARTITION", "SLURM_ARRAY_TASK_ID")
    info = {k: os.environ[k] for k in keys if k in os.environ}
    return info or None
