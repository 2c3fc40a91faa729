"""Paper-scale volumes with generated records: does a job's cost grow with its own work only?

Measures, each in a fresh child process: wall time of the work, the process's peak resident
memory (``VmHWM``) and that peak over its memory before the work (``+MB``):

* **T-CoT cache** (``ume.eval.reason.TCoTCache`` over ``ume.store``) holding N entries in 100
  task groups: a per-task job looks up and reads its own N/100 T-CoTs (``warm``), and a job
  whose task is new scans every group for its keys (``cold``);
* **embedding cache** (``ume.eval.encode.EmbeddingCache``), the same shape, 64-d vectors;
* **training rows** (``ume.data.sources.load_source`` on a VisRAG-layout parquet: query and
  page image bytes, 1% of the pages corrupt, cap 50%): the cap walk with its refills;
* **other tasks**: the same task (10k entries) in a cache with 1 and with 50 other tasks of
  10k entries each (peak memory should not depend on them).

Prints one table per part with the growth factor per 10x of volume (goal: about 10x or
less) and writes the numbers as JSON (``--out``).

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--rows 1000 10000 100000]
                               [--dir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

TASKS = 100
DIM = 64


# --------------------------------------------------------------------------- generators
def _key(i: int) -> str:
    return hashlib.sha256(f"entry-{i}".encode()).hexdigest()


def write_tcot_cache(root: Path, n: int, tasks: int) -> dict[str, list[str]]:
    """``n`` T-CoT records in ``tasks`` groups, in the store's own format (one segment per
    group, as one evaluation job writes); returns the keys per group."""
    from ume.store import encode_record, group_folder

    per = n // tasks
    keys: dict[str, list[str]] = {}
    text = (
        "<thinking> "
        + "a red circle left of a blue square " * 6
        + "</thinking><answer> red circle </answer>"
    )
    for t in range(tasks):
        group = f"synth/task{t}"
        folder = root / group_folder(group)
        folder.mkdir(parents=True)
        ks = [_key(t * per + i) for i in range(per)]
        keys[group] = ks
        data, index, off = [], [], 0
        for k in ks:
            line = encode_record(k, [text, 57])
            data.append(line)
            index.append(f"{k} {off} {len(line)}\n")
            off += len(line)
        (folder / "seg-0-0-0.jsonl").write_bytes(b"".join(data))
        (folder / "seg-0-0-0.idx").write_text("".join(index))
    return keys


def write_emb_cache(root: Path, n: int, tasks: int) -> dict[str, list[str]]:
    import numpy as np

    from ume.store import group_folder

    per = n // tasks
    keys: dict[str, list[str]] = {}
    rng = np.random.default_rng(0)
    for t in range(tasks):
        group = f"synth/task{t}"
        folder = root / group_folder(group)
        folder.mkdir(parents=True)
        ks = [_key(t * per + i) for i in range(per)]
        keys[group] = ks
        for s in range(0, per, 4096):  # shards of a flush each, as CachedEncoder writes them
            np.save(
                folder / f"part-{s}.npy",
                rng.standard_normal((len(ks[s : s + 4096]), DIM), dtype=np.float32),
            )
            (folder / f"part-{s}.keys").write_text("\n".join(ks[s : s + 4096]) + "\n")
    return keys


def write_rows(root: Path, n: int) -> None:
    """``n`` VisRAG-layout rows (query + page image bytes, unique pages, 1% corrupt)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True)
    per_shard = 20000
    for s in range(0, n, per_shard):
        queries, images = [], []
        for i in range(s, min(n, s + per_shard)):
            if i % 100 == 99:
                data = b"\x89PNG\r\n\x1a\n corrupt"
            else:
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
                data = buf.getvalue()
            queries.append(f"which page shows figure {i}?")
            images.append({"bytes": data, "path": f"p{i}.png"})
        table = pa.table({"query": queries, "image": images, "source": ["gen"] * len(queries)})
        pq.write_table(
            table, root / "data" / f"train-{s // per_shard:05d}.parquet", row_group_size=1000
        )


