"""What a cluster run of config/paper.yaml would hit first (issue 10): EG-RL's batch layout and
DeepSpeed, the Embedder's own input settings in the reward, the RL data rules and same-label
masking, pinned private APIs, rule environments, served-model identity."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from ume import plan
from ume.config import EGRLConfig, ServerConfig, config_from_dict, load_config
from ume.errors import ConfigError
from ume.inputs import PixelBudget
from ume.items import Item, pair_row, pairs_frame
from ume.tcot.format import render_tcot
from ume.train import egrl as egrl_mod
from ume.train import reasoner_common
from ume.train.rewards import EGRLScorer, hardest_negatives, item_json, outcome_terms

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- EG-RL layout
def test_batch_layout_is_trl_s_generation_batch_of_whole_pairs():
    paper = load_config(REPO / "config/config.yaml", REPO / "config/paper.yaml").egrl
    # 8 pairs x 2 sides x G=8 = 128 rollouts per process per step, 8 at a time
    assert egrl_mod.batch_layout(paper) == {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 16,
        "steps_per_generation": 16,
    }
    two = EGRLConfig(num_generations=4, pairs_per_device=3, micro_batch_groups=2)
    assert egrl_mod.batch_layout(two) == {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 3,
        "steps_per_generation": 3,
    }


def test_grpo_args_carry_the_layout_and_deepspeed(monkeypatch, tmp_path):
    import trl

    seen = {}
    monkeypatch.setattr(trl, "GRPOConfig", lambda **kw: seen.update(kw) or kw)
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    cfg = config_from_dict(
        {"egrl": {"num_generations": 8, "pairs_per_device": 3, "deepspeed": str(ds)}}
    )
    with pytest.raises(ConfigError, match=r"egrl\.deepspeed = .* needs GPUs"):
        egrl_mod.grpo_args(cfg, tmp_path / "ck", [1.0])  # this machine has none
    real = reasoner_common.deepspeed_file
    monkeypatch.setattr(
        reasoner_common, "deepspeed_file", lambda key, value, gpu: real(key, value, True)
    )
    egrl_mod.grpo_args(cfg, tmp_path / "ck", [1.0])
    assert seen["deepspeed"] == str(ds)
    assert (seen["per_device_train_batch_size"], seen["gradient_accumulation_steps"]) == (8, 6)
    assert seen["steps_per_generation"] == 6 and seen["num_generations"] == 8


def test_deepspeed_files_ship_and_zero3_is_refused_for_the_reasoner(tmp_path):
    z2 = REPO / "workflow/deepspeed/zero2.json"
    assert reasoner_common.deepspeed_file("sft.deepspeed", str(z2), True) == str(z2)
    z3 = tmp_path / "z3.json"
    z3.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(ConfigError, match=r"sft\.deepspeed: .* is ZeRO-3"):
        reasoner_common.deepspeed_file("sft.deepspeed", str(z3), True)
    with pytest.raises(ConfigError, match=r"egrl\.deepspeed: nowhere\.json not found"):
        reasoner_common.deepspeed_file("egrl.deepspeed", "nowhere.json", True)
    acc = yaml.safe_load((REPO / "workflow/accelerate/zero2.yaml").read_text())
    assert (REPO / acc["deepspeed_config"]["deepspeed_config_file"]) == z2


# --------------------------------------------------------------------------- false negatives
def test_same_label_pairs_are_neither_positives_nor_negatives():
    # rows: query rollouts of pairs a, b (same label: one class) and c; columns: targets
    sim = torch.tensor([[0.9, 0.95, 0.1], [0.9, 0.8, 0.2], [0.1, 0.1, 0.7]])
    groups, labels = ["a", "b", "c"], ["L", "L", "M"]
    plain = outcome_terms(sim, groups, groups, acc="all_in_topk")
    masked = outcome_terms(
        sim, groups, groups, acc="all_in_topk", row_labels=labels, col_labels=labels
    )
    # unmasked, pair b's target (the same class) outranks a's own: Acc 0, a false negative
    assert plain.acc[0] == 0 and masked.acc[0] == 1
    # masked, a's only negative is c's target
    assert masked.margin[0] == pytest.approx(0.9 - 0.1)
    assert masked.reward[2] == plain.reward[2]  # c has no twin: unchanged
    # the Discriminator's hardest negatives skip the twin as well
    skip = [False, True, False]
    assert hardest_negatives(sim[0], groups, "a", 1) == [1]
    assert hardest_negatives(sim[0], groups, "a", 1, skip) == [2]


def test_pair_labels_join_pairs_sharing_a_query_or_a_positive(tmp_path):
    def row(pid, ds, q, p):
        return pair_row(pid, ds, "image", Item("text", text=q), Item("text", text=p))

    df = pairs_frame(
        [
            row("1", "cls", "img one", "cat"),
            row("2", "cls", "img two", "cat"),  # same class as 1
            row("3", "cls", "img three", "dog"),
            row("4", "i2t", "img x", "caption a"),
            row("5", "i2t", "img x", "caption b"),  # same query as 4
            row("6", "other", "img one", "cat"),  # another dataset: no join
        ]
    )
    lab = egrl_mod.pair_labels(df)
    assert lab[0] == lab[1] != lab[2] and lab[3] == lab[4] and lab[5] not in lab[:5]
    rows = egrl_mod.rl_rows(df)
    assert [r["label"] for r in rows[:4]] == [lab[0]] * 4  # both sides carry their pair's


class _Spy:
    def __init__(self):
        self.built = []

    def embed_built(self, built):
        self.built += built
        return torch.nn.functional.normalize(torch.randn(len(built), 4), dim=1)


def test_the_scorer_masks_twins_and_counts_them():
    spy = _Spy()
    s = EGRLScorer(spy, acc="fraction_half")
    t = render_tcot("a cat", "cat", "cat", {"text_keywords": ["cat"]})
    js = item_json(Item("text", text="x"))
    pid, side = ["a", "a", "b", "b"], ["qry", "pos", "qry", "pos"]
    s.score([t] * 4, pid, side, [js] * 4, label=["L", "L", "L", "L"])
    assert s.totals["masked"] == 2  # a's query vs b's target and b's query vs a's target


# --------------------------------------------------------------------------- the Embedder's input
def test_the_outcome_reward_embeds_what_the_embedder_was_trained_on(tmp_path):
    from ume.train.reward_models import embedder_input

    rec = {
        "role": "embedder",
        "path": str(tmp_path),
        "input": {
            "tcot_input": "answer_only",
            "max_length": 777,
            "frame_base": 1,
            "budgets": {
                "image_min_tokens": 8,
                "image_max_tokens": 24,
                "video_min_tokens": 6,
                "video_max_tokens": 12,
            },
        },
    }
    (tmp_path / "backbone.json").write_text(json.dumps(rec))
    got = embedder_input(tmp_path / "backbone.json")
    assert (got.mode, got.max_length, got.budget) == ("answer_only", 777, PixelBudget(8, 24, 6, 12))
    assert embedder_input(tmp_path) == got  # the stage folder
    assert embedder_input(None).mode == "full"
    spy = _Spy()
    scorer = egrl_mod.make_scorer(EGRLConfig(), spy, None, mode=got.mode)
    t = render_tcot("long reasoning here", "rethought", "the answer", {"text_keywords": ["x"]})
    js = item_json(Item("text", text="q"))
    scorer.score([t, t], ["p", "p"], ["qry", "pos"], [js, js])
    text = " ".join(p.get("text", "") for b in spy.built for p in b.messages[0]["content"])
    assert "the answer" in text and "long reasoning" not in text  # answer_only, not full


# --------------------------------------------------------------------------- RL data
def _filtered(tmp_path, n_kept=20, n_dropped=10):
    """Two datasets of 30 pairs each: ids 0..19 kept by the relevance filter, 20..29 dropped."""
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (64, 64), (200, 0, 0)).save(img)
    rows = [
        pair_row(f"{d}-{i}", d, "image", Item("text", text=f"q{i}"), Item("image", image=str(img)))
        for d in ("ds_a", "ds_b")
        for i in range(n_kept + n_dropped)
    ]
    df = pairs_frame(rows)
    df = df.assign(
        qry_tcot="<answer> a </answer>",
        pos_tcot="<answer> b </answer>",
        relevant=[int(str(p).split("-")[1]) < n_kept for p in df["pair_id"]],
    )
    p = tmp_path / "filtered.parquet"
    df.to_parquet(p)
    return p


@pytest.mark.parametrize(
    "split, want",
    [
        ({"rl_rule": "equidistant", "rl_counts": {"ds_a": 4, "ds_b": 2}}, {"ds_a": 4, "ds_b": 2}),
        ({"rl_rule": "hard_examples", "hard_fraction": 0.2}, {"ds_a": 2, "ds_b": 2}),
        ({"rl_rule": "ratio", "rl_fraction": 0.2}, {"ds_a": 4, "ds_b": 4}),
    ],
)
def test_the_three_rl_rules(tmp_path, split, want):
    from ume.annotate.stage import split_pairs

    p = _filtered(tmp_path)
    cfg = config_from_dict(
        {"split": {"rl_per_dataset": 8, "exclude_from_contrastive": [], **split}}
    )
    con, rl = split_pairs(cfg, p, tmp_path / "c.parquet", tmp_path / "r.parquet")
    assert rl.groupby("dataset").size().to_dict() == want
    idx = {d: sorted(int(i.split("-")[1]) for i in g["pair_id"]) for d, g in rl.groupby("dataset")}
    if split["rl_rule"] == "hard_examples":  # from the dropped pairs only (ids 20..29)
        assert all(i >= 20 for v in idx.values() for i in v)
    else:  # from the kept pairs only
        assert all(i < 20 for v in idx.values() for i in v)
    if split["rl_rule"] == "equidistant":
        assert idx["ds_a"] == [2, 7, 12, 17] and idx["ds_b"] == [5, 15]
    assert not set(con["pair_id"]) & set(rl["pair_id"])  # disjoint
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["rl_rule"] == split["rl_rule"]


def test_rl_counts_name_unknown_datasets_clearly(tmp_path):
    from ume.annotate.stage import split_pairs

    p = _filtered(tmp_path)
    cfg = config_from_dict(
        {"split": {"rl_counts": {"VOC2007": 10}, "exclude_from_contrastive": []}}
    )
    with pytest.raises(ConfigError, match=r"split\.rl_counts: unknown dataset\(s\) \['VOC2007'\]"):
        split_pairs(cfg, p, tmp_path / "c.parquet", tmp_path / "r.parquet")


# --------------------------------------------------------------------------- pins, environments
def _pinned(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*-?\s*{name}==([0-9][^\s#]*)", text, re.M)
    return m.group(1) if m else None


def test_private_api_patches_match_the_pinned_and_installed_versions():
    import accelerate
    import trl

    from ume.train.contrastive import ACCELERATE_VERSION

    gpu = (REPO / "envs/gpu.yaml").read_text()
    cpu = (REPO / "envs/requirements-cpu.txt").read_text()
    for name, patched, installed in (
        ("trl", egrl_mod.TRL_VERSION, trl.__version__),
        ("accelerate", ACCELERATE_VERSION, accelerate.__version__),
    ):
        assert _pinned(gpu, name) == patched, f"envs/gpu.yaml must pin {name}=={patched}"
        assert _pinned(cpu, name) == patched, f"requirements-cpu.txt must pin {name}=={patched}"
        assert installed == patched, (
            f"{name} {installed} is installed but the patch was written for {patched}: port it"
        )


def test_another_trl_is_refused_before_training(monkeypatch):
    import trl

    monkeypatch.setattr(trl, "__version__", "1.17.0")
    with pytest.raises(ConfigError, match=r"trl==1\.16\.0"):
        egrl_mod.check_trl_version()


def test_launched_gpu_rules_declare_the_gpu_environment():
    paper = load_config(REPO / "config/config.yaml", REPO / "config/paper.yaml")
    tiny = load_config(REPO / "config/config.yaml")
    assert plan.conda_env(paper, "gpu") == "envs/gpu.yaml"
    assert plan.conda_env(tiny, "gpu") == plan.conda_env(paper, "cpu") == "envs/cpu.yaml"
    gpu_rules = {"annotate_tcot", "relevance_filter", "train_embedder", "sft_reasoner", "egrl"}
    gpu_rules.add("eval_task")
    found = set()
    for f in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"^rule ", f.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            env = re.search(r"conda:\s*\n\s*(\w+)", block)
            if env is None:
                continue
            if name in gpu_rules:
                assert env.group(1) == "GPU_ENV", name
                found.add(name)
            else:
                assert env.group(1) == "CPU_ENV", name
    assert found == gpu_rules
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert "GPU_ENV = f\"../../{plan.conda_env(CFG, 'gpu')}\"" in common


# --------------------------------------------------------------------------- served models
class _Models(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append(("GET", self.path))
        body = json.dumps({"data": self.server.models}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.server.seen.append(("POST", self.path))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def models_server():
    srv = HTTPServer(("127.0.0.1", 0), _Models)
    srv.seen, srv.models = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def test_a_served_name_that_does_not_match_the_config_stops_before_any_request(
    models_server, tmp_path
):
    from ume.models.backbone import check_served_model
    from ume.train.reward_models import make_discriminator, make_embedder

    url = f"http://127.0.0.1:{models_server.server_address[1]}/v1"
    weights = tmp_path / "Qwen3-VL-8B-Instruct"
    weights.mkdir()
    models_server.models = [{"id": "Embed-RL-Reasoner-4B", "root": "/models/Embed-RL-4B"}]
    cfg = ServerConfig(url=url, model="ume-paper-2b-reasoner", max_retries=0, timeout_s=5)
    with pytest.raises(ConfigError) as e:
        check_served_model(cfg, "eval.server", what="Reasoner")
    assert "eval.server.model = 'ume-paper-2b-reasoner' is not served" in str(e.value)
    assert "Embed-RL-Reasoner-4B" in str(e.value)
    # the right name, other weights than the configured Discriminator's
    models_server.models = [{"id": "d", "root": "/elsewhere/Qwen2-VL-2B"}]
    g = EGRLConfig(
        discriminator_backend="server",
        discriminator_server={"url": url, "model": "d", "max_retries": 0},
    )
    with pytest.raises(ConfigError, match=r"serves it from /elsewhere/Qwen2-VL-2B"):
        make_discriminator(g, None, dtype="float32", attn="sdpa", expected=weights)
    models_server.models = [{"id": "d", "root": str(weights)}]
    assert make_discriminator(g, None, dtype="float32", attn="sdpa", expected=weights)
    g2 = EGRLConfig(
        embedder_backend="server", embedder_server={"url": url, "model": "e", "max_retries": 0}
    )
    with pytest.raises(ConfigError, match=r"egrl\.embedder_server\.model = 'e' is not served"):
        make_embedder(g2, None, dtype="float32", attn="sdpa")
    assert all(method == "GET" for method, _ in models_server.seen)  # no request went out
    dead = ServerConfig(url="http://127.0.0.1:9/v1", model="m", timeout_s=2)
    with pytest.raises(ConfigError, match=r"annotate\.server\.url = .*cannot list"):
        check_served_model(dead, "annotate.server")
