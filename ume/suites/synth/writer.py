"""The synthetic benchmark (the embedded default's evaluation data), written in the real layouts.

:func:`write_benchmark` writes every task of :data:`~ume.suites.registry.SYNTH_TASKS` under a
root in exactly the layouts :func:`ume.suites.loaders.load_task` reads for MMEB-V2 and UVRB,
so one set of loaders reads both. (The synthetic training pairs are written by
:mod:`ume.data.synthetic_pairs`.)

Content in which evidence matters (random draws in :mod:`ume.suites.synth.content`, drawing
in :mod:`ume.suites.synth.scenes`):

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
from pathlib import Path

from ume.config import SyntheticConfig
from ume.errors import DataError
from ume.io import write_json
from ume.suites.base import GT_SIDECAR, task_dir
from ume.suites.registry import SYNTH_TASKS, TaskSpec
from ume.suites.synth.image import _write_cls, _write_grounding, _write_ret, _write_vqa
from ume.suites.synth.uvrb import _write_uvrb
from ume.suites.synth.video import (
    _write_video_cls,
    _write_video_mret,
    _write_video_qa,
    _write_video_ret,
)
from ume.suites.synth.visdoc import _write_visdoc

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
    from ume.suites.base import VIDEO_KINDS

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
