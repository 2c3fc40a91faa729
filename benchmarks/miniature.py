"""The miniature's targets (issue 9) over several seeds: run the default DAG per seed, tabulate.

For each seed the whole embedded-default DAG runs (``snakemake --cores N all``) as its own run
``<prefix><seed>`` with every seed of the config set to it (global, tiny models, synthetic
data, pretraining, oracle annotator, split), the evaluation variants this table needs added
(``oracle_tcot``, ``oracle_no_evidence``), and its wall time and peak memory measured (the
summed RSS of the snakemake process tree, sampled every 0.2 s). Then one table: each number
per seed, their median, the chance level beside it and the target.

    python benchmarks/miniature.py --seeds 0 1 2    # the threads of scripts/run.sh
    python benchmarks/miniature.py --seeds 0 1 2 --no-run     # tabulate finished runs only

Rows: the synthetic suite's overall score for ``main``, ``raw``, ``answer_only``,
``no_evidence`` and the diagnostics ``oracle_tcot`` / ``oracle_no_evidence``; the evidence
tasks' (:data:`ume.suites.registry.EVIDENCE_TASKS`) full-minus-no-evidence delta with oracle
and with Reasoner T-CoTs; the DAG's wall time and peak RSS. ``--json`` writes it all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

VARIANTS = ("main", "raw", "answer_only", "no_evidence", "oracle_tcot", "oracle_no_evidence")
DIAGNOSTIC = ("oracle_tcot", "oracle_no_evidence")
# variant -> the multiple of chance the issue asks of its overall score
TARGETS = {"main": 3.0, "raw": 2.0}


def seed_config(seed: int, run: str, results_dir: str) -> dict:
    """Config overrides of one seed's run (layered on config/config.yaml): every seed, and
    the variants of this table added to the configured ones."""
    from ume.config import load_config

    configured = load_config(REPO / "config" / "config.yaml").eval.variants
    return {
        "run": run,
        "results_dir": results_dir,
        "seed": seed,
        "models": {"tiny": {"seed": seed}},
        "pretrain": {"seed": seed},
        "data": {"synthetic": {"seed": seed}},
        "annotate": {"oracle": {"seed": seed}},
        "split": {"seed": seed},
        "eval": {"variants": list(dict.fromkeys([*configured, *VARIANTS]))},
    }


class PeakRSS:
    """Peak of the summed resident memory of a process and its descendants (sampled)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(pid), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):  # a job that just ended
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_dag(seed: int, run: str, results_dir: str, cores: int, extra: list[str]) -> dict:
    """One seed's DAG; returns wall seconds, peak RSS (bytes) and the return code."""
    import yaml

    over = Path(results_dir) / f"{run}.overrides.yaml"
    over.parent.mkdir(parents=True, exist_ok=True)
    over.write_text(yaml.safe_dump(seed_config(seed, run, results_dir)))
    cmd = [
        "snakemake",
        "--cores",
        str(cores),
        "all",
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(over),
        *extra,
    ]
    log = Path(results_dir) / f"{run}.snakemake.log"
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
        peak = PeakRSS(proc.pid)
        rc = proc.wait()
    return {"wall_s": time.time() - t0, "peak_rss": peak.stop(), "rc": rc, "log": str(log)}


def read_run(eval_dir: Path) -> dict:
    """``{variant: {task: (score, chance)}}`` (percent) of one run's synthetic scores."""
    out: dict[str, dict[str, tuple[float, float | None]]] = {}
    for v in VARIANTS:
        for f in sorted((eval_dir / v / "synth").glob("*.score.json")):
            rec = json.loads(f.read_text())
            if rec.get("status") != "ok":
                continue
            chance = rec.get("chance")
            out.setdefault(v, {})[rec["task"]] = (
                100 * rec["main_score"],
                None if chance is None else 100 * chance,
            )
    return out


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarise(scores: dict) -> dict:
    """Overall score and chance per variant; evidence deltas (full - no_evidence)."""
    from ume.suites.registry import EVIDENCE_TASKS, SYNTH_TASKS

    names = [s.name for s in SYNTH_TASKS]
    res: dict = {}
    for v, tasks in scores.items():
        complete = all(n in tasks for n in names)
        res[v] = {
            "overall": mean([tasks[n][0] for n in names if n in tasks]) if complete else None,
            "chance": mean([tasks[n][1] for n in names if n in tasks and tasks[n][1] is not None]),
            "tasks": {n: tasks[n][0] for n in names if n in tasks},
        }
    for label, full, noev in (
        ("evidence delta (oracle T-CoTs)", "oracle_tcot", "oracle_no_evidence"),
        ("evidence delta (Reasoner T-CoTs)", "main", "no_evidence"),
    ):
        if full in scores and noev in scores:
            ds = [
                scores[full][t][0] - scores[noev][t][0]
                for t in EVIDENCE_TASKS
                if t in scores[full] and t in scores[noev]
            ]
            res[label] = {
                "overall": mean(ds),
                "tasks": {
                    t: scores[full][t][0] - scores[noev][t][0]
                    for t in EVIDENCE_TASKS
                    if t in scores[full] and t in scores[noev]
                },
            }
    return res


def fmt(v: float | None, digits: int = 1) -> str:
    return "--" if v is None else f"{v:.{digits}f}"


