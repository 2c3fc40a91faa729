"""The synthetic benchmark (the embedded default's data), written in the real layouts.

:func:`write_benchmark` writes every task of :data:`SYNTH_TASKS` under a root in exactly the
layouts :func:`ume.data.benchmarks.load_task` reads for MMEB-V2 and UVRB, so one set of
loaders reads both; :func:`write_training_pairs` writes the training media and returns the
pairs (:mod:`ume.data.pairs` format) of :data:`TRAIN_DATASETS`.

Content in which evidence matters (drawing in :mod:`ume.data.scenes`):

* images of several coloured shapes in a 3x3 grid; ground-truth boxes (0..1000) of the
  objects a query is about;
* videos (frame folders) in which one event (a shape appears / changes colour / moves)
  happens in known frames (1-based key frames);
* rendered document pages with ``key: value`` lines the queries ask about.

Every task has *fine-grained distractors*: candidates with the positive's shape in another
colour or position (or the same event in other frames), so a model that ignores the
evidence confuses them. Every query and candidate carries ground truth (``gt``: boxes,
key_frames, keywords, description); for benchmark tasks it is stored in a sidecar
``_synth_gt.json`` that the loader attaches to the items.

Deterministic: each task draws from ``numpy.random.default_rng([seed, crc32(task)])``, and
PNG/JPEG/parquet writes carry no timestamps, so the same config gives byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ume.config import SyntheticConfig
from ume.data.benchmarks import GT_SIDECAR, candidate_id, task_dir
from ume.data.pairs import Item, pair_row, pairs_frame
from ume.data.scenes import (
    CELLS,
    COLORS,
    EVENT_KINDS,
    SHAPES,
    Event,
    Obj,
    describe_scene,
    obj_box,
    obj_pixels,
    render_page,
    render_scene,
    save_png,
    to_rel,
    video_frames,
    write_frames,
)
from ume.errors import DataError
from ume.eval.registry import TaskSpec, register_suite
from ume.io import write_json, write_parquet

COLOR_NAMES = tuple(COLORS)
TABLE = "test-00000-of-00001.parquet"


def _spec(name, modality, category, layout, ranking, metric, groups=(), **kw) -> TaskSpec:
    return TaskSpec(
        name=name,
        suite="synth",
        modality=modality,
        category=category,
        layout=layout,
        ranking=ranking,
        metric=metric,
        groups=groups,
        **kw,
    )


#: The synthetic suite: every MMEB-V2 category and the UVRB groups, in the real layouts.
SYNTH_TASKS: list[TaskSpec] = [
    _spec("SynthCLS", "image", "I-CLS", "mmeb_image", "local", "hit@1"),
    _spec("SynthVQA", "image", "I-QA", "mmeb_image", "local", "hit@1"),
    _spec("SynthT2I", "image", "I-RET", "mmeb_image", "local", "hit@1"),
    _spec("SynthI2T", "image", "I-RET", "mmeb_image", "local", "hit@1"),
    _spec("SynthGrounding", "image", "I-GD", "mmeb_image", "local", "hit@1"),
    _spec("SynthVideoCLS", "video", "V-CLS", "mmeb_video_cls", "global", "hit@1"),
    _spec("SynthVideoQA", "video", "V-QA", "mmeb_video_qa", "local", "hit@1"),
    _spec("SynthVideoRET", "video", "V-RET", "mmeb_video_ret", "global", "hit@1"),
    _spec("SynthMomentRET", "video", "V-MRET", "mmeb_video_mret", "local", "hit@1"),
    _spec("SynthDocRET", "visdoc", "VDRv1", "beir", "global", "ndcg_linear@5"),
    _spec(
        "SynthUVRB-CG", "video", "TXT", "uvrb", "global", "recall@1", ("CG",), recall_style="hit"
    ),
    _spec(
        "SynthUVRB-S", "video", "TXT", "uvrb", "global", "recall@1", ("FG", "S"), recall_style="hit"
    ),
    _spec(
        "SynthUVRB-T", "video", "TXT", "uvrb", "global", "recall@1", ("FG", "T"), recall_style="hit"
    ),
    _spec(
        "SynthUVRB-LC", "video", "TXT", "uvrb", "global", "recall@1", ("LC",), recall_style="hit"
    ),
    _spec("SynthUVRB-CMP", "video", "CMP", "uvrb", "global", "precision@1", recall_style="hit"),
    _spec("SynthUVRB-VIS", "video", "VIS", "uvrb", "global", "recall@1", recall_style="hit"),
]
register_suite("synth", SYNTH_TASKS)

#: Tasks built so that the evidence decides: grounding (which region holds the named
#: object), same-shape distractors (VQA: the named shape also stands elsewhere in another
#: colour), moments (which clip holds the event). Full input should beat no_evidence there.
EVIDENCE_TASKS: tuple[str, ...] = ("SynthGrounding", "SynthVQA", "SynthMomentRET")

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


# --------------------------------------------------------------------------- helpers
def task_rng(cfg: SyntheticConfig, name: str) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, zlib.crc32(name.encode())])


def _pick(rng: np.random.Generator, seq, exclude=()) -> Any:
    opts = [x for x in seq if x not in exclude]
    return opts[int(rng.integers(len(opts)))]


def _gt(
    boxes: list[list[int]] | None = None,
    key_frames: list[int] | None = None,
    keywords: list[str] | None = None,
    description: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if boxes is not None:
        out["boxes"] = boxes
    if key_frames is not None:
        out["key_frames"] = key_frames
    out["keywords"] = list(keywords or [])
    out["description"] = description
    return out


def _obj_gt(o: Obj, size: int, description: str = "") -> dict[str, Any]:
    return _gt([obj_box(o, size)], None, [o.color, o.shape, o.where], description or o.describe())


def random_scene(
    rng: np.random.Generator, n: int, *, taken: tuple[int, ...] = (), cells=None
) -> list[Obj]:
    """``n`` objects in distinct free cells with random shapes and colours."""
    free = [c for c in (cells if cells is not None else range(9)) if c not in taken]
    chosen = rng.permutation(len(free))[: max(0, min(n, len(free)))]
    return [Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), free[int(i)]) for i in sorted(chosen)]


def fine_scene(rng: np.random.Generator, n: int) -> tuple[Obj, list[Obj]]:
    """A target object plus distractors: same shape in another colour, same colour in
    another shape, then random objects (all in distinct cells, target label unique)."""
    cells = [int(c) for c in rng.permutation(9)[: max(2, n)]]
    t = Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), cells[0])
    objs = [t, Obj(t.shape, _pick(rng, COLOR_NAMES, (t.color,)), cells[1])]
    if len(cells) > 2:
        objs.append(Obj(_pick(rng, SHAPES, (t.shape,)), t.color, cells[2]))
    for c in cells[3:]:
        while True:
            o = Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), c)
            if o.label != t.label:
                break
        objs.append(o)
    return t, objs


def _recolor(o: Obj, rng: np.random.Generator) -> Obj:
    return replace(o, color=_pick(rng, COLOR_NAMES, (o.color,)))


def _move(o: Obj, rng: np.random.Generator, taken: set[int]) -> Obj:
    return replace(o, cell=_pick(rng, range(9), taken | {o.cell}))


def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def _sidecar(folder: Path, queries: dict[str, Any], candidates: dict[str, Any]) -> None:
    write_json(folder / GT_SIDECAR, {"queries": queries, "candidates": candidates})


def _frame_gt(e: Event, size: int, offset: int = 0) -> dict[str, Any]:
    o = e.active_obj()
    return _gt(
        [obj_box(o, size)],
        [k - offset for k in e.key_frames],
        [o.color, o.shape, e.kind, CELLS[o.cell]],
        e.describe(),
    )


def random_event(
    rng: np.random.Generator, num_frames: int, taken: set[int], *, kind: str | None = None
) -> Event:
    cell = _pick(rng, range(9), taken)
    o = Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), cell)
    kind = kind or _pick(rng, EVENT_KINDS)
    length = max(1, num_frames // 4)
    start = int(rng.integers(1, num_frames - length + 2))
    end = start + length - 1
    if kind == "changes colour":
        return Event(kind, o, start, end, new_color=_pick(rng, COLOR_NAMES, (o.color,)))
    if kind == "moves":
        return Event(kind, o, start, end, new_cell=_pick(rng, range(9), taken | {cell}))
    return Event(kind, o, start, end)


def _event_cells(e: Event) -> set[int]:
    return {e.obj.cell} | ({e.new_cell} if e.new_cell >= 0 else set())


def _static_for(rng: np.random.Generator, e: Event, n: int, *, twin: bool = True) -> list[Obj]:
    """Static objects around event ``e``: one of the event's shape in another colour (a
    distractor for models that ignore the key frames), then random ones."""
    taken = set(_event_cells(e))
    out = []
    if twin and n > 0:
        c = _pick(rng, range(9), taken)
        out.append(Obj(e.obj.shape, _pick(rng, COLOR_NAMES, (e.obj.color, e.new_color)), c))
        taken.add(c)
    out += random_scene(rng, n - len(out), taken=tuple(taken))
    return out


# --------------------------------------------------------------------------- MMEB image
def _image_table(
    cfg: SyntheticConfig, root: Path, name: str, rows: list[dict], qgt: dict, cgt: dict
) -> None:
    import pandas as pd

    folder = task_dir("mmeb_image", name, root)
    df = pd.DataFrame(
        rows,
        columns=["qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text", "tgt_img_path"],
    )
    write_parquet(folder / TABLE, df)
    _sidecar(folder, qgt, cgt)


def _write_cls(cfg: SyntheticConfig, root: Path, name: str) -> None:
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, qgt, cgt = [], {}, {}
    for q in range(cfg.eval_queries):
        big = Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), 4, scale=1.3)
        corners = [int(c) for c in rng.permutation([0, 2, 6, 8])]
        clutter = [Obj(big.shape, _pick(rng, COLOR_NAMES, (big.color,)), corners[0], 0.5)]
        clutter += [
            Obj(_pick(rng, SHAPES), _pick(rng, COLOR_NAMES), c, 0.5)
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
        qgt[str(q)] = _obj_gt(big, size, f"the largest object is {big.describe()}")
        for lab in labels:
            c, s = lab.split()
            cgt[candidate_id("", lab)] = _gt(None, None, [c, s], f"the class {lab}")
    _image_table(cfg, root, name, rows, qgt, cgt)


def _write_vqa(cfg: SyntheticConfig, root: Path, name: str) -> None:
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, qgt, cgt = [], {}, {}
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
        qgt[str(q)] = _obj_gt(t, size, f"{question} The answer is {answer}: {t.describe()}")
        for a in answers:
            cgt[candidate_id("", a)] = _gt(None, None, [a], f"the answer {a}")
    _image_table(cfg, root, name, rows, qgt, cgt)


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
    rows, qgt, cgt = [], {}, {}
    for q in range(cfg.eval_queries):
        t, objs = fine_scene(rng, cfg.shapes_per_image)
        scenes = [objs, *_scene_variants(rng, objs, t, cfg.eval_candidates - 1)]
        descs = [describe_scene(s) for s in scenes]
        gts = [
            _gt([obj_box(o, size) for o in s], None, [w for o in s for w in (o.color, o.shape)], d)
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
            qgt[str(q)] = _gt(None, None, gts[0]["keywords"], descs[0])
            for p, g in zip(paths, gts, strict=True):
                cgt[candidate_id(p, "")] = g
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
            qgt[str(q)] = gts[0]
            for d, g in zip(descs, gts, strict=True):
                cgt[candidate_id("", d)] = _gt(None, None, g["keywords"], d)
    _image_table(cfg, root, name, rows, qgt, cgt)


def _cell_box(cell: int, size: int) -> list[int]:
    return obj_box(Obj("square", "red", cell, scale=1.0), size)


def _write_grounding(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """RefCOCO-Matching style: query = image + referring expression; candidates = the same
    image with a region phrase each (ids ``img_path:text``, several share an image)."""
    rng, size = task_rng(cfg, name), cfg.image_size
    img_root = root / "mmeb" / "image-tasks"
    rows, qgt, cgt = [], {}, {}
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
        qgt[str(q)] = _obj_gt(t, size, f"the {t.label} is at the {t.where}")
        for c, txt in zip(chosen, texts, strict=True):
            o = by_cell.get(c)
            cgt[candidate_id(rel, txt)] = (
                _obj_gt(o, size)
                if o
                else _gt(
                    [_cell_box(c, size)], None, [CELLS[c]], f"an empty region at the {CELLS[c]}"
                )
            )
    _image_table(cfg, root, name, rows, qgt, cgt)


# --------------------------------------------------------------------------- MMEB video
def _video_paths(root: Path, layout: str, name: str) -> tuple[Path, Path]:
    from ume.data.benchmarks import VIDEO_KINDS

    data = task_dir(layout, name, root)
    frames = root / "mmeb" / "video-tasks" / "frames" / VIDEO_KINDS[layout] / name
    return data, frames


def _event_video(rng, cfg: SyntheticConfig, folder: Path, *, kind=None) -> Event:
    e = random_event(rng, cfg.num_frames, set(), kind=kind)
    static = _static_for(rng, e, cfg.shapes_per_image - 1)
    write_frames(video_frames(static, [e], cfg.num_frames), cfg.image_size, folder)
    return e


def _write_video_cls(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_cls", name)
    labels = [f"{s} {v}" for s in SHAPES for v in ("appearing", "changing colour", "moving")]
    rows, qgt = [], {}
    for q in range(cfg.eval_queries):
        vid = f"v{q:04d}"
        e = _event_video(rng, cfg, frames / vid)
        rows.append({"video_id": vid, "pos_text": e.class_label})
        qgt[str(q)] = _frame_gt(e, cfg.image_size)
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["video_id", "pos_text"]))
    write_json(data / "labels.json", labels)
    cgt = {lab: _gt(None, None, lab.split(), f"a video of a {lab}") for lab in labels}
    _sidecar(data, qgt, cgt)


def _write_video_qa(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_qa", name)
    rows, qgt, cgt = [], {}, {}
    n_opt = max(2, min(cfg.eval_candidates, 5))
    for q in range(cfg.eval_queries):
        vid = f"v{q:04d}"
        e = _event_video(rng, cfg, frames / vid, kind=EVENT_KINDS[q % 3])
        o = e.obj
        if e.kind == "appears":
            question, answer, pool = (
                f"What colour is the {o.shape} that appears?",
                o.color,
                COLOR_NAMES,
            )
        elif e.kind == "changes colour":
            question = f"What colour does the {o.shape} at the {o.where} turn?"
            answer, pool = e.new_color, (o.color, *COLOR_NAMES)
        else:
            question = f"Where does the {o.label} move to?"
            answer, pool = CELLS[e.new_cell], (o.where, *CELLS)
        opts = [answer]
        for a in [pool[0], *(pool[int(i)] for i in rng.permutation(len(pool)))]:
            if a not in opts and len(opts) < n_opt:
                opts.append(a)
        order = [int(i) for i in rng.permutation(len(opts))]
        opts = [opts[i] for i in order]
        k = opts.index(answer)
        rows.append(
            {
                "video_id": vid,
                "question": question,
                "options": [f"{chr(65 + j)}. {a}" for j, a in enumerate(opts)],
                "answer": chr(65 + k),
            }
        )
        qgt[str(q)] = _frame_gt(e, cfg.image_size) | {"description": f"{question} {e.describe()}"}
        for j, a in enumerate(opts):
            cgt[f"{q}:{j}"] = _gt(None, None, [a], f"the answer {a}")
    df = pd.DataFrame(rows, columns=["video_id", "question", "options", "answer"])
    write_parquet(data / TABLE, df)
    _sidecar(data, qgt, cgt)


def _event_family(rng, cfg: SyntheticConfig, n: int) -> list[tuple[Event, list[Obj]]]:
    """``n`` videos sharing the event kind and shape: the base, then the event's object in
    another colour or at another position (same static objects)."""
    base = random_event(rng, cfg.num_frames, set())
    static = _static_for(rng, base, cfg.shapes_per_image - 1)
    out = [(base, static)]
    seen = {base.describe()}
    taken = {o.cell for o in static}
    for k in range(n * 20):
        if len(out) >= n:
            break
        o = base.obj
        if k % 2 == 0:
            v = replace(
                base, obj=replace(o, color=_pick(rng, COLOR_NAMES, (o.color, base.new_color)))
            )
        else:
            free = taken | _event_cells(base)
            if len(free) >= 9:
                continue
            v = replace(base, obj=replace(o, cell=_pick(rng, range(9), free)))
        if v.describe() not in seen:
            seen.add(v.describe())
            out.append((v, static))
    return out


def _write_video_ret(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_ret", name)
    rows, qgt, cgt = [], {}, {}
    while len(rows) < cfg.eval_queries:
        fam = _event_family(rng, cfg, min(4, cfg.eval_queries - len(rows)))
        for e, static in fam:
            vid = f"video{len(rows):04d}"
            write_frames(video_frames(static, [e], cfg.num_frames), cfg.image_size, frames / vid)
            qgt[str(len(rows))] = _gt(None, None, _frame_gt(e, 1)["keywords"], e.describe())
            cgt[vid] = _frame_gt(e, cfg.image_size)
            rows.append({"video_id": vid, "video": f"video/{vid}.mp4", "caption": e.describe()})
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["video_id", "video", "caption"]))
    _sidecar(data, qgt, cgt)


def _write_video_mret(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """Each query video is ``n_clips`` clips of ``num_frames`` frames; the event happens in
    the positive clip; the negative clips hold the same shape in another colour or place."""
    import pandas as pd

    rng, size, nf = task_rng(cfg, name), cfg.image_size, cfg.num_frames
    data, frames = _video_paths(root, "mmeb_video_mret", name)
    n_clips = max(2, min(cfg.eval_candidates, 4))
    rows, qgt, cgt = [], {}, {}
    for q in range(cfg.eval_queries):
        stem = f"video{q:04d}"
        e = random_event(rng, nf, set())
        static = _static_for(rng, e, cfg.shapes_per_image - 1, twin=False)
        taken = {o.cell for o in static} | _event_cells(e)
        pos_at = int(rng.integers(n_clips))
        clips: list[tuple[str, list[list[Obj]], Event | None]] = []
        n_neg = 0
        for c in range(n_clips):
            if c == pos_at:
                clips.append(("positive", video_frames(static, [e], nf), e))
                continue
            o = e.obj
            if (c + q) % 2 == 0:
                d = replace(
                    e, obj=replace(o, color=_pick(rng, COLOR_NAMES, (o.color, e.new_color)))
                )
            elif len(taken) < 9:
                d = replace(e, obj=replace(o, cell=_pick(rng, range(9), taken)))
            else:
                d = replace(e, start=1 + (e.start % nf), end=1 + (e.start % nf))
            clips.append((f"negative_{n_neg}", video_frames(static, [d], nf), d))
            n_neg += 1
        full = [f for _, fr, _ in clips for f in fr]
        pick = np.linspace(0, len(full) - 1, nf, dtype=int).tolist()
        write_frames([full[i] for i in pick], size, frames / stem / "query")
        for clip, fr, ev in clips:
            write_frames(fr, size, frames / stem / clip)
            cgt[f"{stem}/{clip}"] = _frame_gt(ev, size) if ev else _gt([], [], [], "")
        lo = pos_at * nf + e.start - 1
        hi = pos_at * nf + e.end - 1
        qkf = [k + 1 for k, i in enumerate(pick) if lo <= i <= hi]
        g = _frame_gt(e, size)
        qgt[str(q)] = g | {"key_frames": qkf, "description": f"the moment where {e.describe()}"}
        rows.append({"query": e.describe(), "video_path": f"videos/{stem}.mp4"})
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["query", "video_path"]))
    _sidecar(data, qgt, cgt)


# --------------------------------------------------------------------------- visdoc
_CITIES = ("Oslo", "Lima", "Kyoto", "Accra", "Quito", "Perth", "Turin", "Dakar")


def _doc_reports(rng, n: int) -> list[dict[str, Any]]:
    """``n`` reports with unique (colour, shape, count); near-duplicates share two of them."""
    reports, seen = [], set()
    while len(reports) < n:
        if reports and rng.random() < 0.6:  # a near-duplicate of an earlier report
            b = reports[int(rng.integers(len(reports)))]
            r = dict(b)
            r[_pick(rng, ("color", "shape", "count"))] = None
            r = {
                "color": r["color"] or _pick(rng, COLOR_NAMES),
                "shape": r["shape"] or _pick(rng, SHAPES),
                "count": r["count"] or int(rng.integers(2, 10)),
            }
        else:
            r = {
                "color": _pick(rng, COLOR_NAMES),
                "shape": _pick(rng, SHAPES),
                "count": int(rng.integers(2, 10)),
            }
        key = (r["color"], r["shape"], r["count"])
        if key in seen:
            continue
        seen.add(key)
        r["city"] = _pick(rng, _CITIES)
        r["year"] = int(rng.integers(2000, 2025))
        reports.append(r)
    return reports


def _doc_pages(
    r: dict[str, Any], idx: int, size: int
) -> list[tuple[Any, list[list[int]], str, list[str]]]:
    """(image, line boxes, title, lines) of a report's two pages."""
    t1, t2 = f"Report {idx} p1", f"Report {idx} p2"
    l1 = [
        f"colour: {r['color']}",
        f"shape: {r['shape']}",
        f"count: {r['count']}",
        f"city: {r['city']}",
    ]
    l2 = [f"year: {r['year']}", f"about {r['color']} {r['shape']}s", "see page 1"]
    out = []
    for t, lines in ((t1, l1), (t2, l2)):
        img, boxes = render_page(t, lines, size)
        out.append((img, boxes, t, lines))
    return out


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _write_visdoc(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """BEIR layout; each report has a page with the facts (grade 2) and a second page
    (grade 1); near-duplicate reports share two of colour / shape / count."""
    import pandas as pd

    rng, size = task_rng(cfg, name), cfg.doc_size
    folder = task_dir("beir", name, root)
    n_reports = max(1, cfg.eval_corpus // 2)
    reports = _doc_reports(rng, n_reports)
    corpus, cgt = [], {}
    for i, r in enumerate(reports):
        for p, (img, boxes, title, lines) in enumerate(_doc_pages(r, i, size), start=1):
            cid = f"report{i:03d}_p{p}"
            corpus.append(
                {"corpus-id": cid, "image": {"bytes": _png_bytes(img), "path": f"{cid}.png"}}
            )
            facts = [1, 2, 3] if p == 1 else [2]
            cgt[cid] = _gt(
                [boxes[k] for k in facts],
                None,
                [r["color"], r["shape"], str(r["count"])] if p == 1 else [r["color"], r["shape"]],
                f"{title}: " + "; ".join(lines),
            )
    targets = [int(i) for i in rng.permutation(n_reports)]
    queries, qrels, qgt = [], [], {}
    for q in range(cfg.eval_queries):
        i = targets[q % n_reports]
        r = reports[i]
        qid = f"q{q:03d}"
        text = (
            f"Which report counts {r['count']} {r['color']} {r['shape']}s?"
            if q < n_reports
            else f"How many {r['color']} {r['shape']}s does the report with count {r['count']} list?"
        )
        queries.append({"query-id": qid, "query": text, "language": "english"})
        qrels += [
            {"query-id": qid, "corpus-id": f"report{i:03d}_p1", "score": 2},
            {"query-id": qid, "corpus-id": f"report{i:03d}_p2", "score": 1},
        ]
        qgt[qid] = _gt(None, None, [r["color"], r["shape"], str(r["count"])], text)
    write_parquet(folder / "corpus" / TABLE, pd.DataFrame(corpus, columns=["corpus-id", "image"]))
    write_parquet(
        folder / "queries" / TABLE, pd.DataFrame(queries, columns=["query-id", "query", "language"])
    )
    write_parquet(
        folder / "qrels" / TABLE, pd.DataFrame(qrels, columns=["query-id", "corpus-id", "score"])
    )
    _sidecar(folder, qgt, cgt)


# --------------------------------------------------------------------------- UVRB
def _uvrb_write(
    folder: Path,
    corpus: list[dict],
    queries: list[dict],
    instances: list[dict],
    qgt: dict,
    cgt: dict,
) -> None:
    from ume.io import write_jsonl

    write_jsonl(folder / "jsonl" / "corpus.jsonl", corpus)
    write_jsonl(folder / "jsonl" / "queries.jsonl", queries)
    write_jsonl(folder / "jsonl" / "instances.jsonl", instances)
    _sidecar(folder, qgt, cgt)


def _when(e: Event, num_frames: int) -> str:
    mid = (e.start + e.end) / 2
    return (
        "at the start"
        if mid <= num_frames / 3
        else ("at the end" if mid > 2 * num_frames / 3 else "in the middle")
    )


def _write_uvrb(cfg: SyntheticConfig, root: Path, name: str) -> None:
    rng, size, nf = task_rng(cfg, name), cfg.image_size, cfg.num_frames
    folder = task_dir("uvrb", name, root)
    fdir = folder / "videos_frames"
    corpus, queries, instances, qgt, cgt = [], [], [], {}, {}
    videos: list[tuple[str, list[Event], list[Obj], int]] = []  # id, events, static, frames

    def add_video(events: list[Event], static: list[Obj], n_frames: int) -> str:
        vid = f"v{len(videos):04d}"
        write_frames(video_frames(static, events, n_frames), size, fdir / vid)
        corpus.append({"id": vid, "video": f"{vid}.mp4"})
        g = _frame_gt(events[0], size)
        for e in events[1:]:
            g2 = _frame_gt(e, size)
            g = g | {
                "boxes": g["boxes"] + g2["boxes"],
                "key_frames": g["key_frames"] + g2["key_frames"],
                "keywords": g["keywords"] + g2["keywords"],
                "description": g["description"] + "; then " + g2["description"],
            }
        cgt[vid] = g
        videos.append((vid, events, static, n_frames))
        return vid

    def add_query(rec: dict, pos: list[str], g: dict) -> None:
        qid = f"q{len(queries):04d}"
        queries.append({"id": qid, **rec})
        instances.append({"qid": qid, "pos": pos})
        qgt[qid] = g

    kind = name.split("-")[-1]
    if kind == "CG":
        # coarse captions ("a circle appears"): every video of that shape and event matches.
        while len(videos) < cfg.eval_corpus:
            e = random_event(rng, nf, set())
            add_video([e], _static_for(rng, e, cfg.shapes_per_image - 1, twin=False), nf)
        groups: dict[str, list[str]] = {}
        for vid, evs, _, _ in videos:
            groups.setdefault(f"a {evs[0].obj.shape} {evs[0].kind}", []).append(vid)
        for cap in sorted(groups)[: cfg.eval_queries]:
            add_query({"text": cap}, groups[cap], _gt(None, None, cap.split()[1:], cap))
    elif kind in ("S", "CMP", "VIS"):
        while len(videos) < cfg.eval_corpus:
            for e, static in _event_family(rng, cfg, min(4, cfg.eval_corpus - len(videos))):
                add_video([e], static, nf)
        picks = [int(i) for i in rng.permutation(len(videos))][: cfg.eval_queries]
        for n, i in enumerate(picks):
            vid, (e,), static, _ = videos[i]
            if kind == "S":
                add_query(
                    {"text": e.describe()},
                    [vid],
                    _gt(None, None, cgt[vid]["keywords"], e.describe()),
                )
            elif kind == "CMP":
                # image of the static scene (+ the event's object before the event) + text
                outside = 1 if e.start > 1 else e.end + 1
                before = video_frames(static, [e], nf)[outside - 1]
                img = f"q{n:04d}.png"
                save_png(render_scene(before, size), folder / "images" / img)
                text = f"in this scene, {e.describe()}"
                add_query(
                    {"text": text, "image": img},
                    [vid],
                    _gt([obj_box(e.active_obj(), size)], None, cgt[vid]["keywords"], text),
                )
            else:  # VIS: a key frame as an image, or the key frames as a clip
                active = video_frames(static, [e], nf)[e.start - 1]
                if n % 2 == 0:
                    img = f"q{n:04d}.png"
                    save_png(render_scene(active, size), folder / "images" / img)
                    add_query(
                        {"image": img},
                        [vid],
                        _gt([obj_box(e.active_obj(), size)], None, [], e.describe()),
                    )
                else:
                    clip = f"q{n:04d}"
                    fr = video_frames(static, [e], nf)[e.start - 1 : e.end]
                    write_frames(fr, size, fdir / clip)
                    add_query(
                        {"video": f"{clip}.mp4"},
                        [vid],
                        _gt(
                            [obj_box(e.active_obj(), size)],
                            list(range(1, len(fr) + 1)),
                            [],
                            e.describe(),
                        ),
                    )
    elif kind == "T":
        # the same event at different times: the caption says when.
        while len(videos) < cfg.eval_corpus:
            e = random_event(rng, nf, set())
            static = _static_for(rng, e, cfg.shapes_per_image - 1)
            L = e.end - e.start + 1
            starts = sorted({1, max(1, (nf - L) // 2 + 1), nf - L + 1})
            for s in starts[: cfg.eval_corpus - len(videos)]:
                add_video([replace(e, start=s, end=s + L - 1)], static, nf)
        picks = [int(i) for i in rng.permutation(len(videos))][: cfg.eval_queries]
        for i in picks:
            vid, (e,), _, _ = videos[i]
            text = f"{e.describe()} {_when(e, nf)} of the video"
            same = [
                v
                for v, (e2,), _, _ in videos
                if f"{e2.describe()} {_when(e2, nf)} of the video" == text
            ]
            add_query({"text": text}, same, _gt(None, None, cgt[vid]["keywords"], text))
    elif kind == "LC":
        # long videos (2x frames) with two events; the order distinguishes pairs.
        n2 = 2 * nf
        while len(videos) < cfg.eval_corpus:
            e1 = random_event(rng, nf, set())
            e2 = random_event(rng, nf, _event_cells(e1))
            e2 = replace(e2, start=e2.start + nf, end=e2.end + nf)
            static = _static_for(rng, e1, cfg.shapes_per_image - 2, twin=True)
            static = [o for o in static if o.cell not in _event_cells(e2)]
            add_video([e1, e2], static, n2)
            if len(videos) < cfg.eval_corpus:  # the same two events in the other order
                f1 = replace(e2, start=e1.start, end=e1.end)
                f2 = replace(e1, start=e2.start, end=e2.end)
                add_video([f1, f2], static, n2)
        picks = [int(i) for i in rng.permutation(len(videos))][: cfg.eval_queries]
        for i in picks:
            vid, evs, _, _ = videos[i]
            text = f"first {evs[0].describe()}, then {evs[1].describe()}"
            add_query({"text": text}, [vid], _gt(None, None, cgt[vid]["keywords"], text))
    else:  # pragma: no cover - SYNTH_TASKS is closed
        raise ValueError(name)
    _uvrb_write(folder, corpus, queries, instances, qgt, cgt)


# --------------------------------------------------------------------------- entry points
_WRITERS = {
    "SynthCLS": _write_cls,
    "SynthVQA": _write_vqa,
    "SynthT2I": lambda c, r, n: _write_ret(c, r, n, t2i=True),
    "SynthI2T": lambda c, r, n: _write_ret(c, r, n, t2i=False),
    "SynthGrounding": _write_grounding,
    "SynthVideoCLS": _write_video_cls,
    "SynthVideoQA": _write_video_qa,
    "SynthVideoRET": _write_video_ret,
    "SynthMomentRET": _write_video_mret,
    "SynthDocRET": _write_visdoc,
}


def _task_folders(spec: TaskSpec, root: Path) -> list[Path]:
    from ume.data.benchmarks import VIDEO_KINDS

    out = [task_dir(spec.layout, spec.name, root)]
    if spec.layout == "mmeb_image":
        out.append(root / "mmeb" / "image-tasks" / spec.name)
    elif spec.layout in VIDEO_KINDS:
        out.append(root / "mmeb" / "video-tasks" / "frames" / VIDEO_KINDS[spec.layout] / spec.name)
    return out


def write_benchmark(
    cfg: SyntheticConfig, root: Path, tasks: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Write every task of :data:`SYNTH_TASKS` (or only ``tasks``) under ``root``; return
    ``{task: {queries, candidates}}``. Old folders of these tasks are removed first (stale
    files never mix with new ones); ``synthetic_summary.json`` is written last."""
    root = Path(root).resolve()
    known = {s.name for s in SYNTH_TASKS}
    unknown = sorted(set(tasks or ()) - known)
    if unknown:
        raise DataError(f"unknown synthetic task(s) {unknown}; known: {', '.join(sorted(known))}")
    summary: dict[str, dict[str, int]] = {}
    # A combined benchmark root: mmeb/ and uvrb/ side by side (the loaders look for them).
    (root / "mmeb").mkdir(parents=True, exist_ok=True)
    (root / "uvrb").mkdir(parents=True, exist_ok=True)
    for spec in SYNTH_TASKS:
        if tasks is not None and spec.name not in tasks:
            continue
        for d in _task_folders(spec, root):
            if d.exists():
                shutil.rmtree(d)
        _WRITERS.get(spec.name, _write_uvrb)(cfg, root, spec.name)
        gt = json.loads((task_dir(spec.layout, spec.name, root) / GT_SIDECAR).read_text())
        summary[spec.name] = {"queries": len(gt["queries"]), "candidates": len(gt["candidates"])}
    write_json(root / "synthetic_summary.json", {"config": vars(cfg), "tasks": summary})
    return summary


# --------------------------------------------------------------------------- training pairs
def write_training_pairs(cfg: SyntheticConfig, root: Path):
    """Write the media of :data:`TRAIN_DATASETS` under ``root/<dataset>/`` and return the
    pairs (``ume.data.pairs`` format; absolute paths; ``gt`` on both sides)."""
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
        gt = _gt([obj_box(t, size)], None, [t.color, t.shape, label], desc)
    else:
        label, desc = t.label, f"the largest object is {t.describe()}"
        gt = _obj_gt(t, size, desc)
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
        gt=_gt(None, None, label.split(), f"the class {label}"),
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
        gt=_obj_gt(t, size),
    )
    p = Item("text", "", t.color, gt=_gt(None, None, [t.color], f"the answer {t.color}"))
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
        gt=_gt(None, None, kw, desc),
    )
    p = Item(
        "image",
        "Represent the given image.",
        "",
        path,
        gt=_gt([obj_box(o, size) for o in objs], None, kw, desc),
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
        gt=_obj_gt(t, size),
    )
    w, h = crop.size
    p = Item(
        "image",
        "Represent the given cropped image of the object.",
        "",
        cpath,
        gt=_gt([to_rel((0, 0, w - 1, h - 1), w, h)], None, [t.color, t.shape], f"a {t.label}"),
    )
    return q, p


def _t_video(cfg, rng, folder, k, what: str):
    e = random_event(rng, cfg.num_frames, set())
    static = _static_for(rng, e, cfg.shapes_per_image - 1)
    paths = write_frames(
        video_frames(static, [e], cfg.num_frames), cfg.image_size, folder / f"{k:05d}"
    )
    frames = tuple(str(p) for p in paths)
    g = _frame_gt(e, cfg.image_size)
    cap = e.describe()
    if what == "caption":  # video -> caption
        q = Item("video", "Describe the content of the video.", "", frames=frames, gt=g)
        p = Item("text", "", cap, gt=_gt(None, None, g["keywords"], cap))
    elif what == "ret":  # caption -> video
        q = Item(
            "text",
            "Find a video that contains the following visual content:",
            cap,
            gt=_gt(None, None, g["keywords"], cap),
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
        p = Item("text", "", ans, gt=_gt(None, None, [ans], f"the answer {ans}"))
    return q, p


def _t_doc(cfg, rng, folder, k):
    r = _doc_reports(rng, 1)[0]
    img, boxes, title, lines = _doc_pages(r, k, cfg.doc_size)[0]
    path = str(save_png(img, folder / f"{k:05d}.png"))
    text = f"Which report counts {r['count']} {r['color']} {r['shape']}s?"
    kw = [r["color"], r["shape"], str(r["count"])]
    q = Item(
        "text",
        "Find a document image that matches the given query:",
        text,
        gt=_gt(None, None, kw, text),
    )
    p = Item(
        "document",
        "Understand the content of the provided document image.",
        "",
        path,
        gt=_gt([boxes[1], boxes[2], boxes[3]], None, kw, f"{title}: " + "; ".join(lines)),
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
