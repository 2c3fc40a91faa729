"""Peak memory of one contrastive training step: gradient caching vs the plain full batch.

Issue 3, section 6: at effective batch 64 pairs (128 Embedder inputs), GradCache should need at
most 0.4x the plain step's peak memory, with the same loss and gradients. Both steps run in
one invocation, each in a fresh child process (so neither inherits the other's allocator
high-water mark), on the same inputs, weights and seed:

* ``plain``: embed all queries and all targets with a graph, InfoNCE, ``backward()``;
* ``gradcache``: :func:`ume.train.gradcache.gradcache_step` with ``--chunk`` inputs per chunk.

Memory is the step's peak above what was allocated before it: on CUDA
``torch.cuda.max_memory_allocated`` minus ``memory_allocated``; on CPU the process's peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) minus its resident set
before the step (glibc is told to map large blocks and return them on free, so that the
resident set follows live memory). Inputs (images, T-CoT evidence crops, token ids) are built and collated
before the measurement; LoRA dropout is 0 so the two gradients are comparable exactly.

    python benchmarks/gradcache_memory.py                     # tiny Qwen3-VL, synthetic pairs
    python benchmarks/gradcache_memory.py --model /models/Qwen3-VL-2B-Instruct --device cuda \
        --dtype bfloat16 --chunk 16

Prints one JSON line (peak MB of both, ratio, loss and gradient differences); ``--out``
also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


# --------------------------------------------------------------------------- memory probes
def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


class PeakMemory:
    """Peak bytes allocated above the level at :meth:`start` (CUDA allocator or CPU RSS)."""

    def __init__(self, device: str) -> None:
        self.device = device

    def start(self) -> None:
        import gc

        import torch

        gc.collect()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
            self.base = _rss_kb("VmRSS") * 1024

    def peak(self) -> int:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return _rss_kb("VmHWM") * 1024 - self.base


# --------------------------------------------------------------------------- data
def make_inputs(media: Path, pairs: int, seed: int):
    """``pairs`` synthetic training pairs (every modality) with oracle T-CoTs, built."""

    from ume.annotate.backends import OracleAnnotator
    from ume.config import OracleConfig, SyntheticConfig
    from ume.data.synthetic_pairs import TRAIN_DATASETS, write_training_pairs
    from ume.inputs import build_input
    from ume.items import Item

    per = -(-pairs // len(TRAIN_DATASETS))
    df = write_training_pairs(SyntheticConfig(seed=seed, train_pairs_per_dataset=per), media)
    df = df.sample(n=pairs, random_state=seed).reset_index(drop=True)
    recs = df.to_dict("records")
    ann = OracleAnnotator(OracleConfig(seed=seed))
    sides = []
    for s, role in (("qry", "query"), ("pos", "candidate")):
        items = [Item.from_row(r, s) for r in recs]
        tcots = ann.tcot(items, [role] * len(items))
        sides.append([build_input(i, t) for i, t in zip(items, tcots, strict=True)])
    return sides


# --------------------------------------------------------------------------- one variant
def run_variant(a) -> None:
    import torch

    from ume.config import LoraConfig
    from ume.inputs import collate
    from ume.models.embedder import Embedder
    from ume.train.gradcache import chunk, gradcache_step
    from ume.train.losses import info_nce

    torch.manual_seed(a.seed)
    emb = Embedder.from_pretrained(
        a.model,
        dtype=a.dtype,
        attn_implementation=a.attn,
        lora=LoraConfig(r=a.lora_r, alpha=2 * a.lora_r, dropout=0.0),
        device=a.device if a.device == "cuda" else None,
    )
    with torch.no_grad():  # LoRA B starts at zero: give the A matrices a gradient too
        g = torch.Generator().manual_seed(a.seed)
        for n, p in emb.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g).to(p) * 0.02)
    if a.checkpointing:
        emb.gradient_checkpointing_enable()
    emb.train()
    q, t = make_inputs(Path(a.workdir) / "media", a.pairs, a.seed)
    size = a.chunk if a.variant == "gradcache" else len(q)
    groups = [[collate(list(c), emb.processor) for c in chunk(side, size)] for side in (q, t)]

    def loss_fn(reps):
        return info_nce(reps[0], reps[1], temperature=0.02, gather=False)

    with torch.no_grad():  # warm-up of lazy initialisations, outside the measurement
        emb(**collate(q[:1], emb.processor))
    trainable = {n: p for n, p in emb.named_parameters() if p.requires_grad}
    mem = PeakMemory(a.device)
    mem.start()
    t0 = time.perf_counter()
    if a.variant == "gradcache":
        out = gradcache_step(lambda b: emb(**b), groups, loss_fn)
    else:
        out = loss_fn([emb(**groups[0][0]), emb(**groups[1][0])])
        out.loss.backward()
    seconds = time.perf_counter() - t0
    peak = mem.peak()
    torch.save(
        {
            "peak_bytes": peak,
            "seconds": seconds,
            "loss": float(out.loss.detach()),
            "accuracy": float(out.accuracy),
            "grads": {n: p.grad.detach().float().cpu() for n, p in trainable.items()},
            "tokens": sum(int(b["attention_mask"].sum()) for side in groups for b in side),
        },
        Path(a.workdir) / f"{a.variant}.pt",
    )


# --------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=64, help="effective batch (pairs)")
    p.add_argument("--chunk", type=int, default=8, help="inputs per GradCache chunk")
    p.add_argument("--model", help="Embedder backbone folder (default: a tiny Qwen3-VL)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="also write the JSON result here")
    p.add_argument("--variant", choices=("gradcache", "plain"), help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.variant:
        run_variant(a)
        return {}

    import torch

    with tempfile.TemporaryDirectory(prefix="gc-mem-") as tmp:
        if a.model is None:
            from ume.config import TinyModelConfig
            from ume.models.tiny import build_tiny

            a.model = str(build_tiny("qwen3_vl", TinyModelConfig(), Path(tmp) / "tiny"))
        res = {}
        for variant in ("gradcache", "plain"):
            cmd = [sys.executable, __file__, "--variant", variant, "--workdir", tmp]
            for k in ("pairs", "chunk", "model", "device", "dtype", "attn", "lora_r", "seed"):
                cmd += [f"--{k.replace('_', '-')}", str(getattr(a, k))]
            cmd += ["--checkpointing"] if a.checkpointing else []
            env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            # glibc: large blocks via mmap, returned on free, so RSS follows live memory
            env |= {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
            subprocess.run(cmd, check=True, env=env)
            res[variant] = torch.load(Path(tmp) / f"{variant}.pt")
    gc, pl = res["gradcache"], res["plain"]
    rel = max(
        ((gc["grads"][n] - g).abs().max() / (g.abs().max() + 1e-12)).item()
        for n, g in pl["grads"].items()
    )
    mb = 1 << 20
    out = {
        "pairs": a.pairs,
        "inputs": 2 * a.pairs,
        "chunk": a.chunk,
        "device": a.device,
        "model": "tiny-qwen3_vl" if "gc-mem-" in a.model else a.model,
        "tokens": pl["tokens"],
        "peak_mb": {
            "gradcache": round(gc["peak_bytes"] / mb, 1),
            "plain": round(pl["peak_bytes"] / mb, 1),
        },
        "ratio": round(gc["peak_bytes"] / pl["peak_bytes"], 3),
        "goal": "<= 0.4",
        "seconds": {"gradcache": round(gc["seconds"], 2), "plain": round(pl["seconds"], 2)},
        "loss": {"gradcache": gc["loss"], "plain": pl["loss"]},
        "loss_abs_diff": abs(gc["loss"] - pl["loss"]),
        "grad_max_rel_diff": rel,
    }
    line = json.dumps(out)
    print(line)
    if a.out:
        Path(a.out).write_text(line + "\n")
    return out


if __name__ == "__main__":
    main()
