"""The base-model stage: one ``backbone.json`` per role, pointing at the folder to load.

For ``source: tiny`` the folder is built here (a tiny random-initialised model of the real
architecture class, saved with ``save_pretrained``); for ``source: path`` the local folder is
checked and recorded. Later stages read ``backbone.json`` and never guess paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from ume.config import Config
from ume.errors import DataError
from ume.fingerprints import checksum
from ume.io import Manifest, write_json

ROLES = ("embedder", "reasoner", "discriminator", "annotator")


def build_base_models(cfg: Config, out_root: str | Path, roles: tuple[str, ...] = ROLES) -> None:
    from ume.models.backbone import resolve_backbone
    from ume.models.tiny import build_tiny

    out_root = Path(out_root)
    manifest = Manifest("models", cfg.sections())
    records = {}
    for role in roles:
        bcfg = getattr(cfg.models, role)
        tiny_dir = None
        if bcfg.source == "tiny":
            tiny_dir = build_tiny(bcfg.family, cfg.models.tiny, out_root / role / "model")
        path = resolve_backbone(role, bcfg, tiny_dir)
        rec = {
            "role": role,
            "source": bcfg.source,
            "family": bcfg.family,
            "path": record_path(path, out_root / role),
            "dtype": bcfg.dtype,
            "attn_implementation": bcfg.attn_implementation,
        }
        if bcfg.source == "tiny":
            rec["weights_sha256"] = checksum(Path(path))
        records[role] = rec
        write_json(out_root / role / "backbone.json", rec)
    manifest.record(models=records)
    manifest.write(out_root)


def record_path(model_dir: str | Path, record_dir: str | Path) -> str:
    """The ``path`` field of a ``backbone.json`` in ``record_dir`` for the model in ``model_dir``.

    A model written inside the record's folder (tiny base models, trained stages) is stored
    relative to it, so a results folder can be moved or shared; any other folder (a real
    backbone named in the config) stays absolute.
    """
    model_dir, record_dir = Path(model_dir).resolve(), Path(record_dir).resolve()
    if model_dir.is_relative_to(record_dir):
        return model_dir.relative_to(record_dir).as_posix()
    return str(model_dir)


def read_backbone(path: str | Path) -> dict:
    """Read a ``backbone.json`` (base models or a trained stage); ``path`` comes back absolute."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path}: not found; the models stage (rules base_models, pretrain_tiny) writes it"
        )
    rec = json.loads(path.read_text())
    rec["path"] = str((path.parent / rec["path"]).resolve())  # relative: to the record's folder
    if not Path(rec["path"]).exists():
        raise DataError(f"{path}: model folder {rec['path']} is gone; rerun rule base_models")
    return rec
