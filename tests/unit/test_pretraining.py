"""Pretraining examples of the tiny backbones: deterministic, right answers, answer-only loss."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ume.config import PretrainPhaseConfig, config_from_dict
from ume.data.pretraining import TASKS, box_iou, example, task_schedule
from ume.errors import ConfigError
from ume.suites.synth.scenes import COLORS

pytestmark = pytest.mark.unit

SIZES = {"image_size": 96, "doc_size": 128, "num_frames": 8}


def test_examples_are_a_function_of_seed_and_index():
    for task in TASKS:
        a, b = example(task, 3, 7, **SIZES), example(task, 3, 7, **SIZES)
        assert a.target == b.target
        assert [np.asarray(i).tobytes() for i in a.images] == [
            np.asarray(i).tobytes() for i in b.images
        ]
        assert example(task, 4, 7, **SIZES).target != a.target or task == "region"


def test_the_answers_are_what_the_images_show():
    for i in range(20):
        g = example("ground", 0, i, **SIZES)
        box = json.loads(g.target)["bbox_2d"]
        assert box == g.truth["box"] and all(0 <= v <= 1000 for v in box)
        # the box holds the named colour: its centre pixel is drawn in it
        img = np.asarray(g.images[0])
        x = (box[0] + box[2]) * SIZES["image_size"] // 2000
        y = (box[1] + box[3]) * SIZES["image_size"] // 2000
        colour = g.content[1]["text"].split()[3]
        assert tuple(img[y, x]) == COLORS[colour]
        c = example("crop", 0, i, **SIZES)
        assert c.target.split()[0] in COLORS and len(c.images) == 1
    v = example("video", 0, 1, **SIZES)
    assert len(v.images) == 8 and [p["text"] for p in v.content[:1]] == ["Frame 1:"]
    assert json.dumps({"key_frames": v.truth["key_frames"]}) in v.target


def test_region_answers_name_what_the_box_holds():
    answers = set()
    for i in range(40):
        r = example("region", 1, i, **SIZES)
        box = json.loads(r.content[1]["text"].split("region ", 1)[1].rstrip("?"))["bbox_2d"]
        img = np.asarray(r.images[0])
        x = (box[0] + box[2]) * SIZES["image_size"] // 2000
        y = (box[1] + box[3]) * SIZES["image_size"] // 2000
        if r.target == "nothing":
            assert tuple(img[y, x]) not in COLORS.values()
        else:
            assert tuple(img[y, x]) == COLORS[r.target.split()[0]]
        answers.add(r.target == "nothing")
    assert answers == {True, False}


def test_schedule_follows_the_phases():
    phases = [
        PretrainPhaseConfig(steps=3, tasks={"crop": 1.0}),
        PretrainPhaseConfig(steps=5, tasks={"caption": 1.0, "ground": 1.0}),
    ]
    s = task_schedule(phases, 4, seed=0)
    assert len(s) == 8 * 4 and set(s[:12]) == {"crop"} and set(s[12:]) <= {"caption", "ground"}
    assert s == task_schedule(phases, 4, seed=0)
    with pytest.raises(ConfigError, match="'ocr' is not allowed"):
        task_schedule([PretrainPhaseConfig(steps=1, tasks={"ocr": 1.0})], 2, seed=0)


def test_config_checks_the_phases():
    with pytest.raises(
        ConfigError, match=r"pretrain\.phases\[0\]\.tasks\.ocr.*'ocr' is not allowed"
    ):
        config_from_dict({"pretrain": {"phases": [{"steps": 2, "tasks": {"ocr": 1.0}}]}})
    with pytest.raises(ConfigError, match=r"pretrain\.phases\[0\]\.steps"):
        config_from_dict({"pretrain": {"phases": [{"steps": 0, "tasks": {"crop": 1.0}}]}})
    cfg = config_from_dict({"pretrain": {"phases": [{"steps": 2}, {"steps": 3}]}})
    assert cfg.pretrain.steps == 5


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_summary_ends_with_the_embedders_closing_line_and_names_the_content():
    from ume.inputs import SUMMARIZE

    kinds = set()
    for i in range(24):
        s = example("summary", 2, i, **SIZES)
        assert s.content[-1] == {"type": "text", "text": SUMMARIZE}
        assert s.target and not s.target.startswith("a ") and " the " not in s.target
        n_img = sum(p["type"] == "image" for p in s.content)
        assert n_img == len(s.images)
        kinds.add(n_img)
    assert kinds == {0, 1, 8}  # text, scene or crop, video
