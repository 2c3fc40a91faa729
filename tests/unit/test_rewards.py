"""EG-RL rewards against hand-computed tables, with scripted Embedders and Discriminators.

The similarity matrix used throughout (query rollouts a1 a2 b1 b2 of pairs a, b against
target rollouts A1 A2 B1 B2, G = 2, tau = 0.5)::

          A1   A2   B1   B2
    a1   0.9  0.5  0.7  0.1
    a2   0.8  0.6  0.2  0.4
    b1   0.3  0.1  0.6  0.5
    b2   0.7  0.2  0.4  0.3

Row a1 by hand: positives {0.9, 0.5}, mean 0.7; negatives {0.7, 0.1} with softmax(s/0.5)
weights (e^1.4, e^0.2) / sum = (0.768525, 0.231475), E = 0.561115; margin = 0.138885.
Top-2 of the row = {0.9, 0.7}: one of two positives -> paper Acc 0, release Acc 0.5*1/2.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import torch
from PIL import Image

from ume.clients import ServerClient
from ume.config import EGRL_PRESETS, EGRLConfig, ServerConfig, load_config
from ume.errors import ConfigError
from ume.items import Item
from ume.tcot.format import render_tcot
from ume.train.egrl import PairBatchSampler
from ume.train.reward_models import Discriminator, LocalEmbedder, ServerEmbedder
from ume.train.rewards import (
    REWARDS,
    EGRLScorer,
    FormatReward,
    OutcomeReward,
    ProcessReward,
    get_reward,
    hardest_negatives,
    item_json,
    outcome_terms,
    reward_functions,
)

pytestmark = pytest.mark.unit

S = torch.tensor(
    [[0.9, 0.5, 0.7, 0.1], [0.8, 0.6, 0.2, 0.4], [0.3, 0.1, 0.6, 0.5], [0.7, 0.2, 0.4, 0.3]]
)
GROUPS = ["a", "a", "b", "b"]
# Hand-computed (see the module docstring): margin with softmax-weighted negatives, the
# plain-mean margin, and how many of the two positives are in the row's top 2.
ROWS = {  # query rollouts a1 a2 b1 b2 (rows of S)
    "margin": [0.138885, 0.380262, 0.330262, -0.215529],
    "margin_plain": [0.3, 0.4, 0.35, -0.1],
    "in_top": [1, 2, 2, 1],
}
COLS = {  # target rollouts A1 A2 B1 B2 (rows of S transposed), symmetric reward
    "margin": [0.27401, 0.395017, -0.065529, 0.106303],
    "margin_plain": [0.35, 0.4, 0.05, 0.15],
    "in_top": [2, 2, 1, 1],
}


def approx(xs):
    return pytest.approx(xs, abs=1e-5)


@pytest.mark.parametrize("table,sim", [(ROWS, S), (COLS, S.T)])
def test_outcome_paper_and_release_on_one_matrix(table, sim):
    paper = outcome_terms(sim, GROUPS, GROUPS, acc="all_in_topk", tau=0.5)
    release = outcome_terms(sim, GROUPS, GROUPS, acc="fraction_half", tau=0.5)
    m = table["margin"]
    assert paper.margin.tolist() == approx(m)
    assert release.margin.tolist() == approx(m)
    # paper: Acc 1 only when both positives are in the top 2
    acc_paper = [1.0 if k == 2 else 0.0 for k in table["in_top"]]
    assert paper.acc.tolist() == acc_paper
    assert paper.reward.tolist() == approx([a * x for a, x in zip(acc_paper, m, strict=True)])
    # release: fraction of positives in the top 2, times 0.5
    acc_rel = [0.5 * k / 2 for k in table["in_top"]]
    assert release.acc.tolist() == acc_rel
    assert release.reward.tolist() == approx([a * x for a, x in zip(acc_rel, m, strict=True)])


def test_outcome_row_a1_by_hand_and_unweighted_negatives():
    t = outcome_terms(S[:1], ["a"], GROUPS, acc="fraction_half")
    assert t.reward.item() == pytest.approx(0.25 * 0.138885, abs=1e-6)
    plain = outcome_terms(S, GROUPS, GROUPS, acc="all_in_topk", weighted=False)
    assert plain.margin.tolist() == approx(ROWS["margin_plain"])
    assert plain.reward.tolist() == approx([0.0, 0.4, 0.35, 0.0])


def test_outcome_edge_cases():
    # no negatives: the negative term is 0; no positive column: reward 0, flagged
    t = outcome_terms(torch.tensor([[0.4, 0.2]]), ["a"], ["a", "a"])
    assert t.margin.item() == pytest.approx(0.3) and t.acc.item() == 1.0
    t = outcome_terms(torch.tensor([[0.4, 0.2]]), ["z"], ["a", "a"])
    assert t.reward.item() == 0.0 and not t.has_positive.item()
    # ties count in favour: a constant Embedder gives Acc 1 and margin 0
    t = outcome_terms(torch.ones(2, 4), ["a", "b"], GROUPS)
    assert t.acc.tolist() == [1.0, 1.0] and t.reward.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="acc must be"):
        outcome_terms(S, GROUPS, GROUPS, acc="top1")


def test_hardest_negatives_one_per_other_pair_most_similar_first():
    row = torch.tensor([0.9, 0.2, 0.8, 0.3, 0.1, 0.5, 0.6])
    groups = ["a", "b", "b", "c", "c", "d", "d"]
    assert hardest_negatives(row, groups, "a", 4) == [2, 6, 3]
    assert hardest_negatives(row, groups, "a", 2) == [2, 6]
    assert hardest_negatives(row, groups, "b", 1) == [0]
    assert hardest_negatives(row, groups, "a", 0) == []


# ------------------------------------------------------------------ scripted backends
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def _text_of(built) -> str:
    return " ".join(p.get("text", "") for m in built.messages for p in m["content"])


class VecEmbedder:
    """Reads the embedding from the rollout's <answer> (numbers), through the real input
    builder; unreadable rollouts embed as the first basis vector."""

    def __init__(self, dim: int = 4) -> None:
        self.dim = dim
        self.calls = 0

    def embed_built(self, built):
        self.calls += 1
        out = []
        for b in built:
            m = _ANSWER.search(_text_of(b))
            nums = re.findall(r"-?\d+\.?\d*", m.group(1)) if m else []
            v = (
                [float(x) for x in nums[: self.dim]]
                if len(nums) >= self.dim
                else [1.0] + [0.0] * (self.dim - 1)
            )
            out.append(v)
        return torch.tensor(out)


def tcot(answer: str, evidence: dict | None = None) -> str:
    return render_tcot("looked", "matters", answer, evidence)


def batch_from_matrix():
    """Rollouts whose scripted embeddings reproduce S: query i -> row i, target j -> e_j."""
    qry = [tcot(" ".join(str(x) for x in row.tolist())) for row in S]
    tgt = [tcot(" ".join("1" if i == j else "0" for i in range(4))) for j in range(4)]
    # TRL's layout: per pair, G query rollouts then G target rollouts
    completions = qry[:2] + tgt[:2] + qry[2:] + tgt[2:]
    pair_id = ["a"] * 4 + ["b"] * 4
    side = ["qry", "qry", "pos", "pos"] * 2
    item = [item_json(Item("text", text="x"))] * 8
    return completions, {"pair_id": pair_id, "side": side, "item": item}


@pytest.mark.parametrize("acc", ["all_in_topk", "fraction_half"])
def test_outcome_reward_scores_queries_against_targets_and_back(acc):
    completions, cols = batch_from_matrix()
    logged = {}
    r = OutcomeReward(EGRLScorer(VecEmbedder(), acc=acc))
    out = r([[]] * 8, completions, log_metric=lambda k, v: logged.setdefault(k, v), **cols)
    order_q = [0, 1, 4, 5]  # a1 a2 b1 b2 in the batch
    order_t = [2, 3, 6, 7]  # A1 A2 B1 B2
    frac = acc == "fraction_half"
    for idx, table in ((order_q, ROWS), (order_t, COLS)):
        want = [
            (0.5 * k / 2 if frac else float(k == 2)) * m
            for k, m in zip(table["in_top"], table["margin"], strict=True)
        ]
        assert [out[i] for i in idx] == approx(want)
    assert set(logged) >= {"outcome/acc", "outcome/margin", "outcome/embed_failures"}


def test_scorer_embeds_each_batch_once_for_both_rewards():
    completions, cols = batch_from_matrix()
    emb = VecEmbedder()
    scorer = EGRLScorer(emb, ScriptedDiscriminator("1"), shuffle_candidates=False)
    OutcomeReward(scorer)([[]] * 8, completions, **cols)
    ProcessReward(scorer)([[]] * 8, completions, **cols)
    assert emb.calls == 1  # 8 rollouts, one embed_built batch, shared


class ScriptedDiscriminator:
    """Answers with a fixed reply, or by a rule of the chat; records what it was shown."""

    def __init__(self, reply=None, rule=None) -> None:
        self.reply = reply
        self.rule = rule
        self.chats: list = []

    def answer(self, chats):
        self.chats += chats
        return [self.rule(c) if self.rule else self.reply for c in chats]


def _user(chat) -> str:
    return chat[-1]["content"][0]["text"]


def pick_same_pair(chat) -> str:
    """Names the candidate that carries the query's pair tag (``pair-x``): always right."""
    text = _user(chat)
    tag = re.search(r"Query T-CoT:.*?(pair-\w)", text, re.S).group(1)
    cands = re.split(r"\nCandidate \d+:\n", text)[1:]
    return str(next(i for i, c in enumerate(cands, 1) if tag in c))


