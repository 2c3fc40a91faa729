"""Pretraining examples for the tiny backbones: what a real MLLM knows before this project.

A real Qwen-VL arrives able to see and to say what it sees; a tiny random-initialised one
does not, so the embedded default first pretrains it (:mod:`ume.train.pretrain`) on
image-to-text examples drawn here, in the synthetic world's own vocabulary and coordinate
conventions:

``caption``
    a scene -> ``"a red circle at the top-left, a blue square at the center"`` (objects in
    grid order);
``ground``
    a scene + ``"Where is the red circle?"`` -> ``{"bbox_2d": [x1, y1, x2, y2]}`` in the
    0..1000 coordinates of the T-CoT evidence;
``region``
    a scene + a box in those coordinates -> what it holds (``"a red circle"`` or
    ``"nothing"``): boxes read back, as evidence crops are;
``crop``
    a crop of one object (as an evidence crop is cut) -> ``"a red circle"``;
``video``
    frames labelled ``Frame k:`` (1-based, as the Embedder input and the prompts number
    them) -> the event and its key frames ``{"key_frames": [k, ...]}``;
``document``
    a rendered page of ``key: value`` lines -> its keywords;
``summary``
    a scene, a crop, a video or a caption as *text*, followed by the Embedder's closing line
    ("Summarize the above content in one word:") -> its content words (``"red circle blue
    square"``): the summarising a real instruction-tuned MLLM does at the end of a prompt,
    which is where the Embedder reads its embedding (the ``<emb>`` position).

Examples are a pure function of ``(seed, index)``: :func:`example` draws from
``numpy.random.default_rng([seed, SALT, index])``. ``SALT`` keeps this stream apart from
the synthetic training pairs and benchmark (``ume.suites.synth`` and ``ume.data.synthetic_pairs`` seeds its generators
with ``[seed, crc32(task)]``, two numbers), whatever seeds the config gives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ume.config import PRETRAIN_TASKS
from ume.errors import ConfigError
from ume.suites.synth.scenes import (
    COLORS,
    EVENT_KINDS,
    SHAPES,
    Event,
    Obj,
    obj_box,
    obj_pixels,
    render_page,
    render_scene,
    video_frames,
)

TASKS: tuple[str, ...] = PRETRAIN_TASKS  # the config names them (pretrain.phases[].tasks)
#: Third seed word of the pretraining stream (the synthetic data uses two-word seeds).
SALT = 0x7072_6574  # "pret"
HELD_OUT = 1 << 30  # held-out examples (the stage's probe) start at this index

COLOR_NAMES = tuple(COLORS)
SCALES = (1.0, 1.0, 1.0, 0.7)  # mostly whole cells, as the synthetic data draws them
_CITIES = ("Oslo", "Lima", "Kyoto", "Accra", "Quito", "Perth", "Turin", "Dakar")

PROMPTS = {
    "caption": "Describe the image.",
    "ground": "Where is the {label}? Give its box.",
    "region": "What is in the region {box}?",
    "crop": "What is shown?",
    "video": "What happens in the video, and in which frames?",
    "document": "What does the page say?",
}


@dataclass
class Example:
    """One pretraining example: a user turn (images and text parts in order) and the answer."""

    task: str
    content: list[dict[str, str]]  # {"type": "image"} | {"type": "text", "text": ...}
    images: list[Image.Image]
    target: str
    truth: dict[str, Any] = field(default_factory=dict)  # what the probe scores against

    def messages(self, with_answer: bool = True) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = [{"role": "user", "content": self.content}]
        if with_answer:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": self.target}]})
        return msgs


def _pick(rng: np.random.Generator, seq, exclude=()) -> Any:
    opts = [x for x in seq if x not in exclude]
    return opts[int(rng.integers(len(opts)))]


def _scene(rng: np.random.Generator, lo: int = 1, hi: int = 4) -> list[Obj]:
    """``lo``..``hi`` objects in distinct cells, no two of the same colour and shape."""
    n = int(rng.integers(lo, hi + 1))
    cells = sorted(int(c) for c in rng.permutation(9)[:n])
    labels = [(str(s), str(c)) for s in SHAPES for c in COLOR_NAMES]
    picks = rng.permutation(len(labels))[:n]
    return [
        Obj(labels[int(i)][0], labels[int(i)][1], c, float(_pick(rng, SCALES)))
        for c, i in zip(cells, picks, strict=True)
    ]


def _caption(objs: list[Obj]) -> str:
    return ", ".join(o.describe() for o in sorted(objs, key=lambda o: o.cell))


def _image_example(task: str, img: Image.Image, text: str, target: str, **truth) -> Example:
    return Example(task, [{"type": "image"}, {"type": "text", "text": text}], [img], target, truth)


def example(task: str, seed: int, index: int, *, image_size: int, doc_size: int, num_frames: int):
    """The pretraining example ``index`` of ``task`` (deterministic in its arguments)."""
    rng = np.random.default_rng([seed, SALT, TASKS.index(task), index])
    size = image_size
    if task == "caption":
        objs = _scene(rng)
        return _image_example(task, render_scene(objs, size), PROMPTS[task], _caption(objs))
    if task == "ground":
        objs = _scene(rng)
        t = objs[int(rng.integers(len(objs)))]
        box = obj_box(t, size)
        target = json.dumps({"bbox_2d": box})
        text = PROMPTS[task].format(label=t.label)
        return _image_example(task, render_scene(objs, size), text, target, box=box)
    if task == "region":
        objs = _scene(rng)
        at = {o.cell: o for o in objs}
        # an object two times in three: "nothing" would otherwise be most answers
        cell = _pick(rng, sorted(at)) if rng.random() < 2 / 3 else int(rng.integers(9))
        box = obj_box(at[cell], size) if cell in at else obj_box(Obj("square", "red", cell), size)
        target = at[cell].label if cell in at else "nothing"
        text = PROMPTS[task].format(box=json.dumps({"bbox_2d": box}))
        return _image_example(task, render_scene(objs, size), text, f"{target}", label=target)
    if task == "crop":
        objs = _scene(rng)
        t = objs[int(rng.integers(len(objs)))]
        x1, y1, x2, y2 = obj_pixels(t, size)
        pad = [int(v) for v in rng.integers(0, max(2, size // 24), size=4)]
        box = (max(0, x1 - pad[0]), max(0, y1 - pad[1]), min(size, x2 + 1 + pad[2]))
        box = (*box, min(size, y2 + 1 + pad[3]))
        crop = render_scene(objs, size).crop(box)
        return _image_example(task, crop, PROMPTS[task], t.label, label=t.label)
    if task == "video":
        return _video(rng, size, num_frames)
    if task == "document":
        return _document(rng, doc_size)
    if task == "summary":
        return _summary(rng, size, num_frames)
    raise ConfigError(f"pretrain.tasks: unknown task {task!r}; known: {', '.join(TASKS)}")


def _video(rng: np.random.Generator, size: int, num_frames: int) -> Example:
    kind = _pick(rng, EVENT_KINDS)
    static = _scene(rng, 0, 2)
    taken = {o.cell for o in static}
    cell = _pick(rng, range(9), taken)
    o = Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), cell)
    length = int(rng.integers(1, max(2, num_frames // 3) + 1))
    start = int(rng.integers(1, num_frames - length + 2))
    if kind == "changes colour":
        e = Event(kind, o, start, start + length - 1, new_color=_pick(rng, COLOR_NAMES, (o.color,)))
    elif kind == "moves":
        e = Event(kind, o, start, start + length - 1, new_cell=_pick(rng, range(9), taken | {cell}))
    else:
        e = Event(kind, o, start, start + length - 1)
    frames = [render_scene(f, size) for f in video_frames(static, [e], num_frames)]
    content: list[dict[str, str]] = []
    for k in range(num_frames):
        content += [{"type": "text", "text": f"Frame {k + 1}:"}, {"type": "image"}]
    content.append({"type": "text", "text": PROMPTS["video"]})
    target = f"{e.describe()} {json.dumps({'key_frames': e.key_frames})}"
    return Example("video", content, frames, target, {"key_frames": e.key_frames})


def _document(rng: np.random.Generator, size: int) -> Example:
    color, shape = _pick(rng, COLOR_NAMES), _pick(rng, SHAPES)
    count, city = int(rng.integers(2, 10)), _pick(rng, _CITIES)
    lines = [f"colour: {color}", f"shape: {shape}", f"count: {count}", f"city: {city}"]
    img, _ = render_page(f"Report {int(rng.integers(100))}", lines, size)
    target = f"{color} {shape} {count} {city}"
    return _image_example("document", img, PROMPTS["document"], target, keywords=target.split())


def _summary(rng: np.random.Generator, size: int, num_frames: int) -> Example:
    from ume.inputs import SUMMARIZE

    kind = int(rng.integers(4))
    objs = _scene(rng)
    words = " ".join(o.label for o in sorted(objs, key=lambda o: o.cell))
    if kind == 0:  # a scene
        content, images = [{"type": "image"}], [render_scene(objs, size)]
    elif kind == 1:  # a caption as text
        content, images = [{"type": "text", "text": _caption(objs)}], []
    elif kind == 2:  # a crop of one object
        t = objs[int(rng.integers(len(objs)))]
        x1, y1, x2, y2 = obj_pixels(t, size)
        images = [render_scene(objs, size).crop((x1, y1, x2 + 1, y2 + 1))]
        content, words = [{"type": "image"}], t.label
    else:  # a video: what happens
        v = _video(rng, size, num_frames)
        content, images = v.content[:-1], v.images
        stop = {"a", "the", "from", "to", "at"}
        words = " ".join(w for w in v.target.split(" {")[0].split() if w not in stop)
    content = [*content, {"type": "text", "text": SUMMARIZE}]
    return Example("summary", content, images, words)


def task_schedule(phases: Sequence[Any], batch_size: int, seed: int) -> list[str]:
    """The task of every example: phase after phase (each with ``steps`` and task weights
    ``tasks``), ``steps * batch_size`` examples drawn with probabilities proportional to the
    phase's weights (tasks of weight 0 never appear). Tasks are mixed inside a batch: batches
    of one task each made training unstable (the loss jumped whenever the task changed)."""
    rng = np.random.default_rng([seed, SALT])
    out: list[str] = []
    for phase in phases:
        weights = phase.tasks
        unknown = sorted(set(weights) - set(TASKS))
        if unknown:
            raise ConfigError(
                f"pretrain.phases: unknown task(s) {unknown}; known: {', '.join(TASKS)}"
            )
        names = [t for t in TASKS if weights.get(t, 0) > 0]
        if not names:
            raise ConfigError("pretrain.phases: give at least one task a positive weight")
        p = np.array([weights[t] for t in names], dtype=float)
        out += [
            names[i] for i in rng.choice(len(names), size=phase.steps * batch_size, p=p / p.sum())
        ]
    return out


def box_iou(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes.

    >>> box_iou([0, 0, 10, 10], [5, 0, 15, 10])
    0.3333333333333333
    """
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
