"""Is a task's data there? The one function that says so, and the data check built on it.

:func:`task_status` looks, without reading any table, at the two halves of a task as a user
downloads them (its annotations and its media) and says ``found`` (both), ``missing``
(neither), or ``incomplete`` (one half: annotations without media or the reverse, as a
download interrupted or forgotten leaves it), with the paths it looked for, the one that is
absent and what to download where. Evaluation records a task that is not ``found`` as such
(``status`` in its score file, never scored on what is there) and the leaderboard marks it;
``python -m ume check-data`` prints the same verdicts before a long run.

:func:`check_task` adds a full read of a found task with the loaders, which gives the counts
of queries, candidates and positives, or ``malformed`` with the file and row of the first
bad item (``on_bad_item="skip"``: the bad items are counted instead). It writes nothing: page
images are checked, not decoded to disk.

The halves, per layout:

============== =========================================== ===================================
layout          annotations                                 media
============== =========================================== ===================================
mmeb_image      ``<annotation root>/<Task>/test-*.parquet``  the folder of the first image the
                                                             table names (under the image root)
mmeb_video_*    ``video-tasks/<Dataset>/[<subset>/]<split>`` the frame folder (not empty)
beir            ``queries/`` and ``qrels/`` split files      ``corpus/`` split files (pages)
uvrb            ``jsonl/{queries,corpus,instances}.jsonl``   ``videos_frames/`` (not empty)
============== =========================================== ===================================
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ume.errors import DataError
from ume.suites.base import VIDEO_KINDS, DataRoots, TaskFiles, locate, split_files

#: The verdicts, in the order a report lists them.
STATUSES = ("found", "incomplete", "missing", "malformed")
MMEB_MEDIA_REPO = "TIGER-Lab/MMEB-V2"
_FRAME_ARCHIVES = {  # kind -> (archive in the MMEB-V2 repo, how download_data.sh unpacks it)
    "video_cls": ("video-tasks/frames/video_cls.tar.gz", "unpacked into video-tasks/frames/video_cls/"),
    "video_ret": ("video-tasks/frames/video_ret.tar.gz", "unpacked into video-tasks/frames/video_ret/"),
    "video_mret": ("video-tasks/frames/video_mret.tar.gz", "unpacked in video-tasks/frames/"),
    "video_qa": ("video-tasks/frames/video_qa.tar.gz-00..04", "concatenated and unpacked in video-tasks/frames/"),
}  # fmt: skip


@dataclass
class TaskStatus:
    """The verdict on one task's data (see the module doc)."""

    suite: str
    task: str
    status: str  # one of STATUSES
    looked_for: list[str] = field(default_factory=list)  # the paths checked
    missing: list[str] = field(default_factory=list)  # those absent
    download: list[str] = field(default_factory=list)  # what to download, into which folder
    error: str = ""  # malformed: the file and row, and what is wrong
    counts: dict[str, int] = field(default_factory=dict)  # queries, candidates, positives, skipped
    notes: list[str] = field(default_factory=list)
    origin: str = ""  # the HF repo a cloned task folder came from (its .git/config), if known

    @property
    def found(self) -> bool:
        return self.status == "found"

    @property
    def reason(self) -> str:
        """One line: why the task cannot be evaluated (empty when it can)."""
        if self.status in ("found", "malformed"):
            return self.error
        what = " (half downloaded): missing" if self.status == "incomplete" else ""
        return f"task {self.task} {self.status}{what} at {', '.join(self.missing)}" + (
            f"; download {'; '.join(self.download)}" if self.download else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line of the data check's report."""
        head = f"{self.suite:<5} {self.task:<44} {self.status:<10}"
        if self.status == "found":
            c = self.counts
            if not c:
                return f"{head} at {self.looked_for[0]}"
            text = f"{head} queries {c.get('queries', 0)}, candidates {c.get('candidates', 0)}, " \
                f"positives {c.get('positives', 0)}"  # fmt: skip
            if c.get("skipped"):
                text += f", {c['skipped']} item(s) skipped"
            return text + "".join(f"; note: {n}" for n in self.notes)
        if self.status == "malformed":
            return f"{head} {self.error}"
        return (
            f"{head} missing {', '.join(self.missing)}"
            + (f" (looked for {', '.join(p for p in self.looked_for if p not in self.missing)})"
               if len(self.looked_for) > len(self.missing) else "")
            + (f"; download {'; '.join(self.download)}" if self.download else "")
        )  # fmt: skip


# --------------------------------------------------------------------------- the halves
def _nonempty_dir(p: Path) -> bool:
    return p.is_dir() and any(p.iterdir())


def _has_media(p: Path) -> bool:
    """A folder holding anything but tables (the annotation folder may be the media's)."""
    return p.is_dir() and any(c.suffix not in (".parquet", ".json") for c in p.iterdir())


def _first_image(files: TaskFiles) -> str | None:
    """The first image path the task's first table row names (relative to the image root)."""
    import pyarrow.parquet as pq

    for _, folder in files.tables():
        for f in split_files(folder, files.source.split):
            try:
                table = pq.read_table(f, columns=["qry_img_path", "tgt_img_path"])
            except Exception:  # unreadable or without the columns: the full read says so
                return None
            rows = table.slice(0, 1).to_pylist()
            if not rows:
                continue
            paths = [rows[0].get("qry_img_path"), *(rows[0].get("tgt_img_path") or [])]
            for p in paths:
                if isinstance(p, str) and p:
                    return p
            return None
    return None


def _halves(files: TaskFiles) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """``([(path, present)] of the annotations, [(path, present)] of the media)``."""
    src, layout = files.source, files.source.layout
    if layout == "mmeb_image" or layout in VIDEO_KINDS:
        ann = [
            (f"{folder}/{src.split}-*.parquet", bool(split_files(folder, src.split)))
            for _, folder in files.tables()
        ]
    elif layout == "beir":
        ann = [
            (f"{files.annotations}/{c}/{src.split}-*.parquet",
             bool(split_files(files.annotations / c, src.split)))
            for c in ("queries", "qrels")
        ]  # fmt: skip
    else:
        jdir = files.annotations / "jsonl"
        ann = [(str(jdir / f), (jdir / f).is_file()) for f in
               ("queries.jsonl", "corpus.jsonl", "instances.jsonl")]  # fmt: skip
    if layout == "mmeb_image":
        first = _first_image(files) if all(ok for _, ok in ann) else None
        if first is not None:  # the media are there if the folder of the first image is
            # (one image missing is a bad item: error, or skipped and counted)
            folder = (files.media / first).parent
            media = [(str(folder), _has_media(folder))]
        elif all(ok for _, ok in ann):  # the table names no image: the full read says so
            media = [(str(files.media), files.media.is_dir())]
        else:  # no table to ask: the task's media folder, if the media keep one per task
            sub = [files.media / s for s in src.subsets] or [files.media]
            media = [(str(p), _has_media(p)) for p in sub]
    elif layout == "beir":
        media = [
            (f"{files.media}/{src.split}-*.parquet", bool(split_files(files.media, src.split)))
        ]
    else:
        media = [(str(files.media), _nonempty_dir(files.media))]
    return ann, media


def download_hint(spec: Any, files: TaskFiles) -> list[str]:
    """What to download for ``spec``, and into which folder (one entry per half)."""
    src = files.source
    repo = src.hf_repo
    where = lambda p: str(p)  # noqa: E731 - one place to format folders
    if src.layout == "mmeb_image":
        if not repo:
            return ["the synthetic benchmark: rerun the benchmark stage"]
        return [
            f"annotations: HF dataset {repo}, subset {src.subsets[0] if src.subsets else src.name}, "
            f"split {src.split}, into {where(files.tables()[0][1])}/",
            f"images: image-tasks/mmeb_v1.tar.gz of HF dataset {MMEB_MEDIA_REPO}, unpacked into "
            f"{where(files.media)}/ (move its MMEB/* up one level, as VLM2Vec's download_data.sh does)",
        ]
    if src.layout in VIDEO_KINDS:
        if not repo:
            return ["the synthetic benchmark: rerun the benchmark stage"]
        subset = f", subset(s) {', '.join(src.subsets)}" if src.subsets else ""
        kind = VIDEO_KINDS[src.layout]
        return [
            f"annotations: HF dataset {repo}{subset}, split {src.split}, into "
            f"{where(files.annotations)}/",
            f"frames: {_FRAME_ARCHIVES[kind][0]} of HF dataset {MMEB_MEDIA_REPO}, "
            f"{_FRAME_ARCHIVES[kind][1]} (this task's: {where(files.media)}/)",
        ]
    if src.layout == "beir":
        if not repo:
            return ["the synthetic benchmark: rerun the benchmark stage"]
        return [f"git clone of HF dataset {repo} into {where(files.annotations)}/ "
                "(corpus/, queries/, qrels/)"]  # fmt: skip
    if not repo:
        return ["the synthetic benchmark: rerun the benchmark stage"]
    return [f"folder {src.folder or src.name}/ of HF dataset {repo} (jsonl/, videos_frames/) "
            f"into {where(files.annotations)}/"]  # fmt: skip


_REMOTE = re.compile(
    r"url\s*=\s*\S*?huggingface\.co/(?:datasets/)?([\w.-]+/[\w.-]+?)(?:\.git)?\s*$", re.M
)


def clone_origin(folder: Path) -> str:
    """The HF repo a git clone at ``folder`` came from (``.git/config``'s remote), or ''."""
    cfg = Path(folder) / ".git" / "config"
    try:
        m = _REMOTE.search(cfg.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""
    return m.group(1) if m else ""


def task_status(spec: Any, roots: DataRoots | str | Path | None) -> TaskStatus:
    """``found``, ``missing`` or ``incomplete`` for ``spec`` under ``roots`` (module doc);
    reads no table beyond the first row of an image task (to find one of its images)."""
    roots = DataRoots.of(roots)
    files = locate(spec, roots)
    if files.root is None:
        key = "eval.uvrb_root" if spec.layout == "uvrb" else "eval.mmeb_root"
        return TaskStatus(
            spec.suite,
            spec.name,
            "missing",
            missing=[f"<no data root: {key} is not set>"],
            download=[f"set {key} to the folder holding the benchmark"],
        )
    ann, media = _halves(files)
    looked = [p for p, _ in ann + media]
    absent = [p for p, ok in ann + media if not ok]
    have_ann, have_media = all(ok for _, ok in ann), all(ok for _, ok in media)
    if have_ann and have_media:
        status = "found"
    elif not any(ok for _, ok in ann) and not any(ok for _, ok in media):
        status = "missing"
    else:
        status = "incomplete"
    hints = download_hint(spec, files)
    if status == "incomplete" and len(hints) == 2:  # only the half that is absent
        hints = [hints[0]] if not have_ann else [hints[1]]
    out = TaskStatus(
        spec.suite,
        spec.name,
        status,
        looked_for=looked,
        missing=absent,
        download=[] if status == "found" else hints,
    )
    if files.source.layout == "beir" and files.annotations.is_dir():
        out.origin = clone_origin(files.annotations)
        if out.origin and files.source.hf_repo and out.origin != files.source.hf_repo:
            old = files.source.hf_repo.endswith("-fixed")
            out.notes.append(
                f"{files.annotations} is a clone of {out.origin}; the benchmark reads "
                f"{files.source.hf_repo}"
                + (
                    " (the old split: its scores are not comparable to the fixed one's)"
                    if old
                    else ""
                )
            )
    return out


def check_task(
    spec: Any,
    roots: DataRoots | str | Path | None,
    *,
    num_frames: int = 8,
    on_bad_item: str = "error",
    verify_media: bool = False,
) -> TaskStatus:
    """:func:`task_status`, and for a found task a full read (counts, or ``malformed``)."""
    from ume.suites.loaders import load_spec

    st = task_status(spec, roots)
    if not st.found:
        return st
    try:
        task = load_spec(
            spec,
            DataRoots.of(roots),
            num_frames=num_frames,
            on_bad_item=on_bad_item,
            verify_media=verify_media,
            write_pages=False,
        )
    except DataError as e:
        st.status, st.error = "malformed", str(e)
        return st
    summary = task.summary()
    st.counts = {k: summary[k] for k in ("queries", "candidates", "positives", "skipped")}
    st.notes += task.notes
    return st


def check_suites(
    roots_by_suite: dict[str, DataRoots],
    *,
    tasks: list[str] | None = None,
    quick: bool = False,
    **kw: Any,
) -> list[TaskStatus]:
    """The verdict on every task of each suite (``tasks``: only these names); ``quick``:
    :func:`task_status` only, no full read."""
    from ume.suites.registry import tasks as suite_tasks

    out = []
    for suite, roots in roots_by_suite.items():
        for spec in suite_tasks(suite):
            if tasks and not set(spec.names) & set(tasks):
                continue
            out.append(task_status(spec, roots) if quick else check_task(spec, roots, **kw))
    return out


def report(statuses: list[TaskStatus]) -> str:
    """The data check's report: one line per task, then the totals."""
    lines = [s.line() for s in statuses]
    counts = {k: sum(s.status == k for s in statuses) for k in STATUSES}
    skipped = sum(1 for s in statuses if s.counts.get("skipped"))
    lines.append(
        f"{len(statuses)} task(s): "
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + (f"; {skipped} found task(s) with skipped items (partial)" if skipped else "")
    )
    return "\n".join(lines)