def tagged_batch(n_pairs=3, g=2):
    """n pairs, G rollouts per side; answers carry an embedding and the pair tag."""
    completions, pair_id, side = [], [], []
    for p in range(n_pairs):
        for s in ("qry", "pos"):
            for k in range(g):
                vec = [0.0] * 4
                vec[p] = 1.0
                vec[3] = 0.1 * k
                completions.append(tcot(" ".join(map(str, vec)) + f" pair-{'abc'[p]}"))
                pair_id.append("abc"[p])
                side.append(s)
    item = [item_json(Item("text", text="x"))] * len(completions)
    return completions, {"pair_id": pair_id, "side": side, "item": item}


def test_process_paper_value_one_release_margin():
    completions, cols = tagged_batch()
    n = len(completions)
    paper = EGRLScorer(VecEmbedder(), ScriptedDiscriminator(rule=pick_same_pair))
    out = ProcessReward(paper)([[]] * n, completions, **cols)
    assert out == [1.0] * n
    rel = EGRLScorer(
        VecEmbedder(),
        ScriptedDiscriminator(rule=pick_same_pair),
        acc="fraction_half",
        process_value="margin",
        shuffle_candidates=False,
    )
    out = ProcessReward(rel)([[]] * n, completions, **cols)
    margins = rel.score(completions, cols["pair_id"], cols["side"], cols["item"]).margin
    assert out == approx(margins)
    assert all(m > 0 for m in margins)


