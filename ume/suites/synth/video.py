"""Synthetic video tasks in the MMEB-V2 video layouts (classification, QA, retrieval, moment
retrieval): frame folders in which one event happens in known key frames."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ume.config import SyntheticConfig
from ume.io import write_json, write_parquet
from ume.suites.base import task_dir
from ume.suites.synth.common import TABLE, write_sidecar
from ume.suites.synth.content import (
    COLOR_NAMES,
    choose,
    event_cells,
    event_family,
    event_gt,
    ground_truth,
    random_event,
    static_objects,
    task_rng,
)
from ume.suites.synth.scenes import (
    CELLS,
    EVENT_KINDS,
    SHAPES,
    Event,
    Obj,
    video_frames,
    write_frames,
)


def _video_paths(root: Path, layout: str, name: str) -> tuple[Path, Path]:
    from ume.suites.base import VIDEO_KINDS

    data = task_dir(layout, name, root)
    frames = root / "mmeb" / "video-tasks" / "frames" / VIDEO_KINDS[layout] / name
    return data, frames


def _event_video(rng, cfg: SyntheticConfig, folder: Path, *, kind=None) -> Event:
    e = random_event(rng, cfg.num_frames, set(), kind=kind)
    static = static_objects(rng, e, cfg.shapes_per_image - 1)
    write_frames(video_frames(static, [e], cfg.num_frames), cfg.image_size, folder)
    return e


def _write_video_cls(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_cls", name)
    labels = [f"{s} {v}" for s in SHAPES for v in ("appearing", "changing colour", "moving")]
    rows, query_gt = [], {}
    for q in range(cfg.eval_queries):
        vid = f"v{q:04d}"
        e = _event_video(rng, cfg, frames / vid)
        rows.append({"video_id": vid, "pos_text": e.class_label})
        query_gt[str(q)] = event_gt(e, cfg.image_size)
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["video_id", "pos_text"]))
    write_json(data / "labels.json", labels)
    candidate_gt = {
        lab: ground_truth(None, None, lab.split(), f"a video of a {lab}") for lab in labels
    }
    write_sidecar(data, query_gt, candidate_gt)


def _write_video_qa(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_qa", name)
    rows, query_gt, candidate_gt = [], {}, {}
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
        query_gt[str(q)] = event_gt(e, cfg.image_size) | {
            "description": f"{question} {e.describe()}"
        }
        for j, a in enumerate(opts):
            candidate_gt[f"{q}:{j}"] = ground_truth(None, None, [a], f"the answer {a}")
    df = pd.DataFrame(rows, columns=["video_id", "question", "options", "answer"])
    write_parquet(data / TABLE, df)
    write_sidecar(data, query_gt, candidate_gt)


def _write_video_ret(cfg: SyntheticConfig, root: Path, name: str) -> None:
    import pandas as pd

    rng = task_rng(cfg, name)
    data, frames = _video_paths(root, "mmeb_video_ret", name)
    rows, query_gt, candidate_gt = [], {}, {}
    while len(rows) < cfg.eval_queries:
        fam = event_family(rng, cfg, min(4, cfg.eval_queries - len(rows)))
        for e, static in fam:
            vid = f"video{len(rows):04d}"
            write_frames(video_frames(static, [e], cfg.num_frames), cfg.image_size, frames / vid)
            query_gt[str(len(rows))] = ground_truth(
                None, None, event_gt(e, 1)["keywords"], e.describe()
            )
            candidate_gt[vid] = event_gt(e, cfg.image_size)
            rows.append({"video_id": vid, "video": f"video/{vid}.mp4", "caption": e.describe()})
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["video_id", "video", "caption"]))
    write_sidecar(data, query_gt, candidate_gt)


def _write_video_mret(cfg: SyntheticConfig, root: Path, name: str) -> None:
    """Each query video is ``n_clips`` clips of ``num_frames`` frames; the event happens in
    the positive clip; the negative clips hold the same shape in another colour or place."""
    import pandas as pd

    rng, size, nf = task_rng(cfg, name), cfg.image_size, cfg.num_frames
    data, frames = _video_paths(root, "mmeb_video_mret", name)
    n_clips = max(2, min(cfg.eval_candidates, 4))
    rows, query_gt, candidate_gt = [], {}, {}
    for q in range(cfg.eval_queries):
        stem = f"video{q:04d}"
        e = random_event(rng, nf, set())
        static = static_objects(rng, e, cfg.shapes_per_image - 1, twin=False)
        taken = {o.cell for o in static} | event_cells(e)
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
                    e, obj=replace(o, color=choose(rng, COLOR_NAMES, (o.color, e.new_color)))
                )
            elif len(taken) < 9:
                d = replace(e, obj=replace(o, cell=choose(rng, range(9), taken)))
            else:
                d = replace(e, start=1 + (e.start % nf), end=1 + (e.start % nf))
            clips.append((f"negative_{n_neg}", video_frames(static, [d], nf), d))
            n_neg += 1
        full = [f for _, fr, _ in clips for f in fr]
        pick = np.linspace(0, len(full) - 1, nf, dtype=int).tolist()
        write_frames([full[i] for i in pick], size, frames / stem / "query")
        for clip, fr, ev in clips:
            write_frames(fr, size, frames / stem / clip)
            candidate_gt[f"{stem}/{clip}"] = (
                event_gt(ev, size) if ev else ground_truth([], [], [], "")
            )
        lo = pos_at * nf + e.start - 1
        hi = pos_at * nf + e.end - 1
        qkf = [k + 1 for k, i in enumerate(pick) if lo <= i <= hi]
        g = event_gt(e, size)
        query_gt[str(q)] = g | {
            "key_frames": qkf,
            "description": f"the moment where {e.describe()}",
        }
        rows.append({"query": e.describe(), "video_path": f"videos/{stem}.mp4"})
    write_parquet(data / TABLE, pd.DataFrame(rows, columns=["query", "video_path"]))
    write_sidecar(data, query_gt, candidate_gt)