# --------------------------------------------------------------------------- children
def _mem_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``: after
    fork + exec it keeps the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(kind: str, args: list[str]) -> dict:
    import numpy  # noqa: F401  - what every measured job has loaded before it starts
    import pyarrow.parquet  # noqa: F401

    from ume.data.sources import load_source
    from ume.eval.encode import EmbeddingCache
    from ume.eval.reason import TCoTCache

    before = _mem_mb("VmRSS")
    t0 = time.perf_counter()
    if kind in ("tcot", "emb"):
        root, group, keyfile = args
        keys = Path(keyfile).read_text().split()
        before = _mem_mb("VmRSS")
        t0 = time.perf_counter()
        if kind == "tcot":
            cache = TCoTCache(root, "ns")
            cache.group = group
            assert cache.find(keys) == set(keys)
            assert len(cache.get_many(keys)) == len(keys)
        else:
            cache = EmbeddingCache(root, "ns")
            cache.group = group
            assert cache.find(keys) == set(keys)
            assert cache.get_many(keys).shape == (len(keys), DIM)
    elif kind == "rows":
        root, cap, extract = args
        from ume.config import RealSourcesConfig, SourceDatasetConfig

        real = RealSourcesConfig(
            visrag_root=root, datasets={"VisRAG": SourceDatasetConfig(cap=int(cap))}
        )
        t0 = time.perf_counter()
        res = load_source("VisRAG", real, on_bad_item="skip", extract_dir=extract)
        assert res.kept == int(cap), res.kept
    seconds = time.perf_counter() - t0
    peak = _mem_mb("VmHWM")
    return {"seconds": seconds, "peak_mb": peak, "extra_mb": peak - before}


def run_child(kind: str, *args: str) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args],
        check=True, capture_output=True, text=True, env=env,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the table
def table(title: str, rows: list[tuple[int, dict]]) -> str:
    lines = [
        title,
        f"{'volume':>10} {'seconds':>9} {'x/10x':>6} {'peak MB':>8} {'+MB':>8} {'x/10x':>6}",
    ]
    prev = None
    for n, r in rows:
        extra = r["extra_mb"]
        if prev is None:
            gt = gm = "-"
        else:
            step = 10 / (n / prev[0])  # normalise to a 10x step
            gt = f"{r['seconds'] / prev[1]['seconds'] * step:.1f}"
            gm = f"{max(extra, 1) / max(prev[1]['extra_mb'], 1) * step:.1f}"
        lines.append(
            f"{n:>10} {r['seconds']:>9.3f} {gt:>6} {r['peak_mb']:>8.0f} {extra:>8.0f} {gm:>6}"
        )
        prev = (n, r)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    ap.add_argument("--dir", help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--out", help="also write the numbers as JSON here")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return 0
    from ume.offline import set_offline_env

    set_offline_env()
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="ume-scale-"))
    results: dict = {}
    try:
        for part, writer in (("tcot", write_tcot_cache), ("emb", write_emb_cache)):
            warm, cold = [], []
            for n in args.sizes:
                root = scratch / f"{part}-{n}"
                keys = writer(root / "ns", n, TASKS)
                mine = scratch / f"{part}-{n}.keys"
                mine.write_text("\n".join(keys["synth/task7"]))
                warm.append((n, run_child(part, str(root), "synth/task7", str(mine))))
                cold.append((n, run_child(part, str(root), "synth/new-task", str(mine))))
                shutil.rmtree(root)
            results[part] = {"warm": warm, "cold": cold}
            name = "T-CoT cache" if part == "tcot" else "embedding cache"
            print(
                table(f"\n{name}, a task job reading its N/{TASKS} entries (warm: its group)", warm)
            )
            print(table(f"{name}, a new task's job scanning every group (cold)", cold))
        # the same task beside 1 or 50 other tasks
        indep = []
        for others in (1, 50):
            root = scratch / f"others-{others}"
            keys = write_tcot_cache(root / "ns", 10_000 * (others + 1), others + 1)
            mine = scratch / "others.keys"
            mine.write_text("\n".join(keys["synth/task0"]))
            indep.append((others, run_child("tcot", str(root), "synth/task0", str(mine))))
            shutil.rmtree(root)
        results["other_tasks"] = indep
        print("\nT-CoT cache, one task (10k entries) beside N other tasks of 10k entries")
        print(f"{'others':>10} {'seconds':>9} {'peak MB':>8} {'+MB':>8}")
        for others, r in indep:
            print(f"{others:>10} {r['seconds']:>9.3f} {r['peak_mb']:>8.0f} {r['extra_mb']:>8.1f}")
        rows = []
        for n in args.rows:
            root = scratch / f"rows-{n}"
            write_rows(root, n)
            rows.append((n, run_child("rows", str(root), str(n // 2), str(scratch / f"pages-{n}"))))
            shutil.rmtree(root)
            shutil.rmtree(scratch / f"pages-{n}", ignore_errors=True)
        results["rows"] = rows
        print(table("\ntraining rows (VisRAG layout, page bytes), cap walk to 50%", rows))
        print("\npeak MB: the job's process at its peak; +MB: over its memory before the work")
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