def test_process_candidates_positives_then_hardest_negatives_unless_shuffled():
    completions, cols = tagged_batch(n_pairs=3, g=2)
    n = len(completions)
    dis = ScriptedDiscriminator("1")
    scorer = EGRLScorer(VecEmbedder(), dis, shuffle_candidates=False, hard_negatives=1)
    out = ProcessReward(scorer)([[]] * n, completions, **cols)
    assert out == [1.0] * n  # candidate 1 is always an own positive when not shuffled
    assert len(dis.chats) == n
    for chat in dis.chats:
        text = _user(chat)
        tag = re.search(r"Query T-CoT:.*?(pair-\w)", text, re.S).group(1)
        cands = re.split(r"\nCandidate \d+:\n", text)[1:]
        assert len(cands) == 2 + 1  # G positives + 1 hardest negative
        assert [tag in c for c in cands] == [True, True, False]
    # shuffled (paper): the same pick of "1" now misses sometimes, deterministically
    shuffled = lambda: EGRLScorer(VecEmbedder(), ScriptedDiscriminator("1"), hard_negatives=4)  # noqa: E731
    a = ProcessReward(shuffled())([[]] * n, completions, **cols)
    b = ProcessReward(shuffled())([[]] * n, completions, **cols)
    assert a == b and 0 < sum(a) < n


