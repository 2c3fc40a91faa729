"""T-CoT generation: batched (left padding, prompts sorted by length) vs one by one.

The same prompts (queries and candidates of several synthetic tasks: text, images, video
frames, document pages) go through :func:`ume.eval.reason.local_reasoner` with
``batch_size=16`` and with ``batch_size=1``, greedy, for each ``--max-new-tokens`` (48: the
embedded default's T-CoT limit; 128: closer to real T-CoTs, which run to hundreds of tokens).
Goal (issue 5, section 4): batched throughput at least 4x one-by-one on the tiny Reasoner.
Prefill is batched less well than decoding (the vision tower attends image by image), so the
ratio grows with the T-CoT length.

    python benchmarks/tcot_batching.py [--items 96] [--max-new-tokens 48 128] [--out FILE]
    python benchmarks/tcot_batching.py --model /models/Qwen3-VL-8B-Instruct --dtype bfloat16

Prints one JSON line: per length, items/s and generated tokens/s of both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ume.config import SyntheticConfig, TinyModelConfig
from ume.eval.reason import ChatReasoner, local_reasoner
from ume.offline import set_offline_env
from ume.suites.loaders import load_spec
from ume.suites.registry import get_task
from ume.tcot.prompts import tcot_messages

TASKS = ("SynthT2I", "SynthVQA", "SynthVideoRET", "SynthDocRET", "SynthUVRB-CG", "SynthCLS")


def prompts(root: Path, n: int) -> list[list[dict]]:
    """``n`` chats drawn round-robin from the tasks' queries and candidates (mixed kinds)."""
    pools = []
    for name in TASKS:
        task = load_spec(get_task("synth", name), root)
        pool = [tcot_messages(it, "query") for _, it in task.queries]
        pool += [tcot_messages(it, "candidate") for it in task.candidates.values()]
        pools.append(pool)
    out, i = [], 0
    while len(out) < n:
        pool = pools[i % len(pools)]
        if pool:
            out.append(pool.pop())
        i += 1
        if not any(pools):
            break
    return out


def rate(reasoner: ChatReasoner, chats: list[list[dict]]) -> dict:
    t = time.perf_counter()
    outs = reasoner.generate(chats)
    s = time.perf_counter() - t
    tokens = sum(n for _, n in outs)
    return {"seconds": round(s, 3), "items_per_s": round(len(chats) / s, 2),
            "tokens": tokens, "tokens_per_s": round(tokens / s, 1)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="Reasoner folder (default: the tiny Qwen3-VL, built here)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--items", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, nargs="+", default=[48, 128])
    # 1 thread by default: Snakemake runs a 1-thread job with OMP_NUM_THREADS=1, and on a
    # shared CPU several torch threads per process slow both modes down unevenly
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    ap.add_argument("--out")
    args = ap.parse_args()
    set_offline_env()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        from ume.suites.synth.writer import write_benchmark

        write_benchmark(SyntheticConfig(), Path(tmp) / "bench")
        model = args.model
        if model is None:
            from ume.models.tiny import build_tiny

            model = build_tiny("qwen3_vl", TinyModelConfig(), Path(tmp) / "tiny")
        chats = prompts(Path(tmp) / "bench", args.items)

        def reasoner(bs: int, max_new: int, like: ChatReasoner | None = None) -> ChatReasoner:
            model_, processor = like.model.loaded() if like else (None, None)
            return local_reasoner(
                model,
                identity="bench",
                max_new_tokens=max_new,
                batch_size=bs,
                dtype=args.dtype,
                model=model_,
                processor=processor,
            )

        base = reasoner(1, 8)
        base.generate(chats[:4])  # warm-up
        by_length = {}
        for max_new in args.max_new_tokens:
            b = rate(reasoner(args.batch_size, max_new, base), chats)
            s = rate(reasoner(1, max_new, base), chats)
            by_length[str(max_new)] = {
                "batched": b,
                "one_by_one": s,
                "items_ratio": round(b["items_per_s"] / s["items_per_s"], 2),
                "tokens_ratio": round(b["tokens_per_s"] / s["tokens_per_s"], 2),
            }
    res = {
        "model": str(args.model or "tiny qwen3_vl"),
        "items": len(chats),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "ratio_by_max_new_tokens": {k: v["items_ratio"] for k, v in by_length.items()},
        "by_max_new_tokens": by_length,
    }
    line = json.dumps(res)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