def table(runs: dict[int, dict]) -> str:
    seeds = sorted(runs)
    head = ["", *(f"seed {s}" for s in seeds), "median", "chance", "target"]
    rows: list[list[str]] = []

    def row(label: str, key: str, target: str = "", chance: bool = True) -> None:
        vals = [runs[s]["summary"].get(key, {}).get("overall") for s in seeds]
        ch = [runs[s]["summary"].get(key, {}).get("chance") for s in seeds]
        have = [v for v in vals if v is not None]
        med = statistics.median(have) if len(have) == len(vals) and have else None
        chm = statistics.median([c for c in ch if c is not None]) if any(ch) and chance else None
        rows.append([label, *(fmt(v) for v in vals), fmt(med), fmt(chm), target])

    for v in VARIANTS:
        k = TARGETS.get(v)
        chs = [runs[s]["summary"].get(v, {}).get("chance") for s in seeds]
        chs = [c for c in chs if c is not None]
        tgt = f">= {k:g}x chance ({k * statistics.median(chs):.1f})" if k and chs else ""
        row(f"synth overall {v}" + (" (diagnostic)" if v in DIAGNOSTIC else ""), v, tgt)
    row("evidence delta, oracle T-CoTs", "evidence delta (oracle T-CoTs)", ">= 5 points", False)
    row("evidence delta, Reasoner T-CoTs", "evidence delta (Reasoner T-CoTs)", "reported", False)
    dag = [runs[s].get("dag") or {} for s in seeds]
    walls = [d.get("wall_s") for d in dag]
    peaks = [d.get("peak_rss") for d in dag]
    rows.append(
        [
            "DAG wall time (min)",
            *(fmt(w / 60 if w else None, 2) for w in walls),
            fmt(statistics.median([w / 60 for w in walls if w]) if all(walls) else None, 2),
            "",
            "<= 10",
        ]
    )
    rows.append(
        [
            "DAG peak RSS (GB, summed)",
            *(fmt(p / 1e9 if p else None, 2) for p in peaks),
            fmt(statistics.median([p / 1e9 for p in peaks if p]) if all(peaks) else None, 2),
            "",
            "< 4",
        ]
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def task_table(runs: dict[int, dict]) -> str:
    """Per task: the median over seeds of each variant, and chance."""
    from ume.suites.registry import SYNTH_TASKS

    seeds = sorted(runs)
    head = ["task", *VARIANTS, "chance"]
    lines = [" | ".join(head)]
    for spec in SYNTH_TASKS:
        cells = []
        for v in VARIANTS:
            xs = [runs[s]["scores"].get(v, {}).get(spec.name, (None, None))[0] for s in seeds]
            xs = [x for x in xs if x is not None]
            cells.append(fmt(statistics.median(xs)) if xs else "--")
        ch = [runs[s]["scores"].get("main", {}).get(spec.name, (None, None))[1] for s in seeds]
        ch = [c for c in ch if c is not None]
        lines.append(" | ".join([spec.name, *cells, fmt(statistics.median(ch)) if ch else "--"]))
    return "\n".join(lines)


def reasoner_rows(results_dir: Path, runs: list[str]) -> tuple[str, dict] | None:
    """The Reasoner rows (benchmarks/miniature_reasoner.py) of the same runs: its table and
    each run's numbers; None when a run has not finished."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import miniature_reasoner as mr

    rows = {}
    for run in runs:
        try:
            rows[run] = mr.run_rows(results_dir / run)
        except FileNotFoundError as e:
            print(f"{results_dir / run}: no Reasoner rows ({e.filename} missing)", file=sys.stderr)
            return None
    text, _ = mr.table(rows)
    return text, rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--results-dir", default="results/miniature")
    p.add_argument("--prefix", default="seed", help="run name = <prefix><seed>")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--no-run", action="store_true", help="only tabulate runs already there")
    p.add_argument("--json", help="write every number here")
    p.add_argument("snakemake_args", nargs="*", help="after --: more snakemake options")
    a = p.parse_args(argv)

    runs: dict[int, dict] = {}
    for seed in a.seeds:
        run = f"{a.prefix}{seed}"
        dag = None
        if not a.no_run:
            dag = run_dag(seed, run, a.results_dir, a.cores, a.snakemake_args)
            print(
                f"seed {seed}: DAG rc {dag['rc']} in {dag['wall_s'] / 60:.2f} min, peak RSS "
                f"{dag['peak_rss'] / 1e9:.2f} GB (log {dag['log']})",
                flush=True,
            )
        scores = read_run(Path(a.results_dir) / run / "eval")
        runs[seed] = {"dag": dag, "scores": scores, "summary": summarise(scores)}
    print(table(runs))
    print()
    print(task_table(runs))
    print()
    reasoner = reasoner_rows(Path(a.results_dir), [f"{a.prefix}{s}" for s in a.seeds])
    if reasoner is not None:
        print(reasoner[0])
        for seed in a.seeds:
            runs[seed]["reasoner"] = reasoner[1].get(f"{a.prefix}{seed}")
    if a.json:
        Path(a.json).write_text(json.dumps(runs, indent=2, default=str) + "\n")
    return runs


if __name__ == "__main__":
    main()
