"""The prepared GPU check (issue 10, item 7): the tiny models through every GPU stage, on one GPU.

Runs, in bf16 with sdpa attention, the tiny random Qwen3-VL / Qwen2-VL models through
train_embedder, sft_reasoner, egrl (the paper's batch layout: G = 8, whole pairs per step)
and one evaluation task, and prints, per stage, the steps, the seconds per step and the peak
GPU memory -- within 10 minutes on one GPU. Started by ``scripts/gpu_check.sh``; ``--dry-run``
prints the plan (and what this machine has) without running anything, and is what the CPU
tests run.

A GPU image has torch, transformers, peft and accelerate; the other packages ume needs come
as wheels (``--wheels DIR``: ``pip install --no-index --find-links DIR``). Nothing is
downloaded: the models are built locally, the data are synthetic.

Exit status: 0 (done, or a dry run), 2 (no CUDA GPU here), 3 (packages missing and no
wheels for them), 4 (over the time budget; the figures are printed anyway).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 600
#: in a GPU image already (never installed here: torch must stay the image's CUDA build)
IMAGE_PACKAGES = ("torch", "transformers", "peft", "accelerate")
#: import name -> pip name of what the check needs beyond the image (carried as wheels)
CARRIED = {
    "trl": "trl",
    "datasets": "datasets",
    "pydantic": "pydantic",
    "yaml": "pyyaml",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "PIL": "pillow",
    "numpy": "numpy",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
    "openai": "openai",
    "jsonschema": "jsonschema",
}
ROLES = ("embedder", "reasoner", "discriminator", "annotator")
EVAL_TASK = ("synth", "SynthGrounding")  # an image task with evidence boxes

#: the check's config, over the embedded default: bf16 + sdpa, small step counts, EG-RL with
#: the paper preset's structure (G = 8, several pairs per step, gradient accumulation)
OVERRIDES: dict = {
    "run": "gpu-check",
    "models": {r: {"dtype": "bfloat16", "attn_implementation": "sdpa"} for r in ROLES},
    "data": {"synthetic": {"train_pairs_per_dataset": 16}},
    "split": {
        "rl_per_dataset": 8,
        "rl_datasets": ["synth_img_grounding", "synth_vid_ret", "synth_doc_ret"],
    },
    "train_embedder": {"max_steps": 10, "save_steps": 1000},
    "sft": {"max_steps": 10, "save_steps": 1000},
    "egrl": {
        "max_steps": 3,
        "num_generations": 8,
        "pairs_per_device": 3,
        "heldout_pairs_per_dataset": 0,
        "max_completion_length": 32,
        "save_steps": 1000,
    },
    "eval": {"variants": ["main"], "tasks": [EVAL_TASK[1]], "suites": [EVAL_TASK[0]]},
}

STAGES = (
    ("setup", "tiny base models, synthetic pairs and benchmark, oracle annotation, filter, split"),
    ("train_embedder", "contrastive training (GradCache InfoNCE), 10 steps"),
    ("sft_reasoner", "cold-start SFT of the Reasoner (TRL SFTTrainer), 10 steps"),
    ("egrl", "EG-RL (TRL GRPOTrainer, G=8, 3 pairs per step, 6 accumulation steps), 3 steps"),
    ("eval", f"evaluation of {EVAL_TASK[0]}/{EVAL_TASK[1]} (T-CoTs, embeddings, ranking)"),
)


def gpu() -> str | None:
    """The name of this process's CUDA GPU, or None."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def missing(names) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def plan_lines(args, gpu_name: str | None) -> list[str]:
    lack_image = missing(IMAGE_PACKAGES)
    lack = missing(CARRIED)
    lines = [
        "gpu_check plan" + (" (dry run: nothing runs)" if args.dry_run else ""),
        f"  GPU: {gpu_name or 'none: no CUDA GPU here (torch.cuda.is_available() is false)'}",
        f"  image packages {', '.join(IMAGE_PACKAGES)}: "
        + (f"MISSING {', '.join(lack_image)}" if lack_image else "present"),
        "  other packages: "
        + (
            f"to install from {args.wheels}: {', '.join(CARRIED[m] for m in lack)}"
            if lack and args.wheels
            else (
                f"MISSING {', '.join(CARRIED[m] for m in lack)} (give --wheels)"
                if lack
                else "present"
            )
        ),
        f"  config: config/config.yaml + {json.dumps(OVERRIDES, sort_keys=True)}",
        f"  results: {args.out}",
    ]
    lines += [f"  {i}. {name}: {what}" for i, (name, what) in enumerate(STAGES, 1)]
    lines.append(
        f"  prints per stage: steps, seconds per step, peak GPU memory; budget {BUDGET_S} s"
    )
    return lines


