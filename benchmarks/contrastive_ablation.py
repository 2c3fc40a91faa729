"""The input-mode ablation on the embedded default: one Embedder trained per input mode.

For each ``train_embedder.tcot_input`` (T-CoT + evidence, T-CoT without evidence, answer only,
raw input) the tiny Embedder is trained with config/config.yaml's ``train_embedder`` section on
the embedded default's synthetic pairs (oracle T-CoTs), then ranks held-out synthetic pairs
(another generator seed) with inputs built in the same mode
(:func:`tests.fixtures.retrieval_probe.pair_retrieval`: query -> positive among its dataset's
positives, top-1). The untrained model is measured in every mode too. This mirrors the paper's
ablation rows (answer only, no evidence cues, raw input) at toy scale; numbers from random tiny
models say whether the pipeline feeds what it should, not what the paper's models reach.

    OMP_NUM_THREADS=1 python benchmarks/contrastive_ablation.py [--modes full raw] [--out x.json]

Prints one JSON line: per mode, untrained and trained accuracy, chance, training seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", default=["full", "no_evidence", "answer_only", "raw"])
    p.add_argument("--config", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    p.add_argument("--heldout-seed", type=int, default=7)
    p.add_argument("--heldout-per-dataset", type=int, default=16)
    p.add_argument("--out", help="also write the JSON result here")
    a = p.parse_args(argv)

    import logging

    from tests.fixtures.retrieval_probe import annotated_synthetic_pairs, pair_retrieval
    from ume.config import load_config
    from ume.io import write_parquet
    from ume.models.embedder import Embedder
    from ume.models.stage import build_base_models, read_backbone
    from ume.train.contrastive import train_embedder

    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(*a.config)
    res: dict = {"steps": cfg.train_embedder.max_steps, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="ablation-") as tmp:
        root = Path(tmp)
        write_parquet(root / "contrastive.parquet", annotated_synthetic_pairs(cfg, root / "media"))
        held = cfg.data.synthetic.model_copy(
            update={"seed": a.heldout_seed, "train_pairs_per_dataset": a.heldout_per_dataset}
        )
        heldout = annotated_synthetic_pairs(cfg, root / "heldout", held)
        build_base_models(cfg, root / "models", ("embedder",))
        backbone = root / "models" / "embedder" / "backbone.json"
        base = Embedder.from_pretrained(read_backbone(backbone)["path"])
        for mode in a.modes:
            c = load_config(*a.config, overrides={"train_embedder": {"tcot_input": mode}})
            t0 = time.time()
            train_embedder(c, root / "contrastive.parquet", backbone, root / mode, root / "ck")
            seconds = time.time() - t0
            trained = pair_retrieval(
                Embedder.from_pretrained(root / mode / "model"), heldout, mode=mode
            )
            untrained = pair_retrieval(base, heldout, mode=mode)
            res["modes"][mode] = {
                "trained": round(trained["accuracy"], 3),
                "untrained": round(untrained["accuracy"], 3),
                "chance": round(trained["chance"], 3),
                "train_seconds": round(seconds, 1),
                "per_dataset_trained": {
                    k: round(v["accuracy"], 2) for k, v in trained["per_dataset"].items()
                },
            }
            print(
                mode,
                {k: v for k, v in res["modes"][mode].items() if k != "per_dataset_trained"},
                file=sys.stderr,
                flush=True,
            )
    res["heldout_queries"] = trained["queries"]
    line = json.dumps(res)
    print(line)
    if a.out:
        Path(a.out).write_text(line + "\n")
    return res


if __name__ == "__main__":
    main()
