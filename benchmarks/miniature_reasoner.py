"""The Reasoner rows of the miniature's table (issue 9): SFT and EG-RL on the embedded default,
one column per run (seed), the median, the target and whether the median meets it.

    snakemake --cores 2 all --config run=seed0 seed=0     # and seed=1, seed=2 (one run each)
    python benchmarks/miniature_reasoner.py results/seed0 results/seed1 results/seed2 [--json OUT]

Rows (what each run wrote; nothing is recomputed here):

* SFT held-out format rate (tags + evidence): ``models/reasoner-rl/heldout.json`` ``start``
  (the SFT Reasoner, greedy, on RL pairs held out of SFT and EG-RL); target >= 0.9.
* Box IoU against ground truth, SFT and EG-RL, beside uniformly random boxes and another
  item's ground-truth box (``grounding`` in the same file).
* EG-RL total reward, mean of the first and of the last 20% of steps (``train_log.csv``);
  target: last above first in every run.
* frac_reward_zero_std of the total and of each reward (``<reward>/frac_zero_std``), mean
  over steps; target <= 0.5 for every reward.
* Held-out outcome reward, SFT vs EG-RL Reasoner (``heldout.json``); target EG-RL >= SFT.
* Synthetic suite overall, ``main`` (EG-RL Reasoner) vs ``no_egrl`` (SFT Reasoner), and the
  ``chance`` row when the leaderboard has one (``leaderboard/summary.json``).
* Stage wall times (``timings/*.tsv`` of Snakemake) and the Discriminator that judged.

``benchmarks/miniature.py`` prints these rows below its own (one table for the issue).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

REWARDS = ("format", "process", "outcome")


def _read_log(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [
            {k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)
        ]


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _first_last(rows: list[dict[str, float]], key: str, frac: float = 0.2):
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return None, None
    k = max(1, math.ceil(frac * len(vals)))
    return _mean(vals[:k]), _mean(vals[-k:])


def _stage_seconds(run: Path, rule: str) -> float | None:
    tsv = run / "timings" / f"{rule}.tsv"
    if not tsv.is_file():
        return None
    with tsv.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return float(rows[-1]["s"]) if rows else None


def _overall(run: Path, variant: str) -> float | None:
    path = run / "leaderboard" / "summary.json"
    if not path.is_file():
        return None
    synth = json.loads(path.read_text()).get("suites", {}).get("synth", {})
    for name, rec in synth.items():
        label = name.removesuffix(" (diagnostic)")  # chance and the oracle variants
        if label.endswith(f"/ {variant}") or label == variant:
            return rec.get("overall")
    return None


def run_rows(run: Path) -> dict[str, Any]:
    """Every number of one run (None where the run did not write it)."""
    rl = run / "models" / "reasoner-rl"
    held = json.loads((rl / "heldout.json").read_text())
    start, final = held.get("start", {}), held.get("final", {})
    rows = _read_log(rl / "train_log.csv")
    manifest = json.loads((rl / "manifest.json").read_text())
    first, last = _first_last(rows, "reward")
    out: dict[str, Any] = {
        "sft_format_rate": start.get("format_rate"),
        "egrl_format_rate": final.get("format_rate"),
        "sft_box_iou": start.get("grounding", {}).get("iou"),
        "egrl_box_iou": final.get("grounding", {}).get("iou"),
        "random_box_iou": start.get("grounding", {}).get("iou_random"),
        "other_item_box_iou": start.get("grounding", {}).get("iou_other_item"),
        "reward_first20": first,
        "reward_last20": last,
        "frac_zero_std_total": _mean(r.get("frac_reward_zero_std") for r in rows),
        "heldout_outcome_sft": start.get("outcome_mean"),
        "heldout_outcome_egrl": final.get("outcome_mean"),
        "main_egrl_reasoner": _overall(run, "main"),
        "main_sft_reasoner": _overall(run, "no_egrl"),
        "chance": _overall(run, "chance"),
        "egrl_steps": len(rows),
        "discriminator": (manifest.get("discriminator") or {}).get("backend"),
        "sft_seconds": _stage_seconds(run, "sft_reasoner"),
        "egrl_seconds": _stage_seconds(run, "egrl"),
    }
    for name in REWARDS:
        out[f"frac_zero_std_{name}"] = _mean(r.get(f"{name}/frac_zero_std") for r in rows)
        out[f"{name}_first20"], out[f"{name}_last20"] = _first_last(rows, f"rewards/{name}/mean")
    return out


# (row, label, target as text, check of the median or of every run)
TARGETS = [
    ("sft_format_rate", "SFT held-out format rate (tags+evidence)", ">= 0.9", lambda v: v >= 0.9),
    ("egrl_format_rate", "EG-RL held-out format rate", "", None),
    ("sft_box_iou", "SFT box IoU vs ground truth", "> random", None),
    ("egrl_box_iou", "EG-RL box IoU vs ground truth", "", None),
    ("random_box_iou", "  random boxes", "", None),
    ("other_item_box_iou", "  another item's true box", "", None),
    ("reward_first20", "EG-RL total reward, first 20% of steps", "", None),
    ("reward_last20", "EG-RL total reward, last 20% of steps", "> first, every run", None),
    *[
        (f"{n}_{w}", f"  {n} reward, {w.replace('20', ' 20%')}", "", None)
        for n in REWARDS
        for w in ("first20", "last20")
    ],
    ("frac_zero_std_total", "frac_reward_zero_std, total", "", None),
    *[(f"frac_zero_std_{n}", f"frac_zero_std, {n}", "<= 0.5", lambda v: v <= 0.5) for n in REWARDS],
    ("heldout_outcome_sft", "held-out outcome, SFT Reasoner", "", None),
    ("heldout_outcome_egrl", "held-out outcome, EG-RL Reasoner", ">= SFT", None),
    ("main_egrl_reasoner", "synth overall, main (EG-RL Reasoner)", "", None),
    ("main_sft_reasoner", "synth overall, no_egrl (SFT Reasoner)", "", None),
    ("chance", "synth overall, chance", "", None),
    ("egrl_steps", "EG-RL steps", "", None),
    ("sft_seconds", "sft_reasoner stage, s", "", None),
    ("egrl_seconds", "egrl stage, s", "", None),
]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def table(runs: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    names = list(runs)
    verdicts: dict[str, Any] = {}
    lines = [
        "| row | " + " | ".join(names) + " | median | target | met |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    for key, label, target, check in TARGETS:
        vals = [runs[n].get(key) for n in names]
        nums = [v for v in vals if isinstance(v, int | float)]
        med = statistics.median(nums) if nums else None
        met: bool | None = check(med) if (check and med is not None) else None
        if key == "reward_last20":
            pairs = [(runs[n].get("reward_first20"), runs[n].get("reward_last20")) for n in names]
            met = all(f is not None and la is not None and la > f for f, la in pairs)
        if key == "heldout_outcome_egrl":
            s = statistics.median([runs[n]["heldout_outcome_sft"] for n in names])
            met = med is not None and med >= s
        if key == "sft_box_iou" and med is not None:
            r = statistics.median([runs[n]["random_box_iou"] for n in names])
            met = med > r
        verdicts[key] = {"values": vals, "median": med, "met": met}
        cells = " | ".join(_fmt(v) for v in vals)
        mark = "" if met is None else ("yes" if met else "NO")
        lines.append(f"| {label} | {cells} | {_fmt(med)} | {target} | {mark} |")
    disc = {runs[n].get("discriminator") for n in names}
    lines.append(f"\nDiscriminator (process reward): {', '.join(sorted(map(str, disc)))}")
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="results/<run> folders (one per seed)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    runs = {}
    for r in args.runs:
        try:
            runs[r.name] = run_rows(r)
        except FileNotFoundError as e:
            print(
                f"{r}: not a finished run ({e.filename} missing); run the DAG first",
                file=sys.stderr,
            )
            return 1
    text, verdicts = table(runs)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "verdicts": verdicts}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
