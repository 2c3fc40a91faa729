"""Synthetic training pairs (the embedded default's training data).

:func:`write_training_pairs` writes the media of :data:`TRAIN_DATASETS` and returns their
pairs (:mod:`ume.items` format; absolute paths; ground truth ``gt`` on both sides), drawn
from the same world as the synthetic benchmark (:mod:`ume.suites.synth.content`), each
dataset from its own random stream (``task_rng`` of its name).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from ume.config import SyntheticConfig
from ume.items import Item, pair_row, pairs_frame
from ume.suites.synth.content import (
    doc_pages,
    doc_reports,
    event_gt,
    fine_scene,
    ground_truth,
    object_gt,
    random_event,
    static_objects,
    task_rng,
)
from ume.suites.synth.scenes import (
    CELLS,
    describe_scene,
    obj_box,
    obj_pixels,
    render_scene,
    save_png,
    to_rel,
    video_frames,
    write_frames,
)

#: Training datasets written by :func:`write_training_pairs` -> task modality.
#: ``synth_img_fewcls`` has two classes only (the HatefulMemes/N24News/VOC2007 case that the
#: paper keeps out of contrastive training).
TRAIN_DATASETS: dict[str, str] = {
    "synth_img_cls": "image",
    "synth_img_fewcls": "image",
    "synth_img_vqa": "image",
    "synth_img_ret": "image",
    "synth_img_grounding": "image",
    "synth_vid_caption": "video",
    "synth_vid_qa": "video",
    "synth_vid_ret": "video",
    "synth_doc_ret": "visdoc",
}


def write_training_pairs(cfg: SyntheticConfig, root: Path):
    """Write the media of :data:`TRAIN_DATASETS` under ``root/<dataset>/`` and return the
    pairs (``ume.items`` format; absolute paths; ``gt`` on both sides)."""
    root = Path(root).resolve()
    rows = []
    for ds, modality in TRAIN_DATASETS.items():
        folder = root / ds
        if folder.exists():
            shutil.rmtree(folder)
        rng = task_rng(cfg, ds)
        for k in range(cfg.train_pairs_per_dataset):
            qry, pos = _TRAIN[ds](cfg, rng, folder, k)
            rows.append(pair_row(f"{ds}:{k}", ds, modality, qry, pos))
    return pairs_frame(rows)


def _img(objs, size: int, path: Path) -> str:
    return str(save_png(render_scene(objs, size), path))


def _t_cls(cfg, rng, folder, k, few: bool = False):
    size = cfg.image_size
    t, objs = fine_scene(rng, cfg.shapes_per_image)
    t = replace(t, scale=1.0)
    objs = [t if o.cell == t.cell else replace(o, scale=0.5) for o in objs]
    path = _img(objs, size, folder / f"{k:05d}.png")
    if few:
        label = "warm" if t.color in ("red", "orange", "yellow") else "cool"
        desc = f"the largest object is {t.describe()}, a {label} colour"
        gt = ground_truth([obj_box(t, size)], None, [t.color, t.shape, label], desc)
    else:
        label, desc = t.label, f"the largest object is {t.describe()}"
        gt = object_gt(t, size, desc)
    q = Item(
        "image",
        "Represent the given image for classification by its largest object",
        "",
        path,
        gt=gt,
    )
    p = Item(
        "text",
        "Represent the class label:",
        label,
        gt=ground_truth(None, None, label.split(), f"the class {label}"),
    )
    return q, p


def _t_vqa(cfg, rng, folder, k):
    size = cfg.image_size
    t, objs = fine_scene(rng, max(3, cfg.shapes_per_image))
    path = _img(objs, size, folder / f"{k:05d}.png")
    question = f"What colour is the {t.shape} at the {t.where}?"
    q = Item(
        "image",
        "Represent the given image with the following question:",
        question,
        path,
        gt=object_gt(t, size),
    )
    p = Item("text", "", t.color, gt=ground_truth(None, None, [t.color], f"the answer {t.color}"))
    return q, p


def _t_ret(cfg, rng, folder, k):
    size = cfg.image_size
    _, objs = fine_scene(rng, cfg.shapes_per_image)
    desc = describe_scene(objs)
    kw = [w for o in objs for w in (o.color, o.shape)]
    path = _img(objs, size, folder / f"{k:05d}.png")
    q = Item(
        "text",
        "Find me an everyday image that matches the given caption:",
        desc,
        gt=ground_truth(None, None, kw, desc),
    )
    p = Item(
        "image",
        "Represent the given image.",
        "",
        path,
        gt=ground_truth([obj_box(o, size) for o in objs], None, kw, desc),
    )
    return q, p


def _t_grounding(cfg, rng, folder, k):
    from PIL import Image

    size = cfg.image_size
    t, objs = fine_scene(rng, max(3, cfg.shapes_per_image))
    path = _img(objs, size, folder / f"{k:05d}.png")
    x1, y1, x2, y2 = obj_pixels(t, size)
    with Image.open(path) as im:
        crop = im.crop((x1, y1, x2 + 1, y2 + 1))
    cpath = str(save_png(crop, folder / f"{k:05d}_crop.png"))
    q = Item(
        "image",
        "Select the portion of the image that isolates the object:",
        f"the {t.label}",
        path,
        gt=object_gt(t, size),
    )
    w, h = crop.size
    p = Item(
        "image",
        "Represent the given cropped image of the object.",
        "",
        cpath,
        gt=ground_truth(
            [to_rel((0, 0, w - 1, h - 1), w, h)], None, [t.color, t.shape], f"a {t.label}"
        ),
    )
    return q, p


def _t_video(cfg, rng, folder, k, what: str):
    e = random_event(rng, cfg.num_frames, set())
    static = static_objects(rng, e, cfg.shapes_per_image - 1)
    paths = write_frames(
        video_frames(static, [e], cfg.num_frames), cfg.image_size, folder / f"{k:05d}"
    )
    frames = tuple(str(p) for p in paths)
    g = event_gt(e, cfg.image_size)
    cap = e.describe()
    if what == "caption":  # video -> caption
        q = Item("video", "Describe the content of the video.", "", frames=frames, gt=g)
        p = Item("text", "", cap, gt=ground_truth(None, None, g["keywords"], cap))
    elif what == "ret":  # caption -> video
        q = Item(
            "text",
            "Find a video that contains the following visual content:",
            cap,
            gt=ground_truth(None, None, g["keywords"], cap),
        )
        p = Item("video", "Understand the content of the provided video.", "", frames=frames, gt=g)
    else:  # qa
        o = e.obj
        if e.kind == "moves":
            question, ans = f"Where does the {o.label} move to?", CELLS[e.new_cell]
        elif e.kind == "changes colour":
            question, ans = f"What colour does the {o.shape} at the {o.where} turn?", e.new_color
        else:
            question, ans = f"What colour is the {o.shape} that appears?", o.color
        q = Item("video", "Answer the question about the video:", question, frames=frames, gt=g)
        p = Item("text", "", ans, gt=ground_truth(None, None, [ans], f"the answer {ans}"))
    return q, p


def _t_doc(cfg, rng, folder, k):
    r = doc_reports(rng, 1)[0]
    img, boxes, title, lines = doc_pages(r, k, cfg.doc_size)[0]
    path = str(save_png(img, folder / f"{k:05d}.png"))
    text = f"Which report counts {r['count']} {r['color']} {r['shape']}s?"
    kw = [r["color"], r["shape"], str(r["count"])]
    q = Item(
        "text",
        "Find a document image that matches the given query:",
        text,
        gt=ground_truth(None, None, kw, text),
    )
    p = Item(
        "document",
        "Understand the content of the provided document image.",
        "",
        path,
        gt=ground_truth([boxes[1], boxes[2], boxes[3]], None, kw, f"{title}: " + "; ".join(lines)),
    )
    return q, p


_TRAIN = {
    "synth_img_cls": _t_cls,
    "synth_img_fewcls": lambda c, r, f, k: _t_cls(c, r, f, k, few=True),
    "synth_img_vqa": _t_vqa,
    "synth_img_ret": _t_ret,
    "synth_img_grounding": _t_grounding,
    "synth_vid_caption": lambda c, r, f, k: _t_video(c, r, f, k, "caption"),
    "synth_vid_qa": lambda c, r, f, k: _t_video(c, r, f, k, "qa"),
    "synth_vid_ret": lambda c, r, f, k: _t_video(c, r, f, k, "ret"),
    "synth_doc_ret": _t_doc,
}
