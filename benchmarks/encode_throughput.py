"""Encode throughput: length-grouped batches vs input order, side by side in one run.

Mixed lengths as in a retrieval corpus: many short text inputs and a few long ones (videos of
8 frames with a long T-CoT, documents with long text), shuffled. In input order nearly every
batch holds a long input and pads to it; grouped by length, short inputs batch together.
Goal (issue 3, section 6): at least 1.5x.

    python benchmarks/encode_throughput.py                      # tiny Qwen3-VL built in a tmp dir
    python benchmarks/encode_throughput.py --model /models/Qwen3-VL-2B-Instruct --dtype bfloat16

Prints one JSON line with items/s of both orders and their ratio; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from ume.config import TinyModelConfig
from ume.items import Item
from ume.models.embedder import Embedder
from ume.tcot.format import render_tcot


def make_corpus(root: Path, n: int, long_every: int, seed: int) -> tuple[list[Item], list[str]]:
    """``n`` items, one in ``long_every`` long (video or long document text), shuffled."""
    rng = random.Random(seed)
    frames = []
    for k in range(8):
        im = Image.new("RGB", (64, 64), (30 * k, 100, 200 - 20 * k))
        ImageDraw.Draw(im).rectangle((4 * k, 8, 4 * k + 20, 40), fill=(255, 255, 255))
        frames.append(str(root / f"frame{k}.png"))
        im.save(frames[-1])
    words = ["red", "green", "blue", "square", "circle", "left", "right", "top", "bottom"]
    words += ["moves", "appears", "page", "table"]
    items, tcots = [], []
    for i in range(n):
        if i % long_every == 0:
            long_text = " ".join(rng.choices(words, k=rng.randrange(250, 400)))
            if rng.random() < 0.5:
                items.append(Item(modality="video", frames=tuple(frames), text=long_text[:300]))
                ev = {"key_frames": sorted(rng.sample(range(1, 9), 3))}
            else:
                items.append(Item(modality="text", inst="Represent the document", text=long_text))
                ev = {"text_keywords": rng.sample(words, 3)}
            think = " ".join(rng.choices(words, k=80))
        else:
            items.append(Item(text=" ".join(rng.choices(words, k=rng.randrange(3, 12)))))
            ev = {"text_keywords": rng.sample(words, 2)}
            think = " ".join(rng.choices(words, k=6))
        tcots.append(render_tcot(think, "keep the colour", " ".join(rng.sample(words, 3)), ev))
    order = list(range(n))
    rng.shuffle(order)
    return [items[i] for i in order], [tcots[i] for i in order]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="local model folder (default: build a tiny Qwen3-VL)")
    ap.add_argument("--hidden-size", type=int, default=128, help="tiny model hidden size")
    ap.add_argument("--layers", type=int, default=4, help="tiny model decoder layers")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--device", default=None)
    ap.add_argument("--n", type=int, default=64, help="items to encode")
    ap.add_argument("--long-every", type=int, default=8, help="one long item in this many")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the result JSON here")
    args = ap.parse_args(argv)

    import torch

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = args.model
        if folder is None:
            from ume.models.tiny import build_tiny

            cfg = TinyModelConfig(
                hidden_size=args.hidden_size,
                num_layers=args.layers,
                num_heads=4,
                num_kv_heads=2,
                intermediate_size=4 * args.hidden_size,
            )
            folder = build_tiny("qwen3_vl", cfg, root / "tiny")
        emb = Embedder.from_pretrained(
            folder, dtype=args.dtype, attn_implementation=args.attn, device=args.device
        )
        items, tcots = make_corpus(root, args.n, args.long_every, args.seed)
        kw = {"batch_size": args.batch_size, "window": max(1, args.n // args.batch_size)}
        emb.encode(items[: args.batch_size], tcots[: args.batch_size], **kw)  # warm-up
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            for grouped in (False, True):
                t0 = time.perf_counter()
                z = emb.encode(items, tcots, group_by_length=grouped, **kw)
                if z.is_cuda:
                    torch.cuda.synchronize()
                times[grouped].append(time.perf_counter() - t0)
    plain, grouped = statistics.median(times[False]), statistics.median(times[True])
    result = {
        "benchmark": "encode_throughput",
        "model": str(args.model or f"tiny qwen3_vl h{args.hidden_size} l{args.layers}"),
        "device": str(emb.device),
        "items": args.n,
        "batch_size": args.batch_size,
        "input_order_items_per_s": round(args.n / plain, 2),
        "grouped_items_per_s": round(args.n / grouped, 2),
        "ratio": round(plain / grouped, 3),
        "goal": 1.5,
    }
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
