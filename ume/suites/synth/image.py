"""Synthetic image tasks in the ``mmeb_image`` layout: classification, VQA, retrieval both
ways, grounding. Scenes of coloured shapes; distractors recolour, move or swap the target."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ume.config import SyntheticConfig
from ume.io import write_parquet
from ume.suites.base import task_dir
from ume.suites.mmeb_image import candidate_id
from ume.suites.synth.common import TABLE, write_sidecar
from ume.suites.synth.content import (
    COLOR_NAMES,
    choose,
    fine_scene,
    ground_truth,
    object_gt,
    random_scene,
    task_rng,
)
from ume.suites.synth.scenes import (
    CELLS,
    SHAPES,
    Obj,
    describe_scene,
    obj_box,
    render_scene,
    save_png,
)


def _recolor(o: Obj, rng: np.random.Generator) -> Obj:
    return replace(o, color=choose(rng, COLOR_NAMES, (o.color,)))


def _move(o: Obj, rng: np.random.Generator, taken: set[int]) -> Obj:
    return replace(o, cell=choose(rng, range(9), taken | {o.cell}))


def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def _image_table(
    cfg: SyntheticConfig,
    root: Path,
    name: str,
    rows: list[dict],
    query_gt: dict,
    candidate_gt: dict,
) -> None:
    import pandas as pd

    folder = task_dir("mmeb_image", name, root)
    df = pd.DataFrame(
        rows,
        columns=["qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text", "tgt_img_path"],
    )
    write_parquet(folder / TABLE, df)
    write_sidecar(folder, query_gt, candidate_gt)


def _write_cls(cfg: SyntheticConfig, root: Path, name: str) -> None:
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, query_gt, candidate_gt = [], {}, {}
    for q in range(cfg.eval_queries):
        big = Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), 4, scale=1.3)
        corners = [int(c) for c in rng.permutation([0, 2, 6, 8])]
        clutter = [Obj(big.shape, choose(rng, COLOR_NAMES, (big.color,)), corners[0], 0.5)]
        clutter += [
            Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), c, 0.5)
            for c in corners[1 : max(1, cfg.shapes_per_image - 1)]
        ]
        path = save_png(render_scene([big, *clutter], size), img_root / name / f"q{q:04d}.png")
        labels = [big.label]
        same_shape = [f"{c} {big.shape}" for c in rng.permutation(COLOR_NAMES) if c != big.color]
        same_color = [f"{big.color} {s}" for s in rng.permutation(SHAPES) if s != big.shape]
        others = [f"{c} {s}" for c in rng.permutation(COLOR_NAMES) for s in SHAPES]
        for lab in [*same_shape[:2], *same_color[:1], *same_shape[2:], *same_color[1:], *others]:
            if lab not in labels and len(labels) < cfg.eval_candidates:
                labels.append(lab)
        rows.append(
            {
                "qry_inst": "<|image_1|>\nRepresent the given image for classification by its largest object",
                "qry_text": "",
                "qry_img_path": _rel(path, img_root),
                "tgt_inst": "Represent the class label:",
                "tgt_text": labels,
                "tgt_img_path": [""] * len(labels),
            }
        )
        query_gt[str(q)] = object_gt(big, size, f"the largest object is {big.describe()}")
        for lab in labels:
            c, s = lab.split()
            candidate_gt[candidate_id("", lab)] = ground_truth(
                None, None, [c, s], f"the class {lab}"
            )
    _image_table(cfg, root, name, rows, query_gt, candidate_gt)


def _write_vqa(cfg: SyntheticConfig, root: Path, name: str) -> None:
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, query_gt, candidate_gt = [], {}, {}
    for q in range(cfg.eval_queries):
        t, objs = fine_scene(rng, max(3, cfg.shapes_per_image))
        path = save_png(render_scene(objs, size), img_root / name / f"q{q:04d}.png")
        if q % 2 == 0:
            question = f"What colour is the {t.shape} at the {t.where}?"
            answer, pool = t.color, [o.color for o in objs] + list(rng.permutation(COLOR_NAMES))
        else:
            question = f"What shape is the {t.color} object at the {t.where}?"
            answer, pool = t.shape, [o.shape for o in objs] + list(rng.permutation(SHAPES))
        answers = [answer]
        for a in pool:
            if a not in answers and len(answers) < cfg.eval_candidates:
                answers.append(str(a))
        rows.append(
            {
                "qry_inst": "<|image_1|>\nRepresent the given image with the following question:",
                "qry_text": question,
                "qry_img_path": _rel(path, img_root),
                "tgt_inst": "",
                "tgt_text": answers,
                "tgt_img_path": [""] * len(answers),
            }
        )
        query_gt[str(q)] = object_gt(t, size, f"{question} The answer is {answer}: {t.describe()}")
        for a in answers:
            candidate_gt[candidate_id("", a)] = ground_truth(None, None, [a], f"the answer {a}")
    _image_table(cfg, root, name, rows, query_gt, candidate_gt)


def _scene_variants(rng, objs: list[Obj], t: Obj, n: int) -> list[list[Obj]]:
    """``n`` distractor scenes of ``objs``: the target recoloured, moved, or another object
    changed; all differ from ``objs`` and from each other."""
    out: list[list[Obj]] = []
    seen = {tuple(sorted(o.label + o.where for o in objs))}
    taken = {o.cell for o in objs}
    for k in range(n * 20):
        if len(out) >= n:
            break
        mode = k % 3
        i = objs.index(t) if mode < 2 else int(rng.integers(len(objs)))
        o = objs[i]
        new = _recolor(o, rng) if mode != 1 else _move(o, rng, taken)
        if mode == 1 and len(taken) >= 9:
            new = _recolor(o, rng)
        v = [*objs[:i], new, *objs[i + 1 :]]
        key = tuple(sorted(x.label + x.where for x in v))
        if key not in seen:
            seen.add(key)
            out.append(v)
    while len(out) < n:  # tiny configs: fall back to fresh random scenes
        v = random_scene(rng, len(objs))
        key = tuple(sorted(x.label + x.where for x in v))
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def _write_ret(cfg: SyntheticConfig, root: Path, name: str, t2i: bool) -> None:
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, query_gt, candidate_gt = [], {}, {}
    for q in range(cfg.eval_queries):
        t, objs = fine_scene(rng, cfg.shapes_per_image)
        scenes = [objs, *_scene_variants(rng, objs, t, cfg.eval_candidates - 1)]
        descs = [describe_scene(s) for s in scenes]
        gts = [
            ground_truth(
                [obj_box(o, size) for o in s], None, [w for o in s for w in (o.color, o.shape)], d
            )
            for s, d in zip(scenes, descs, strict=True)
        ]
        if t2i:
            paths = [
                _rel(
                    save_png(render_scene(s, size), img_root / name / f"c{q:04d}_{j}.png"), img_root
                )
                for j, s in enumerate(scenes)
            ]
            rows.append(
                {
                    "qry_inst": "Find me an everyday image that matches the given caption:",
                    "qry_text": descs[0],
                    "qry_img_path": "",
                    "tgt_inst": "<|image_1|>\nRepresent the given image.",
                    "tgt_text": [""] * len(paths),
                    "tgt_img_path": paths,
                }
            )
            query_gt[str(q)] = ground_truth(None, None, gts[0]["keywords"], descs[0])
            for p, g in zip(paths, gts, strict=True):
                candidate_gt[candidate_id(p, "")] = g
        else:
            path = save_png(render_scene(objs, size), img_root / name / f"q{q:04d}.png")
            rows.append(
                {
                    "qry_inst": "<|image_1|>\nFind an image caption describing the given everyday image.",
                    "qry_text": "",
                    "qry_img_path": _rel(path, img_root),
                    "tgt_inst": "",
                    "tgt_text": descs,
                    "tgt_img_path": [""] * len(descs),
                }
            )
            query_gt[str(q)] = gts[0]
            for d, g in zip(descs, gts, strict=True):
                candidate_gt[candidate_id("", d)] = ground_truth(None, None, g["keywords"], d)
    _image_table(cfg, root, name, rows, query_gt, candidate_gt)


def _cell_box(cell: int, size: int) -> list[int]:
    return obj_box(Obj("square", "red", cell, scale=1.0), size)


def _write_grounding(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """RefCOCO-Matching style: query = image + referring expression; candidates = the same
    image with a region phrase each (ids ``img_path:text``, several share an image)."""
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, query_gt, candidate_gt = [], {}, {}
    for q in range(cfg.eval_queries):
        t, objs = fine_scene(rng, max(3, cfg.shapes_per_image))
        path = save_png(render_scene(objs, size), img_root / name / f"q{q:04d}.png")
        rel = _rel(path, img_root)
        cells = [o.cell for o in objs] + [int(c) for c in rng.permutation(9)]
        chosen: list[int] = []
        for c in cells:
            if c not in chosen and len(chosen) < min(cfg.eval_candidates, 9):
                chosen.append(c)
        texts = [f"the region at the {CELLS[c]}" for c in chosen]
        by_cell = {o.cell: o for o in objs}
        rows.append(
            {
                "qry_inst": "<|image_1|>\nSelect the portion of the image that isolates the object:",
                "qry_text": f"the {t.label}",
                "qry_img_path": rel,
                "tgt_inst": "<|image_1|>\nRepresent the given cropped image of the object:",
                "tgt_text": texts,
                "tgt_img_path": [rel] * len(texts),
            }
        )
        query_gt[str(q)] = object_gt(t, size, f"the {t.label} is at the {t.where}")
        for c, txt in zip(chosen, texts, strict=True):
            o = by_cell.get(c)
            candidate_gt[candidate_id(rel, txt)] = (
                object_gt(o, size)
                if o
                else ground_truth(
                    [_cell_box(c, size)], None, [CELLS[c]], f"an empty region at the {CELLS[c]}"
                )
            )
    _image_table(cfg, root, name, rows, query_gt, candidate_gt)
