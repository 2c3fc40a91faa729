"""Per-task evaluation with stand-in models: files, counts, variants, missing and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures import real_layouts as fx
from tests.fixtures.eval_fakes import FakeEmbedder, FakeReasoner
from ume.config import load_config
from ume.errors import ConfigError, DataError
from ume.eval.encode import CachedEncoder, EmbeddingCache
from ume.eval.reason import CachedReasoner, TCoTCache
from ume.eval.run import EvalContext, evaluate_task, outputs, run_eval, variant_order
from ume.suites.registry import get_task

pytestmark = pytest.mark.unit

VARIANTS = ["no_evidence", "raw", "main", "answer_only"]  # any order: main runs first


def context(cache: Path, reasoner: FakeReasoner, embedder: FakeEmbedder, **kw) -> EvalContext:
    return EvalContext(
        encoder=CachedEncoder(embedder, "fake-emb", EmbeddingCache(cache / "emb", "ns")),
        reasoners={"main": CachedReasoner(reasoner, TCoTCache(cache / "tcot", "ns"))},
        **kw,
    )


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture()
def root(tmp_path) -> Path:
    r = tmp_path / "bench"
    fx.write_mmeb_image(r, "MSCOCO_i2t")
    fx.write_uvrb(r, "MS-TI")
    return r


def test_variant_order_puts_main_first_and_refuses_unknown():
    assert variant_order(VARIANTS) == ["main", "raw", "answer_only", "no_evidence"]
    with pytest.raises(ConfigError, match="unknown"):
        variant_order(["main", "bogus"])


@pytest.mark.parametrize(
    ("suite", "task", "n_q", "n_c"), [("mmeb", "MSCOCO_i2t", 3, 5), ("uvrb", "MS-TI", 4, 4)]
)
def test_every_variant_writes_its_files_and_reuses_tcots(tmp_path, root, suite, task, n_q, n_c):
    spec = get_task(suite, task)
    fr, fe = FakeReasoner(), FakeEmbedder()
    out = tmp_path / "eval"
    res = evaluate_task(spec, root, out, VARIANTS, context(tmp_path / "cache", fr, fe))
    assert list(res) == ["main", "raw", "answer_only", "no_evidence"]
    for v in res:
        paths = outputs(out, v, suite, spec.name)
        score, cost = read(paths["score"]), read(paths["cost"])
        assert score["status"] == "ok" and score["num_data"] == n_q == score["num_pred"]
        assert score["main_metric"] == spec.metric and 0.0 <= score["main_score"] <= 1.0
        preds = [json.loads(line) for line in paths["pred"].read_text().splitlines()]
        assert len(preds) == n_q and all(p["pred"] and p["label"] for p in preds)
        assert cost["queries"] == n_q and cost["candidates"] == n_c
        for part in ("reasoning", "encoding"):
            assert "seconds_per_item" in cost[part]
    cost = {v: read(outputs(out, v, suite, spec.name)["cost"]) for v in res}
    main = cost["main"]["reasoning"]
    # prompts are keyed by content: the fixture's UVRB corpus has videos with identical frames
    assert main["requested"] == n_q + n_c and main["generated"] == main["unique"] <= n_q + n_c
    assert main["tokens_generated"] == 7 * main["unique"]
    for v in ("answer_only", "no_evidence"):  # Embedder input only: zero new T-CoTs
        assert cost[v]["reasoning"]["generated"] == 0
        assert cost[v]["reasoning"]["cached"] == main["unique"]
    assert cost["raw"]["reasoning"]["requested"] == 0  # no T-CoT asked for at all
    assert fr.chats == main["unique"]
    encoded = sum(c["encoding"]["encoded"] for c in cost.values())
    assert fe.inputs == encoded == sum(c["encoding"]["unique"] for c in cost.values())
    # the same task again: nothing generated, nothing encoded
    fr2, fe2 = FakeReasoner(), FakeEmbedder()
    evaluate_task(spec, root, out, VARIANTS, context(tmp_path / "cache", fr2, fe2))
    assert fr2.chats == 0 and fe2.inputs == 0
    again = read(outputs(out, "main", suite, spec.name)["cost"])
    assert again["reasoning"]["generated"] == 0 and again["encoding"]["encoded"] == 0


def test_scores_are_those_of_the_rankings(tmp_path, root):
    """An Embedder that puts each positive first scores 1.0 (local ranking, positive at 0)."""
    spec = get_task("mmeb", "MSCOCO_i2t")

    class Oracle(FakeEmbedder):
        def encode(self, items, tcots, *, mode="full", batch_size=16, group_by_length=True):

            z = super().encode(items, tcots, mode=mode)
            for i, it in enumerate(items):  # query q and caption "caption q" share a direction
                key = it.text.split()[-1] if it.text else Path(it.image).name.split("_")[1][0]
                z[i] = 0.0
                z[i, int(key)] = 1.0
            return z

    ctx = EvalContext(
        encoder=CachedEncoder(Oracle(), "oracle", EmbeddingCache(None, "ns")), reasoners={}
    )
    res = evaluate_task(spec, root, tmp_path / "eval", ["raw"], ctx)
    assert res["raw"]["hit@1"] == 1.0 and res["raw"]["mrr@10"] == 1.0


# --------------------------------------------------------------------------- missing data
def test_missing_task_is_recorded_missing_not_dropped(tmp_path):
    spec = get_task("mmeb", "MSCOCO_i2t")
    ctx = EvalContext(encoder=None, reasoners={})  # no model is needed to record it
    for root in (None, tmp_path / "empty"):
        res = evaluate_task(spec, root, tmp_path / "eval", ["main", "raw"], ctx)
        for v, rec in res.items():
            score = read(outputs(tmp_path / "eval", v, "mmeb", spec.name)["score"])
            assert score["status"] == "missing" and rec == score and "hit@1" not in score
            expect = "eval.mmeb_root" if root is None else f"MSCOCO_i2t missing at {root}"
            assert expect in score["reason"]


def test_run_eval_on_missing_data_loads_no_model(tmp_path):
    cfg = load_config(
        "config/config.yaml", overrides={"eval": {"variants": ["main", "raw"], "mmeb_root": None}}
    )
    # embedder None: loading a model would raise; with every task missing none is loaded
    res = run_eval(cfg, "mmeb", ["MSCOCO_i2t", "ViDoRe_arxivqa"], tmp_path / "eval")
    assert {r["status"] for t in res.values() for r in t.values()} == {"missing"}
    assert "no data root" in res["MSCOCO_i2t"]["main"]["reason"]


def test_missing_tasks_make_the_leaderboard_incomplete(tmp_path, root):
    from ume.report.leaderboard import our_rows

    ctx = context(tmp_path / "cache", FakeReasoner(), FakeEmbedder())
    evaluate_task(get_task("mmeb", "MSCOCO_i2t"), root, tmp_path / "eval", ["main"], ctx)
    evaluate_task(get_task("mmeb", "OK-VQA"), root, tmp_path / "eval", ["main"], ctx)
    row, chance = our_rows({"r": tmp_path / "eval"}, ["mmeb"])
    assert "OK-VQA" in row.missing and len(row.missing) == 77
    assert row.columns["All"] is None and row.columns["I-RET"] is None
    assert row.partial["I-RET"] == row.tasks["MSCOCO_i2t"]
    # the chance row (a diagnostic) lacks the same task and names the task it has
    assert chance.variant == "chance" and chance.source == "diagnostic"
    assert chance.missing == row.missing and set(chance.tasks) == {"MSCOCO_i2t"}


# --------------------------------------------------------------------------- bad input
def _bad_uvrb(root: Path) -> Path:
    fx.write_uvrb(root, "MS-TI")
    q = root / "uvrb" / "MS-TI" / "jsonl" / "queries.jsonl"
    q.write_text(q.read_text() + "{not json\n")
    return q


def test_malformed_row_names_file_and_line(tmp_path):
    q = _bad_uvrb(tmp_path / "bench")
    ctx = context(tmp_path / "cache", FakeReasoner(), FakeEmbedder())
    with pytest.raises(DataError, match=r"queries\.jsonl: line 5: not valid JSON"):
        evaluate_task(
            get_task("uvrb", "MS-TI"), tmp_path / "bench", tmp_path / "eval", ["main"], ctx
        )
    assert q.is_file()


def test_malformed_row_skipped_and_counted(tmp_path):
    _bad_uvrb(tmp_path / "bench")
    ctx = context(tmp_path / "cache", FakeReasoner(), FakeEmbedder(), on_bad_item="skip")
    res = evaluate_task(
        get_task("uvrb", "MS-TI"), tmp_path / "bench", tmp_path / "eval", ["main"], ctx
    )
    assert res["main"]["num_skipped"] == 1 and res["main"]["skipped"][0]["line"] == 5
    assert res["main"]["num_data"] == 4


def test_variant_without_its_reasoner_is_a_config_error(tmp_path, root):
    ctx = EvalContext(
        encoder=CachedEncoder(FakeEmbedder(), "e", EmbeddingCache(None, "ns")), reasoners={}
    )
    with pytest.raises(ConfigError, match="needs the main Reasoner"):
        evaluate_task(get_task("mmeb", "MSCOCO_i2t"), root, tmp_path / "eval", ["main"], ctx)


# --------------------------------------------------------------------------- server backend
def test_no_egrl_with_one_server_is_refused():
    from ume.eval.run import load_models

    cfg = load_config(
        "config/config.yaml",
        overrides={
            "eval": {
                "reasoner_backend": "server",
                "server": {"url": "http://127.0.0.1:9/v1", "model": "m"},
                "variants": ["main", "no_egrl"],
            }
        },
    )
    with pytest.raises(ConfigError, match="no_egrl needs the Reasoner before EG-RL"):
        load_models(cfg, ["main", "no_egrl"], None, None, None)


def test_server_reasoner_retries_and_counts_tokens(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from ume.config import ServerConfig
    from ume.eval.reason import server_reasoner
    from ume.items import Item

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # first request fails (retried), then OpenAI-style answers
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            if len(seen) == 1:
                self.send_response(503)
                self.end_headers()
                return
            text = "<answer>" + body["messages"][-1]["content"][-1]["text"][-5:] + "</answer>"
            out = {"choices": [{"message": {"content": text}}], "usage": {"completion_tokens": 9}}
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = ServerConfig(
            url=f"http://127.0.0.1:{srv.server_port}/v1", model="m", max_retries=2, concurrency=1
        )
        r = server_reasoner(cfg, max_new_tokens=16)
        assert r.identity == "server:m"
        cached = CachedReasoner(r, TCoTCache(tmp_path, "ns"))
        items = [Item(modality="text", text=f"item {i}") for i in range(2)]
        from ume.eval.stats import CacheStats

        st = CacheStats("reasoning")
        out = cached.reason(items, ["query", "query"], st)
        assert all(t.startswith("<answer>") for t in out)
        assert st.computed == 2 and st.tokens_generated == 18
        assert seen[-1]["max_tokens"] == 16 and seen[-1]["model"] == "m"
    finally:
        srv.shutdown()


def test_video_task_without_its_frames_is_missing(tmp_path):
    from ume.eval.run import missing_reason

    root = tmp_path / "bench"
    fx.write_video_ret(root, "MSR-VTT")
    spec = get_task("mmeb", "MSR-VTT")
    assert missing_reason(spec, root) is None
    shutil.rmtree(root / "mmeb" / "video-tasks" / "frames")
    assert "missing at" in missing_reason(spec, root) and "frames" in missing_reason(spec, root)


# --------------------------------------------------------------------------- diagnostics
def test_oracle_tcot_uses_ground_truth_and_is_missing_without_it(tmp_path, root):
    from ume.config import SyntheticConfig
    from ume.eval.reason import OracleTCoTs
    from ume.suites.synth.writer import write_benchmark

    synth = tmp_path / "synth"
    write_benchmark(SyntheticConfig(eval_queries=4, eval_candidates=3), synth, ["SynthVQA"])
    fr, fe = FakeReasoner(), FakeEmbedder()
    ctx = context(tmp_path / "cache", fr, fe)
    ctx.reasoners = {**ctx.reasoners, "oracle": OracleTCoTs()}
    variants = ["oracle_tcot", "oracle_no_evidence", "main"]
    res = evaluate_task(get_task("synth", "SynthVQA"), synth, tmp_path / "eval", variants, ctx)
    for v in ("oracle_tcot", "oracle_no_evidence"):
        assert res[v]["status"] == "ok" and res[v]["chance"] == res["main"]["chance"]
    preds = outputs(tmp_path / "eval", "oracle_tcot", "synth", "SynthVQA")["pred"]
    tcots = [json.loads(line)["tcot"] for line in preds.read_text().splitlines()]
    assert all("bbox_2d" in t for t in tcots)  # the query's ground-truth box as evidence
    assert res["oracle_no_evidence"]["mode"] == "no_evidence"
    # a real benchmark carries no ground truth: recorded missing, with the reason
    out = evaluate_task(get_task("mmeb", "MSCOCO_i2t"), root, tmp_path / "eval2", variants, ctx)
    assert out["oracle_tcot"]["status"] == "missing" and out["main"]["status"] == "ok"
    assert "no ground truth" in out["oracle_tcot"]["reason"]


def test_score_files_carry_the_chance_of_a_random_ranking(tmp_path, root):
    ctx = context(tmp_path / "cache", FakeReasoner(), FakeEmbedder())
    res = evaluate_task(get_task("mmeb", "MSCOCO_i2t"), root, tmp_path / "eval", ["main"], ctx)
    # the fixture's queries rank 3 candidates each, one relevant: hit@1 by chance 1/3
    assert res["main"]["chance"] == pytest.approx(1 / 3)
