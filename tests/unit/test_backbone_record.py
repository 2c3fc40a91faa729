"""backbone.json records are movable: a model inside the record's folder is stored relative."""

import json
import shutil

import pytest

from ume.errors import DataError
from ume.models.stage import read_backbone, record_path

pytestmark = pytest.mark.unit


def test_model_inside_the_record_folder_is_relative_and_survives_a_move(tmp_path):
    run = tmp_path / "run" / "models" / "embedder"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    rec = {"role": "embedder", "path": record_path(run / "model", run)}
    assert rec["path"] == "model"
    (run / "backbone.json").write_text(json.dumps(rec))
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "run", moved)
    got = read_backbone(moved / "models" / "embedder" / "backbone.json")
    assert got["path"] == str((moved / "models" / "embedder" / "model").resolve())


def test_a_folder_outside_the_record_stays_absolute(tmp_path):
    real = tmp_path / "checkpoints" / "Qwen3-VL-2B"
    real.mkdir(parents=True)
    assert record_path(real, tmp_path / "run" / "models" / "embedder") == str(real.resolve())


def test_a_gone_model_folder_names_the_rule(tmp_path):
    (tmp_path / "backbone.json").write_text(json.dumps({"path": "model"}))
    with pytest.raises(DataError, match="base_models"):
        read_backbone(tmp_path / "backbone.json")