def install(wheels: str, pip_names: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", wheels, *pip_names]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def run_stages(out: Path, *, cuda: bool = True) -> list[dict]:
    """Run every stage; one record per stage: steps, seconds, s/step, peak GPU MiB
    (``cuda`` false: the CPU, for testing this script; no memory figure)."""
    import torch

    sys.path.insert(0, str(REPO))
    from ume.annotate.stage import annotate_pairs, filter_pairs, split_pairs
    from ume.config import load_config
    from ume.data.stage import prepare_benchmark, prepare_pairs
    from ume.eval.run import run_eval
    from ume.io import write_json
    from ume.models.stage import build_base_models
    from ume.train.contrastive import train_embedder
    from ume.train.egrl import train_egrl
    from ume.train.sft import train_sft

    cfg = load_config(REPO / "config/config.yaml", overrides=OVERRIDES)
    run = out / "run"
    base = run / "models/base"
    records: list[dict] = []

    def measured(name: str, fn, steps_of) -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.time()
        fn()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.time() - t0
        steps = steps_of()
        peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
        rec = {
            "stage": name,
            "steps": steps,
            "seconds": round(seconds, 2),
            "seconds_per_step": round(seconds / steps, 3) if steps else None,
            "peak_gpu_mib": peak,
        }
        records.append(rec)
        print(
            f"{name:15s} steps {steps!s:>4}  {rec['seconds']:8.2f} s  "
            f"{rec['seconds_per_step']!s:>8} s/step  peak GPU memory {peak!s:>9} MiB",
            flush=True,
        )

    def manifest(folder: Path) -> dict:
        return json.loads((folder / "manifest.json").read_text())

    def setup() -> None:
        write_json(run / "config.json", cfg.to_dict())
        build_base_models(cfg, base, ROLES[:3])
        prepare_pairs(cfg, run / "data")
        prepare_benchmark(cfg, run / "bench/synth")
        annotate_pairs(cfg, run / "data/pairs.parquet", run / "annotate/tcot.parquet")
        filter_pairs(cfg, run / "annotate/tcot.parquet", run / "filter/filtered.parquet")
        split_pairs(
            cfg,
            run / "filter/filtered.parquet",
            run / "split/contrastive.parquet",
            run / "split/rl.parquet",
        )

    measured("setup", setup, lambda: 1)
    emb = run / "models/embedder"
    measured(
        "train_embedder",
        lambda: train_embedder(
            cfg,
            run / "split/contrastive.parquet",
            base / "embedder/backbone.json",
            emb,
            datasets_json=run / "data/datasets.json",
        ),
        lambda: manifest(emb)["steps"],
    )
    sft = run / "models/reasoner-sft"
    measured(
        "sft_reasoner",
        lambda: train_sft(
            cfg, run / "split/contrastive.parquet", base / "reasoner/backbone.json", sft
        ),
        lambda: manifest(sft)["steps"],
    )
    rl = run / "models/reasoner-rl"
    measured(
        "egrl",
        lambda: train_egrl(
            cfg, run / "split/rl.parquet", sft, emb, base / "discriminator/backbone.json", rl
        ),
        lambda: manifest(rl)["steps"],
    )
    measured(
        "eval",
        lambda: run_eval(
            cfg,
            EVAL_TASK[0],
            [EVAL_TASK[1]],
            run / "eval",
            root=run / "bench/synth",
            embedder=emb,
            reasoners={"main": rl},
            cache_dir=run / "cache",
        ),
        lambda: 1,
    )
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="print the plan; run nothing")
    p.add_argument("--wheels", help="folder of wheels for the packages a GPU image lacks")
    p.add_argument(
        "--out",
        default=os.environ.get("OUT") or None,
        help="results folder (default: $OUT, else a new temporary folder)",
    )
    p.add_argument(
        "--cpu",
        action="store_true",
        help="run on the CPU anyway: tests this script, measures nothing of a GPU",
    )
    args = p.parse_args(argv)
    name = gpu()
    if args.dry_run:
        args.out = args.out or "(a new temporary folder)"
        print("\n".join(plan_lines(args, name)), flush=True)
        return 0
    args.out = Path(args.out or tempfile.mkdtemp(prefix="ume-gpu-check-"))
    print("\n".join(plan_lines(args, name)), flush=True)
    if name is None and not args.cpu:
        print(
            "gpu_check: no CUDA GPU here (torch.cuda.is_available() is false); it needs one "
            "GPU. Run it on a GPU machine; --dry-run prints the plan anywhere.",
            file=sys.stderr,
        )
        return 2
    lack_image = missing(IMAGE_PACKAGES)
    if lack_image:
        print(f"gpu_check: the image lacks {', '.join(lack_image)}", file=sys.stderr)
        return 3
    lack = [CARRIED[m] for m in missing(CARRIED)]
    if lack:
        if not args.wheels:
            print(
                f"gpu_check: missing {', '.join(lack)}; give --wheels DIR with their wheels",
                file=sys.stderr,
            )
            return 3
        install(args.wheels, lack)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    t0 = time.time()
    records = run_stages(args.out, cuda=name is not None)
    total = time.time() - t0
    summary = {"gpu": name, "total_seconds": round(total, 1), "stages": records}
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    where = name or "the CPU (--cpu: no GPU figures)"
    print(f"total {total:.1f} s on {where}; figures in {args.out / 'gpu_check.json'}", flush=True)
    if total > BUDGET_S:
        print(f"gpu_check: over the {BUDGET_S} s budget", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
