"""No lost work: server-backed annotation against ``ume serve`` on localhost, with faults.

* the server is killed (SIGKILL) mid-stage, then restarted: the rerun sends exactly the
  requests whose replies were not stored (counted at the server) and writes the same
  artifact as an uninterrupted run;
* the stage process is killed (SIGKILL) mid-stage and its store gets a torn last record
  (what a kill during a write leaves): no output is taken as done, the torn record is
  dropped, the rerun asks only for the rest and writes the same artifact.

The server batches one request at a time (``--max-batch 1``): greedy decoding of a prompt
alone is deterministic, so the artifacts of the runs can be compared exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures.serve import ServerProcess
from ume.annotate.stage import annotate_pairs, filter_pairs
from ume.config import load_config
from ume.data.stage import prepare_pairs
from ume.io import write_json
from ume.models.stage import build_base_models
from ume.store import count_records, encode_record

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAMES = {"reasoner": "tiny-annotator", "embedder": "tiny-embedder"}


def _config(root: Path, url: str, cache: str):
    cfg = load_config(
        REPO / "config/config.yaml",
        overrides={
            "results_dir": str(root / "results"),
            "data": {"synthetic": {"train_pairs_per_dataset": 2}},
            "annotate": {
                "backend": "server",
                "server": {
                    "url": url,
                    "model": NAMES["reasoner"],
                    "max_tokens": 8,
                    "concurrency": 2,
                    "max_retries": 0,
                    "timeout_s": 60,
                },
            },
            "filter": {"backend": "same"},
            "eval": {"cache_dir": str(root / cache)},
        },
    )
    path = root / f"{cache}.json"
    write_json(path, cfg.to_dict())
    return cfg, path


def _annotate_cmd(config: Path, pairs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "ume", "annotate", "--config", str(config),
            "--pairs", str(pairs), "--out", str(out)]  # fmt: skip


def _wait(pred, timeout: float = 240.0, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def _tcots(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)[["pair_id", "qry_tcot", "pos_tcot"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    base = load_config(REPO / "config/config.yaml", overrides={"results_dir": str(root)})
    build_base_models(base, root / "models", ("reasoner", "embedder"))
    models = {r: root / "models" / r / "backbone.json" for r in NAMES}
    cfg0, _ = _config(root, "http://unused/v1", "cache-0")
    prepare_pairs(cfg0, root / "data")

    def start() -> ServerProcess:
        return ServerProcess(root / "cache-0.json", models, NAMES, cache_dir=root / "srv",
                             log=root / "serve.log", extra=("--max-batch", "1"))  # fmt: skip

    return {"root": root, "pairs": root / "data/pairs.parquet", "start": start}


def test_server_killed_mid_stage_then_restarted(world):
    root, pairs = world["root"], world["pairs"]
    server = world["start"]()
    try:
        # the uninterrupted run: the reference artifact and the number of requests
        cfg, _ = _config(root, server.url + "/v1", "cache-ref")
        annotate_pairs(cfg, pairs, root / "ref/tcot.parquet")
        total = server.health()["stats"]["chat_completed"]  # one per distinct prompt
        assert len(pd.read_parquet(pairs)) < total <= 2 * len(pd.read_parquet(pairs))
        filtered = filter_pairs(cfg, root / "ref/tcot.parquet", root / "ref/filtered.parquet")
        assert "relevant" in filtered  # the judge (same server, same store) answered

        # the interrupted run: the server is killed after a third of the requests
        _, config = _config(root, server.url + "/v1", "cache-b")
        before = server.health()["stats"]["chat_completed"]
        stage = subprocess.Popen(_annotate_cmd(config, pairs, root / "b/tcot.parquet"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        _wait(lambda: server.health()["stats"].get("chat_completed", 0) - before >= total // 3,
              what="a third of the requests")  # fmt: skip
        server.kill()
        _, err = stage.communicate(timeout=240)
        assert stage.returncode != 0 and b"no answer" in err  # the stage stops, saying why
        assert not (root / "b/tcot.parquet").exists()
        stored = count_records(root / "cache-b/annotate")
        assert total // 3 <= stored < total
    finally:
        server.stop()

    server = world["start"]()  # restarted: its counts start at 0
    try:
        cfg_b, _ = _config(root, server.url + "/v1", "cache-b")
        annotate_pairs(cfg_b, pairs, root / "b/tcot.parquet")
        sent = server.health()["stats"]["chat_completed"]
        assert sent == total - stored  # zero repeated requests for finished items
        pd.testing.assert_frame_equal(
            _tcots(root / "b/tcot.parquet"), _tcots(root / "ref/tcot.parquet")
        )
    finally:
        server.stop()


def test_stage_killed_mid_write_takes_nothing_half_written_as_done(world, caplog):
    root, pairs = world["root"], world["pairs"]
    server = world["start"]()
    try:
        _, config = _config(root, server.url + "/v1", "cache-c")
        store = root / "cache-c/annotate"
        stage = subprocess.Popen(_annotate_cmd(config, pairs, root / "c/tcot.parquet"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        _wait(lambda: store.is_dir() and count_records(store) >= 6, what="6 stored replies")
        os.kill(stage.pid, signal.SIGKILL)
        stage.wait()
        assert not (root / "c/tcot.parquet").exists()  # no output: the stage is not done
        seg = next(store.rglob("seg-*.jsonl"))
        with open(seg, "ab") as fh:  # a kill in the middle of a write leaves half a record
            fh.write(encode_record("k" * 64, ["half", 1])[:30])
        kept = count_records(store)
        before = server.health()["stats"]["chat_requests"]  # received (the killed stage's too)
        cfg_c, _ = _config(root, server.url + "/v1", "cache-c")
        with caplog.at_level("WARNING"):
            df = annotate_pairs(cfg_c, pairs, root / "c/tcot.parquet")
        sent = server.health()["stats"]["chat_requests"] - before
        assert len(df) and sent == count_records(store) - kept  # the torn record is not one
        if (root / "ref/tcot.parquet").exists():  # the other test's uninterrupted run
            pd.testing.assert_frame_equal(
                _tcots(root / "c/tcot.parquet"), _tcots(root / "ref/tcot.parquet")
            )
    finally:
        server.stop()
