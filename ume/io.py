"""Atomic writes and stage manifests.

Every artifact is written to a temporary sibling and renamed into place, so an interrupted
stage never leaves a file that a rerun (or Snakemake) would take as finished. Every stage's
output folder gets a ``manifest.json``: resolved config, package versions, git commit, host,
start/end time, input checksums (:func:`ume.fingerprints.checksum`) and stage-specific counts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
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

from ume.errors import StorageError
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

    A folder that cannot take the write (disk full, quota, read-only file system, no
    permission, a folder that cannot be created) raises :class:`~ume.errors.StorageError`
    naming the folder and the config key that moves it (:func:`name_folder`), once the
    temporary is removed: nothing half-written is left.

    >>> with atomic_path("out.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    prefix = f".{path.name}.tmp-"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as e:
        err = _unwritable(e, path, path.parent, creating=True)
        if err is None:
            raise
        raise err from e
    try:
        yield tmp
        _umask_modes(tmp)
        if is_dir and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        err = _unwritable(e, path, path.parent)
        if err is not None:
            raise err from e
        raise


def make_folder(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``; a folder that cannot be made raises a StorageError (as in
    :func:`atomic_path`) naming it and the config key that moves it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = _unwritable(e, folder, folder, creating=True)
        if err is None:
            raise
        raise err from e
    return folder


#: errno -> why a folder cannot take a write
_UNWRITABLE = {
    errno.ENOSPC: "is on a full disk",
    errno.EDQUOT: "is over its disk quota",
    errno.EROFS: "is on a read-only file system",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
}
# the same, as libraries that do their own I/O (safetensors, say) word it without an errno
_UNWRITABLE_TEXT = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
}
#: folder -> the config key that moves it (name_folder); every other folder is results_dir's
_FOLDER_KEYS: dict[str, str] = {}
_KEY_DOC = {
    "results_dir": "the root of every run's results",
    "eval.cache_dir": "the T-CoT and embedding caches shared by runs",
}


def name_folder(folder: str | os.PathLike, key: str) -> None:
    """Messages about writes under ``folder`` name ``key`` as the config key that moves it
    (the innermost named folder wins; a folder nobody named is under ``results_dir``).

    >>> name_folder(cfg.eval_cache_dir, "eval.cache_dir")  # doctest: +SKIP
    """
    _FOLDER_KEYS[os.path.abspath(folder)] = key


def folder_key(path: str | os.PathLike) -> str:
    """The config key that moves the folder ``path`` lies in (see :func:`name_folder`)."""
    p = os.path.abspath(path)
    named = [f for f in _FOLDER_KEYS if p == f or p.startswith(f.rstrip(os.sep) + os.sep)]
    return _FOLDER_KEYS[max(named, key=len)] if named else "results_dir"


def _unwritable(
    e: BaseException, path: Path, folder: Path, creating: bool = False
) -> StorageError | None:
    """A StorageError for ``e`` when it says ``folder`` cannot take the write of ``path``."""
    if isinstance(e, StorageError):
        return None
    code = e.errno if isinstance(e, OSError) else None
    if code not in _UNWRITABLE:
        code = next((c for text, c in _UNWRITABLE_TEXT.items() if text in str(e)), code)
    if creating and code == errno.ENOENT:
        why = "cannot be created"  # mkdir under /proc, say
    elif code in _UNWRITABLE:
        # the body may read inputs too: an error about a file elsewhere is not this folder's
        other = getattr(e, "filename", None)
        inside = os.path.abspath(folder).rstrip(os.sep) + os.sep
        if not creating and other and not os.path.abspath(other).startswith(inside):
            return None
        why = _UNWRITABLE[code]
    else:
        return None
    key = folder_key(folder)
    return StorageError(
        f"cannot write {path}: the folder {folder} {why} ({e}). Nothing was left "
        f"half-written. Free space or make the folder writable, or move it: set {key} "
        f"({_KEY_DOC.get(key, 'the folder')}) to a writable folder with room"
    )


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