def test_process_invalid_answer_is_a_logged_miss(caplog):
    completions, cols = tagged_batch()
    n = len(completions)
    logged = {}
    scorer = EGRLScorer(VecEmbedder(), ScriptedDiscriminator("I cannot tell"))
    with caplog.at_level(logging.WARNING, logger="ume.train.rewards"):
        out = ProcessReward(scorer)(
            [[]] * n, completions, log_metric=lambda k, v: logged.__setitem__(k, v), **cols
        )
    assert out == [0.0] * n
    assert logged["process/invalid_rate"] == 1.0 and logged["process/hit_rate"] == 0.0
    assert scorer.totals["process_invalid"] == n
    assert "name no valid candidate" in caplog.text and "I cannot tell" in caplog.text
    # a number outside 1..n is no choice either
    scorer = EGRLScorer(VecEmbedder(), ScriptedDiscriminator("Candidate 99"))
    assert ProcessReward(scorer)([[]] * n, completions, **cols) == [0.0] * n


def test_process_single_pair_batch_has_no_negatives_and_is_skipped():
    completions, cols = tagged_batch(n_pairs=1)
    scorer = EGRLScorer(VecEmbedder(), ScriptedDiscriminator("1"))
    assert ProcessReward(scorer)([[]] * 4, completions, **cols) == [0.0] * 4
    assert scorer.totals["process_skipped"] == 4


# ------------------------------------------------------------------ format
GOOD_IMAGE = tcot("a red car", {"bbox_2d": [10, 10, 500, 500]})


@pytest.mark.parametrize(
    ("text", "modality", "tags", "paper"),
    [
        (GOOD_IMAGE, "image", 1.0, 1.0),
        (GOOD_IMAGE, "video", 1.0, 0.0),  # a box is not the video's evidence key
        (tcot("a car"), "image", 1.0, 0.0),  # no evidence
        (tcot("t", {"text_keywords": ["car"]}), "text", 1.0, 1.0),
        ("<answer> a </answer><rethink> b </rethink><thinking> c </thinking>", "text", 0.0, 0.0),
        ("", "image", 0.0, 0.0),
        ("{{{ <thinking <answer", "image", 0.0, 0.0),
        (GOOD_IMAGE + " " + "x" * 70_000, "image", 0.0, 0.0),  # absurdly long
    ],
)
def test_format_reward_table(text, modality, tags, paper):
    item = [item_json(Item(modality, image="/a.png" if modality == "image" else ""))]
    if modality == "video":
        item = [item_json(Item("video", frames=("/f.png",)))]
    msgs = [[{"role": "assistant", "content": text}]]
    assert FormatReward("tags", max_chars=65536)([[]], msgs, item=item) == [tags]
    assert FormatReward("tags+evidence", max_chars=65536)([[]], msgs, item=item) == [paper]


def test_format_reward_reads_every_completion_form():
    r = FormatReward("tags")
    good = tcot("a")
    forms = [
        good,
        [{"role": "assistant", "content": good}],
        [{"role": "assistant", "content": [{"type": "text", "text": good}]}],
        None,
        42,
    ]
    assert r([[]] * 5, forms) == [1.0, 1.0, 1.0, 0.0, 0.0]


# ------------------------------------------------------------------ evidence
def _two_objects(path):
    im = Image.new("RGB", (100, 100), (255, 255, 255))
    im.paste((255, 0, 0), (10, 30, 40, 70))  # red square, left
    im.paste((0, 0, 255), (60, 30, 90, 70))  # blue square, right
    im.save(path)
    return str(path)


COLOURS = {"red": (1.0, 0.0, 0.0), "blue": (0.0, 0.0, 1.0), "green": (0.0, 1.0, 0.0)}


