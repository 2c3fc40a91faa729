"""Load on ``ume serve`` with the tiny models: requests per second and p50/p95 latency at 1, 8
and 32 concurrent clients, in one run.

Starts the server (tiny base Reasoner, Embedder and Discriminator built in a temporary
folder, caches in memory only) on a free localhost port, then for each concurrency sends
``max(16, 4 x clients)`` requests of each kind, every request with its own text (nothing is
served from a cache):

* ``embed+tcot`` -- ``/v1/embeddings``, one item, the Reasoner writes its T-CoT first;
* ``embed raw``  -- ``/v1/embeddings``, one item, ``reasoning: false``;
* ``chat``       -- ``/v1/chat/completions`` with the Reasoner, 16 new tokens.

    python benchmarks/serve_load.py [--clients 1 8 32] [--out FILE]

Prints a table (and the server's batch count: concurrent requests share batches).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

REPO = Path(__file__).resolve().parents[1]
NAMES = {"reasoner": "tiny-reasoner", "embedder": "tiny-embedder", "discriminator": "tiny-disc"}


def body(kind: str, i: int, c: int) -> tuple[str, dict]:
    text = f"client load {c} request {i}: a red circle left of a blue square"
    if kind == "chat":
        return "/v1/chat/completions", {
            "model": NAMES["reasoner"],
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
        }
    return "/v1/embeddings", {
        "model": NAMES["embedder"],
        "input": [{"text": text, "instruction": "Find the image."}],
        "reasoning": kind == "embed+tcot",
    }


def level(server, kind: str, clients: int) -> dict:
    n = max(16, 4 * clients)
    batches0 = server.health()["stats"].get("batches", 0)

    def one(i: int) -> float:
        path, b = body(kind, i, clients)
        t0 = time.perf_counter()
        status, reply = server.post(path, b, timeout=600)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {reply}")
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = sorted(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return {
        "kind": kind,
        "clients": clients,
        "requests": n,
        "rps": n / wall,
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(n - 1, round(0.95 * (n - 1)))],
        "batches": server.health()["stats"].get("batches", 0) - batches0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--kinds", nargs="+", default=["embed+tcot", "embed raw", "chat"])
    ap.add_argument("--out", help="also write the rows as JSON here")
    args = ap.parse_args()

    from tests.fixtures.serve import ServerProcess
    from ume.config import load_config
    from ume.io import write_json
    from ume.models.stage import build_base_models
    from ume.offline import set_offline_env

    set_offline_env()
    with tempfile.TemporaryDirectory(prefix="ume-serve-load-") as tmp:
        root = Path(tmp)
        cfg = load_config(REPO / "config/config.yaml", overrides={"results_dir": str(root)})
        write_json(root / "config.json", cfg.to_dict())
        build_base_models(cfg, root / "models", tuple(NAMES))
        models = {r: root / "models" / r / "backbone.json" for r in NAMES}
        server = ServerProcess(
            root / "config.json", models, NAMES, cache_dir=Path("none"), log=root / "serve.log"
        )
        try:
            rows = [level(server, k, c) for k in args.kinds for c in args.clients]
        finally:
            server.stop()
    print(
        f"ume serve, tiny models (T-CoTs of {cfg.eval.max_new_tokens} tokens), one server process"
    )
    print(
        f"{'request':<12} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'batches':>7}"
    )
    for r in rows:
        print(
            f"{r['kind']:<12} {r['clients']:>7} {r['requests']:>8} {r['rps']:>7.2f} "
            f"{r['p50_s']:>7.3f} {r['p95_s']:>7.3f} {r['batches']:>7}"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
