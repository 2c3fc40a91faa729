"""Evaluation caches over the full synthetic suite: encodes per unique input, T-CoTs reused.

Runs the evaluation of every synthetic task (tiny Reasoner, tiny Embedder, fresh caches) for
the variants main, raw, answer_only and no_evidence in one process, then once more, and
counts:

* **Embedder calls per unique input** over the whole suite: inputs passed to the Embedder /
  distinct (item, T-CoT, mode, Embedder) keys (goal: exactly 1.00); and the inputs encoded by
  the second pass (goal: 0);
* **new T-CoTs of the variants that change only the Embedder's input** (answer_only,
  no_evidence; goal: 0) next to those of main, and the T-CoTs of the second pass (goal: 0).

    python benchmarks/eval_cache_counts.py [--out FILE]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ume.config import SyntheticConfig, TinyModelConfig, load_config
from ume.eval.run import EvalContext, evaluate_task, load_models, outputs
from ume.offline import set_offline_env
from ume.suites.registry import tasks

VARIANTS = ["main", "raw", "answer_only", "no_evidence"]
REPO = Path(__file__).resolve().parents[1]


def one_pass(cfg, model: Path, bench: Path, out: Path, cache: Path) -> dict:
    encoder, reasoners = load_models(cfg, VARIANTS, model, {"main": model}, cache)
    ctx = EvalContext(encoder=encoder, reasoners=reasoners, num_frames=cfg.eval.num_frames)
    t = time.perf_counter()
    specs = tasks("synth")
    for spec in specs:
        evaluate_task(spec, bench, out, VARIANTS, ctx)
    seconds = time.perf_counter() - t
    gen = {v: 0 for v in VARIANTS}
    enc = {v: 0 for v in VARIANTS}
    for spec in specs:
        for v in VARIANTS:
            c = json.loads(outputs(out, v, "synth", spec.name)["cost"].read_text())
            gen[v] += c["reasoning"]["generated"]
            enc[v] += c["encoding"]["encoded"]
    return {
        "tasks": len(specs),
        "seconds": round(seconds, 1),
        "tcots_generated": gen,
        "inputs_encoded": enc,
        "embedder_calls_per_unique_input": round(encoder.calls_per_unique(), 4),
        "max_calls_for_one_input": encoder.max_calls_per_key(),
        "unique_inputs_encoded": len(encoder.calls),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out")
    args = ap.parse_args()
    set_offline_env()
    import torch

    torch.set_num_threads(args.threads)
    from ume.models.tiny import build_tiny
    from ume.suites.synth.writer import write_benchmark

    cfg = load_config(REPO / "config" / "config.yaml", overrides={"eval": {"variants": VARIANTS}})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_benchmark(SyntheticConfig(), tmp / "bench")
        model = build_tiny("qwen3_vl", TinyModelConfig(), tmp / "tiny")
        first = one_pass(cfg, model, tmp / "bench", tmp / "eval1", tmp / "cache")
        second = one_pass(cfg, model, tmp / "bench", tmp / "eval2", tmp / "cache")
    only_input = ("answer_only", "no_evidence")
    res = {
        "max_new_tokens": cfg.eval.max_new_tokens,
        "embedder_calls_per_unique_input": first["embedder_calls_per_unique_input"],
        "new_tcots_embedder_input_only_variants": sum(
            first["tcots_generated"][v] for v in only_input
        ),
        "tcots_main": first["tcots_generated"]["main"],
        "second_pass_tcots": sum(second["tcots_generated"].values()),
        "second_pass_encoded": sum(second["inputs_encoded"].values()),
        "first_pass": first,
        "second_pass": second,
    }
    line = json.dumps(res)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