class CropColourEmbedder:
    """An Embedder that has 'learned crops': an input with evidence crops is embedded as the
    crops' mean colour; one with only its original image as that image's mean colour; a
    text-only input by the colour word in its text. Everything goes through the real input
    builder and the real crop materialisation."""

    def embed_built(self, built):
        out = []
        for b in built:
            if b.images:
                ims = b.images[1:] or b.images[:1]  # the first image is the original
                px = [
                    torch.from_numpy(np.asarray(im.resize((8, 8)), dtype=np.float32))
                    .reshape(-1, 3)
                    .mean(0)
                    for im in ims
                ]
                v = torch.stack(px).mean(0) / 255
            else:
                words = [w for w in COLOURS if w in _text_of(b)]
                v = torch.tensor(COLOURS[words[-1]] if words else (1.0, 1.0, 1.0))
            out.append(v / v.norm())
        return torch.stack(out)


def test_outcome_reward_sees_the_evidence_box_on_the_right_object(tmp_path):
    img = _two_objects(tmp_path / "two.png")
    on_red = {"bbox_2d": [100, 300, 400, 700]}
    on_blue = {"bbox_2d": [600, 300, 900, 700]}
    qry_item = item_json(Item("image", image=img, inst="find the red object"))
    txt = {c: item_json(Item("text", text=f"the {c} one")) for c in ("red", "blue")}

    def batch(box_of_pair_a):
        # pair a: query image, positive text "red"; pair b: same image, positive "blue"
        comps = [tcot("the object", box_of_pair_a)] * 2 + [tcot("red")] * 2
        comps += [tcot("the object", on_blue)] * 2 + [tcot("blue")] * 2
        items = [qry_item] * 2 + [txt["red"]] * 2 + [qry_item] * 2 + [txt["blue"]] * 2
        cols = {
            "pair_id": ["a"] * 4 + ["b"] * 4,
            "side": ["qry"] * 2 + ["pos"] * 2 + ["qry"] * 2 + ["pos"] * 2,
            "item": items,
        }
        return comps, cols

    for acc in ("all_in_topk", "fraction_half"):
        r = OutcomeReward(EGRLScorer(CropColourEmbedder(), acc=acc))
        right = r([[]] * 8, *batch(on_red)[:1], **batch(on_red)[1])
        wrong = r([[]] * 8, *batch(on_blue)[:1], **batch(on_blue)[1])
        assert right[0] > 0 and right[0] > wrong[0], (acc, right, wrong)
        assert right[2] > wrong[2]  # the positive's reward (symmetric) follows too


# ------------------------------------------------------------------ registry, config, sampler
def test_registry_names_and_pickling(tmp_path):
    assert set(REWARDS) == {"format", "outcome", "process"}
    assert get_reward("format", variant="tags").__name__ == "format"
    with pytest.raises(KeyError, match="registered"):
        get_reward("accuracy")
    emb = LocalEmbedder(tmp_path / "nowhere")
    scorer = EGRLScorer(emb, None)
    for r in (OutcomeReward(scorer), ProcessReward(scorer), FormatReward()):
        back = pickle.loads(pickle.dumps(r))
        assert back.__name__ == r.__name__
    assert pickle.loads(pickle.dumps(emb))._model is None


def test_reward_functions_follow_the_ablation_switches():
    names = lambda cfg: [f.__name__ for f in reward_functions(cfg, None)[0]]  # noqa: E731
    assert names(EGRLConfig()) == ["format", "process", "outcome"]
    assert reward_functions(EGRLConfig(), None)[1] == [0.05, 0.8, 0.2]
    assert names(EGRLConfig(use_process_reward=False)) == ["format", "outcome"]
    assert names(EGRLConfig(use_outcome_reward=False)) == ["format", "process"]


