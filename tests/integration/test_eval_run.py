"""The evaluation with the tiny Reasoner and the tiny Embedder on synthetic tasks.

Checks what the unit tests cannot: real batched generation and real encoding go through the
caches, the score files are written, a second run generates and encodes nothing, and the
variant that changes only the Embedder's input generates no T-CoT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ume.config import SyntheticConfig, TinyModelConfig, load_config
from ume.eval.run import outputs, run_eval

pytestmark = pytest.mark.integration

TASKS = ["SynthI2T", "SynthUVRB-CG"]  # a local image task and a global video task


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from ume.models.tiny import build_tiny
    from ume.suites.synth.writer import write_benchmark

    root = tmp_path_factory.mktemp("evalrun")
    syn = SyntheticConfig(eval_queries=4, eval_candidates=3, eval_corpus=6, num_frames=4)
    write_benchmark(syn, root / "bench")
    model = build_tiny("qwen3_vl", TinyModelConfig(), root / "tiny")
    cfg = load_config(
        "config/config.yaml",
        overrides={
            "eval": {
                "variants": ["main", "raw", "answer_only"],
                "max_new_tokens": 12,
                "batch_size": 8,
                "num_frames": 4,
            }
        },
    )
    return {"root": root, "model": model, "cfg": cfg}


def run(setup, out: str) -> dict:
    r = setup["root"]
    return run_eval(
        setup["cfg"],
        "synth",
        TASKS,
        r / out,
        root=r / "bench",
        embedder=setup["model"],
        reasoners={"main": setup["model"]},
        cache_dir=r / "cache",
    )


def cost(setup, out: str, variant: str, task: str) -> dict:
    return json.loads(outputs(setup["root"] / out, variant, "synth", task)["cost"].read_text())


def test_tiny_models_end_to_end_with_caches(setup):
    first = run(setup, "eval1")
    for task in TASKS:
        for v in ("main", "raw", "answer_only"):
            rec = first[task][v]
            paths = outputs(setup["root"] / "eval1", v, "synth", task)
            assert rec["status"] == "ok" and rec["num_pred"] == rec["num_data"] > 0
            assert json.loads(paths["score"].read_text())["main_score"] == rec["main_score"]
            assert len(Path(paths["pred"]).read_text().splitlines()) == rec["num_data"]
        main = cost(setup, "eval1", "main", task)
        assert main["reasoning"]["generated"] > 0 and main["encoding"]["encoded"] > 0
        assert main["reasoning"]["tokens_generated"] > 0
        # Embedder input only: the T-CoTs come from the cache, none is generated
        ans = cost(setup, "eval1", "answer_only", task)
        assert ans["reasoning"]["generated"] == 0
        assert ans["reasoning"]["cached"] == main["reasoning"]["unique"]
        assert cost(setup, "eval1", "raw", task)["reasoning"]["requested"] == 0

    # a second run (another results folder, e.g. another run name): nothing new to compute
    second = run(setup, "eval2")
    for task in TASKS:
        for v in ("main", "raw", "answer_only"):
            c = cost(setup, "eval2", v, task)
            assert c["reasoning"]["generated"] == 0 and c["encoding"]["encoded"] == 0
            assert second[task][v]["main_score"] == first[task][v]["main_score"]
        prov = cost(setup, "eval2", "main", task)["provenance"]
        assert prov["embedder"]["identity"] and prov["reasoners"]["main"]["identity"]
