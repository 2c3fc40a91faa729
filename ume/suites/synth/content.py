"""Random content of the synthetic world, with its ground truth.

What the synthetic benchmark's writers and the synthetic training pairs both draw: scenes of
coloured shapes with fine-grained distractors (the target's shape in another colour, its
colour in another shape), event videos (a shape appears / changes colour / moves in known
key frames) with static look-alikes, and two-page reports of ``key: value`` facts with
near-duplicates. Every draw comes with its ground truth (``gt``: boxes in 0..1000,
1-based key_frames, keywords, description), which the oracle annotator turns into T-CoTs.

Deterministic: each task or dataset draws from ``task_rng`` =
``numpy.random.default_rng([seed, crc32(name)])``; the drawing itself is in
:mod:`ume.suites.synth.scenes`.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

import numpy as np

from ume.config import SyntheticConfig
from ume.suites.synth.scenes import (
    CELLS,
    COLORS,
    EVENT_KINDS,
    SHAPES,
    Event,
    Obj,
    obj_box,
    render_page,
)

COLOR_NAMES = tuple(COLORS)


def task_rng(cfg: SyntheticConfig, name: str) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, zlib.crc32(name.encode())])


def choose(rng: np.random.Generator, seq, exclude=()) -> Any:
    opts = [x for x in seq if x not in exclude]
    return opts[int(rng.integers(len(opts)))]


def ground_truth(
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


def object_gt(o: Obj, size: int, description: str = "") -> dict[str, Any]:
    return ground_truth(
        [obj_box(o, size)], None, [o.color, o.shape, o.where], description or o.describe()
    )


def random_scene(
    rng: np.random.Generator, n: int, *, taken: tuple[int, ...] = (), cells=None
) -> list[Obj]:
    """``n`` objects in distinct free cells with random shapes and colours."""
    free = [c for c in (cells if cells is not None else range(9)) if c not in taken]
    chosen = rng.permutation(len(free))[: max(0, min(n, len(free)))]
    return [
        Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), free[int(i)]) for i in sorted(chosen)
    ]


def fine_scene(rng: np.random.Generator, n: int) -> tuple[Obj, list[Obj]]:
    """A target object plus distractors: same shape in another colour, same colour in
    another shape, then random objects (all in distinct cells, target label unique)."""
    cells = [int(c) for c in rng.permutation(9)[: max(2, n)]]
    t = Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), cells[0])
    objs = [t, Obj(t.shape, choose(rng, COLOR_NAMES, (t.color,)), cells[1])]
    if len(cells) > 2:
        objs.append(Obj(choose(rng, SHAPES, (t.shape,)), t.color, cells[2]))
    for c in cells[3:]:
        while True:
            o = Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), c)
            if o.label != t.label:
                break
        objs.append(o)
    return t, objs


def event_gt(e: Event, size: int, offset: int = 0) -> dict[str, Any]:
    o = e.active_obj()
    return ground_truth(
        [obj_box(o, size)],
        [k - offset for k in e.key_frames],
        [o.color, o.shape, e.kind, CELLS[o.cell]],
        e.describe(),
    )


def random_event(
    rng: np.random.Generator, num_frames: int, taken: set[int], *, kind: str | None = None
) -> Event:
    cell = choose(rng, range(9), taken)
    o = Obj(choose(rng, SHAPES), choose(rng, COLOR_NAMES), cell)
    kind = kind or choose(rng, EVENT_KINDS)
    length = max(1, num_frames // 4)
    start = int(rng.integers(1, num_frames - length + 2))
    end = start + length - 1
    if kind == "changes colour":
        return Event(kind, o, start, end, new_color=choose(rng, COLOR_NAMES, (o.color,)))
    if kind == "moves":
        return Event(kind, o, start, end, new_cell=choose(rng, range(9), taken | {cell}))
    return Event(kind, o, start, end)


def event_cells(e: Event) -> set[int]:
    return {e.obj.cell} | ({e.new_cell} if e.new_cell >= 0 else set())


def static_objects(rng: np.random.Generator, e: Event, n: int, *, twin: bool = True) -> list[Obj]:
    """Static objects around event ``e``: one of the event's shape in another colour (a
    distractor for models that ignore the key frames), then random ones."""
    taken = set(event_cells(e))
    out = []
    if twin and n > 0:
        c = choose(rng, range(9), taken)
        out.append(Obj(e.obj.shape, choose(rng, COLOR_NAMES, (e.obj.color, e.new_color)), c))
        taken.add(c)
    out += random_scene(rng, n - len(out), taken=tuple(taken))
    return out


_CITIES = ("Oslo", "Lima", "Kyoto", "Accra", "Quito", "Perth", "Turin", "Dakar")


def doc_reports(rng, n: int) -> list[dict[str, Any]]:
    """``n`` reports with unique (colour, shape, count); near-duplicates share two of them."""
    reports, seen = [], set()
    while len(reports) < n:
        if reports and rng.random() < 0.6:  # a near-duplicate of an earlier report
            b = reports[int(rng.integers(len(reports)))]
            r = dict(b)
            r[choose(rng, ("color", "shape", "count"))] = None
            r = {
                "color": r["color"] or choose(rng, COLOR_NAMES),
                "shape": r["shape"] or choose(rng, SHAPES),
                "count": r["count"] or int(rng.integers(2, 10)),
            }
        else:
            r = {
                "color": choose(rng, COLOR_NAMES),
                "shape": choose(rng, SHAPES),
                "count": int(rng.integers(2, 10)),
            }
        key = (r["color"], r["shape"], r["count"])
        if key in seen:
            continue
        seen.add(key)
        r["city"] = choose(rng, _CITIES)
        r["year"] = int(rng.integers(2000, 2025))
        reports.append(r)
    return reports


def doc_pages(
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


def event_family(rng, cfg: SyntheticConfig, n: int) -> list[tuple[Event, list[Obj]]]:
    """``n`` videos sharing the event kind and shape: the base, then the event's object in
    another colour or at another position (same static objects)."""
    base = random_event(rng, cfg.num_frames, set())
    static = static_objects(rng, base, cfg.shapes_per_image - 1)
    out = [(base, static)]
    seen = {base.describe()}
    taken = {o.cell for o in static}
    for k in range(n * 20):
        if len(out) >= n:
            break
        o = base.obj
        if k % 2 == 0:
            v = replace(
                base, obj=replace(o, color=choose(rng, COLOR_NAMES, (o.color, base.new_color)))
            )
        else:
            free = taken | event_cells(base)
            if len(free) >= 9:
                continue
            v = replace(base, obj=replace(o, cell=choose(rng, range(9), free)))
        if v.describe() not in seen:
            seen.add(v.describe())
            out.append((v, static))
    return out