def test_release_preset_file_sets_every_release_value(repo):
    cfg = load_config(repo / "config/config.yaml", repo / "config/ablations/release.yaml")
    for key, want in EGRL_PRESETS["release"].items():
        assert getattr(cfg.egrl, key) == want, key
    assert cfg.egrl.num_generations == 4 and cfg.sft.enabled is False
    paper = load_config(repo / "config/config.yaml")
    for key, want in EGRL_PRESETS["paper"].items():
        assert getattr(paper.egrl, key) == want, key
    with pytest.raises(ConfigError, match=r"egrl.outcome_acc: .*contradicts egrl.preset 'paper'"):
        load_config(
            repo / "config/config.yaml", overrides={"egrl": {"outcome_acc": "fraction_half"}}
        )
    mixed = load_config(
        repo / "config/config.yaml",
        overrides={"egrl": {"preset": "custom", "outcome_acc": "fraction_half"}},
    )
    assert mixed.egrl.outcome_acc == "fraction_half"


def test_pair_sampler_one_dataset_per_step_whole_pairs_repeated():
    index = {
        "d1": [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)],
        "d2": [(10, 11), (12, 13)],
        "d3": [(14, 15)],
    }
    s = PairBatchSampler(index, num_generations=2, pairs_per_block=2, repeat=2, seed=1)
    assert "d3" not in s.pairs  # too small for a step, left out
    idx = list(s)
    assert len(idx) == len(s) == 3 * 2 * 2 * 2 * 2  # steps x pairs x sides x G x repeat
    step = 2 * 2 * 2
    chunks = [idx[i : i + step] for i in range(0, len(idx), step)]
    ds_of = {i: d for d, pairs in index.items() for p in pairs for i in p}
    for k in range(0, len(chunks), 2):
        assert chunks[k] == chunks[k + 1]  # each generation batch repeated
        c = chunks[k]
        assert len({ds_of[i] for i in c}) == 1  # one dataset per step
        for j in range(0, step, 4):  # pair after pair: query G times, then positive G times
            q, p = c[j], c[j + 2]
            assert c[j : j + 4] == [q, q, p, p] and (q, p) in index[ds_of[q]]
    s.set_epoch(1)
    assert list(s) != idx  # reshuffled per epoch, same length
    two = PairBatchSampler(index, num_generations=2, pairs_per_block=1, num_processes=2)
    assert len(list(two)) == len(two)
    with pytest.raises(ConfigError, match="pairs_per_device"):
        PairBatchSampler(index, num_generations=2, pairs_per_block=8)


# ------------------------------------------------------------------ servers
class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append((self.path, body))
        if self.path.endswith("/embeddings"):
            n = len(json.dumps(body["messages"]))
            reply = {"data": [{"embedding": [float(n % 7), 1.0, 0.0]}]}
        else:
            reply = {"choices": [{"message": {"content": "Candidate 2"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    srv.bodies = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def test_server_backends_through_the_same_interface(server, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    cfg = ServerConfig(url=url, model="m", max_retries=0, timeout_s=5)
    img = _two_objects(tmp_path / "a.png")
    from ume.inputs import build_input

    built = [
        build_input(Item("image", image=img), GOOD_IMAGE),
        build_input(Item("text", text="t"), None),
    ]
    z = ServerEmbedder(cfg).embed_built(built)
    assert z.shape == (2, 3) and torch.allclose(z.norm(dim=1), torch.ones(2))
    assert {p for p, _ in server.bodies} == {"/v1/embeddings"}
    assert all(b["model"] == "m" for _, b in server.bodies)
    images = sorted(
        [p["type"] for p in b["messages"][0]["content"]].count("image_url")
        for _, b in server.bodies
    )
    assert images == [0, 2]  # text item: none; image item: the original and the evidence crop
    discriminator = Discriminator(ServerClient(cfg, "egrl.discriminator_server"))
    replies = discriminator.answer([[{"role": "user", "content": "which?"}]])
    assert replies == ["Candidate 2"]
    with pytest.raises(ConfigError, match="url"):
        ServerEmbedder(ServerConfig())


def test_frac_zero_std_is_per_prompt_group():
    from ume.train.rewards import frac_zero_std

    assert frac_zero_std([1, 1, 0, 1, 2, 2], list("aaaabb"), ["q", "q", "p", "p", "q", "q"]) == (
        pytest.approx(2 / 3)
    )
    assert frac_zero_std([], [], []) == 0.0
