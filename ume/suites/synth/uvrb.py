"""Synthetic UVRB tasks in the ``uvrb`` layout: one per ability group (coarse/fine-grained,
spatial, temporal, long context, composed and visual queries)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ume.config import SyntheticConfig
from ume.suites.base import task_dir
from ume.suites.synth.common import write_sidecar
from ume.suites.synth.content import (
    event_cells,
    event_family,
    event_gt,
    ground_truth,
    random_event,
    static_objects,
    task_rng,
)
from ume.suites.synth.scenes import (
    Event,
    Obj,
    obj_box,
    render_scene,
    save_png,
    video_frames,
    write_frames,
)


def _uvrb_write(
    folder: Path,
    corpus: list[dict],
    queries: list[dict],
    instances: list[dict],
    query_gt: dict,
    candidate_gt: dict,
) -> None:
    from ume.io import write_jsonl

    write_jsonl(folder / "jsonl" / "corpus.jsonl", corpus)
    write_jsonl(folder / "jsonl" / "queries.jsonl", queries)
    write_jsonl(folder / "jsonl" / "instances.jsonl", instances)
    write_sidecar(folder, query_gt, candidate_gt)


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
    corpus, queries, instances, query_gt, candidate_gt = [], [], [], {}, {}
    videos: list[tuple[str, list[Event], list[Obj], int]] = []  # id, events, static, frames

    def add_video(events: list[Event], static: list[Obj], n_frames: int) -> str:
        vid = f"v{len(videos):04d}"
        write_frames(video_frames(static, events, n_frames), size, fdir / vid)
        corpus.append({"id": vid, "video": f"{vid}.mp4"})
        g = event_gt(events[0], size)
        for e in events[1:]:
            g2 = event_gt(e, size)
            g = g | {
                "boxes": g["boxes"] + g2["boxes"],
                "key_frames": g["key_frames"] + g2["key_frames"],
                "keywords": g["keywords"] + g2["keywords"],
                "description": g["description"] + "; then " + g2["description"],
            }
        candidate_gt[vid] = g
        videos.append((vid, events, static, n_frames))
        return vid

    def add_query(rec: dict, pos: list[str], g: dict) -> None:
        qid = f"q{len(queries):04d}"
        queries.append({"id": qid, **rec})
        instances.append({"qid": qid, "pos": pos})
        query_gt[qid] = g

    kind = name.split("-")[-1]
    if kind == "CG":
        # coarse captions ("a circle appears"): every video of that shape and event matches.
        while len(videos) < cfg.eval_corpus:
            e = random_event(rng, nf, set())
            add_video([e], static_objects(rng, e, cfg.shapes_per_image - 1, twin=False), nf)
        groups: dict[str, list[str]] = {}
        for vid, evs, _, _ in videos:
            groups.setdefault(f"a {evs[0].obj.shape} {evs[0].kind}", []).append(vid)
        for cap in sorted(groups)[: cfg.eval_queries]:
            add_query({"text": cap}, groups[cap], ground_truth(None, None, cap.split()[1:], cap))
    elif kind in ("S", "CMP", "VIS"):
        while len(videos) < cfg.eval_corpus:
            for e, static in event_family(rng, cfg, min(4, cfg.eval_corpus - len(videos))):
                add_video([e], static, nf)
        picks = [int(i) for i in rng.permutation(len(videos))][: cfg.eval_queries]
        for n, i in enumerate(picks):
            vid, (e,), static, _ = videos[i]
            if kind == "S":
                add_query(
                    {"text": e.describe()},
                    [vid],
                    ground_truth(None, None, candidate_gt[vid]["keywords"], e.describe()),
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
                    ground_truth(
                        [obj_box(e.active_obj(), size)], None, candidate_gt[vid]["keywords"], text
                    ),
                )
            else:  # VIS: a key frame as an image, or the key frames as a clip
                active = video_frames(static, [e], nf)[e.start - 1]
                if n % 2 == 0:
                    img = f"q{n:04d}.png"
                    save_png(render_scene(active, size), folder / "images" / img)
                    add_query(
                        {"image": img},
                        [vid],
                        ground_truth([obj_box(e.active_obj(), size)], None, [], e.describe()),
                    )
                else:
                    clip = f"q{n:04d}"
                    fr = video_frames(static, [e], nf)[e.start - 1 : e.end]
                    write_frames(fr, size, fdir / clip)
                    add_query(
                        {"video": f"{clip}.mp4"},
                        [vid],
                        ground_truth(
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
            static = static_objects(rng, e, cfg.shapes_per_image - 1)
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
            add_query(
                {"text": text}, same, ground_truth(None, None, candidate_gt[vid]["keywords"], text)
            )
    elif kind == "LC":
        # long videos (2x frames) with two events; the order distinguishes pairs.
        n2 = 2 * nf
        while len(videos) < cfg.eval_corpus:
            e1 = random_event(rng, nf, set())
            e2 = random_event(rng, nf, event_cells(e1))
            e2 = replace(e2, start=e2.start + nf, end=e2.end + nf)
            static = static_objects(rng, e1, cfg.shapes_per_image - 2, twin=True)
            static = [o for o in static if o.cell not in event_cells(e2)]
            add_video([e1, e2], static, n2)
            if len(videos) < cfg.eval_corpus:  # the same two events in the other order
                f1 = replace(e2, start=e1.start, end=e1.end)
                f2 = replace(e1, start=e2.start, end=e2.end)
                add_video([f1, f2], static, n2)
        picks = [int(i) for i in rng.permutation(len(videos))][: cfg.eval_queries]
        for i in picks:
            vid, evs, _, _ = videos[i]
            text = f"first {evs[0].describe()}, then {evs[1].describe()}"
            add_query(
                {"text": text}, [vid], ground_truth(None, None, candidate_gt[vid]["keywords"], text)
            )
    else:  # pragma: no cover - SYNTH_TASKS is closed
        raise ValueError(name)
    _uvrb_write(folder, corpus, queries, instances, query_gt, candidate_gt)
