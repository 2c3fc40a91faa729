"""Annotator backends (oracle, OpenAI-compatible server), relevance filter and split."""

from __future__ import annotations

import json
import re
import threading
import typing
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest
from PIL import Image

from ume.annotate.backends import OracleAnnotator, server_annotator
from ume.annotate.stage import annotate_pairs, filter_pairs, split_pairs
from ume.clients import to_openai_messages
from ume.config import OracleConfig, ServerConfig, config_from_dict
from ume.errors import ConfigError, DataError, UmeError
from ume.items import Item, pair_row, pairs_frame
from ume.tcot.format import check_format, parse_tcot

pytestmark = pytest.mark.unit


def _img(tmp_path, name="a.png"):
    p = tmp_path / name
    Image.new("RGB", (64, 64), (200, 30, 30)).save(p)
    return str(p)


def _pairs(tmp_path, n_per=6, datasets=("ds_a", "ds_b", "ds_c")):
    img = _img(tmp_path)
    rows = []
    for d in datasets:
        for i in range(n_per):
            colour = ["red", "green", "blue"][i % 3]
            q = Item(
                "text",
                inst="Find the image:",
                text=f"a {colour} circle",
                gt={"keywords": [colour, "circle"], "description": f"a {colour} circle"},
            )
            p = Item(
                "image",
                image=img,
                gt={"boxes": [[100, 100, 500, 500]], "description": f"a {colour} circle"},
            )
            rows.append(pair_row(f"{d}:{i}", d, "image", q, p))
    return pairs_frame(rows)


def test_oracle_writes_well_formed_tcots_with_the_modality_evidence(tmp_path):
    ann = OracleAnnotator(OracleConfig(wrong_evidence_rate=0.0, missing_evidence_rate=0.0))
    frames = tuple(str(tmp_path / f"{i}.jpg") for i in range(8))
    items = [
        Item("text", text="a red circle", gt={"keywords": ["red", "circle"], "description": "x"}),
        Item("image", image="/x.png", gt={"boxes": [[10, 20, 300, 400]], "description": "y"}),
        Item("video", frames=frames, gt={"key_frames": [3, 4], "description": "z"}),
    ]
    out = ann.tcot(items, ["query", "candidate", "candidate"])
    for text, item in zip(out, items, strict=True):
        assert check_format(text, variant="tags+evidence", modality=item.modality), text
    assert parse_tcot(out[0]).evidence.keywords == ("red", "circle")
    assert parse_tcot(out[1]).evidence.boxes == ((10, 20, 300, 400),)
    # 1-based ground truth, 1-based text, 0-based internal indices
    assert parse_tcot(out[2], num_frames=8).evidence.key_frames == (2, 3)


def test_oracle_error_rates_are_honoured_and_deterministic():
    items = [
        Item("image", image=f"/{i}.png", gt={"boxes": [[100, 100, 300, 300]]}) for i in range(400)
    ]
    roles = ["candidate"] * len(items)
    ann = OracleAnnotator(OracleConfig(wrong_evidence_rate=0.25, missing_evidence_rate=0.1))
    a = ann.tcot(items, roles)
    assert a == OracleAnnotator(ann.cfg).tcot(items, roles)
    assert 0.18 < ann.counts["wrong_evidence"] / 400 < 0.32
    assert 0.05 < ann.counts["missing_evidence"] / 400 < 0.16
    moved = sum(parse_tcot(t).evidence.boxes not in ((), ((100, 100, 300, 300),)) for t in a)
    assert moved == ann.counts["wrong_evidence"]
    assert sum(not parse_tcot(t).evidence.boxes for t in a) == ann.counts["missing_evidence"]


def test_oracle_judge_flags_conflicting_answers():
    ann = OracleAnnotator(OracleConfig(wrong_evidence_rate=0.0, missing_evidence_rate=0.0))
    red = ann.tcot(
        [Item("text", text="a red circle", gt={"description": "a red circle"})], ["query"]
    )[0]
    red2 = ann.tcot(
        [Item("image", image="/r.png", gt={"description": "red circle top left"})], ["candidate"]
    )[0]
    blue = ann.tcot(
        [Item("image", image="/b.png", gt={"description": "blue square"})], ["candidate"]
    )[0]
    assert ann.judge([(red, red2), (red, blue), ("garbage", red)]) == [False, True, None]


class _ChatHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible /v1/chat/completions endpoint (what vLLM serves)."""

    seen: typing.ClassVar[list] = []
    fail_first = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        assert self.path == "/v1/chat/completions"
        text = " ".join(
            p.get("text", "")
            for m in body["messages"]
            if isinstance(m["content"], list)
            for p in m["content"]
        )
        if "Yes or No" in text or "yes or no" in text.lower():
            answer = "No."
        else:
            answer = (
                '<thinking> a red circle {"bbox_2d": [1, 2, 300, 400]} </thinking>'
                "<rethink> red </rethink><answer> a red circle </answer>"
            )
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *a):
        pass


@pytest.fixture
def chat_server():
    _ChatHandler.seen = []
    srv = HTTPServer(("127.0.0.1", 0), _ChatHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_server_backend_speaks_openai_chat_with_inline_images(tmp_path, chat_server):
    ann = server_annotator(ServerConfig(url=chat_server, model="m", concurrency=2, max_retries=2))
    _ChatHandler.fail_first = 1  # one 503: retried
    img = _img(tmp_path)
    out = ann.tcot([Item("image", image=img), Item("text", text="x")], ["candidate", "query"])
    assert all(parse_tcot(t).evidence.boxes == ((1, 2, 300, 400),) for t in out)
    assert ann.judge([(out[0], out[1])]) == [False]
    urls = [
        p["image_url"]["url"]
        for b in _ChatHandler.seen
        for m in b["messages"]
        if isinstance(m["content"], list)
        for p in m["content"]
        if p["type"] == "image_url"
    ]
    assert urls and urls[0].startswith("data:image/png;base64,")
    assert all(b["model"] == "m" for b in _ChatHandler.seen)


def test_server_backend_errors_are_clear():
    with pytest.raises(ConfigError, match=re.escape("annotate.server.url")):
        server_annotator(ServerConfig(url=None, model="m"))
    ann = server_annotator(
        ServerConfig(url="http://127.0.0.1:9/v1", model="m", max_retries=0, timeout_s=2)
    )
    with pytest.raises(UmeError, match=re.escape("check annotate.server.url")):
        ann.tcot([Item("text", text="x")], ["query"])


def test_to_openai_messages_keeps_text_and_order(tmp_path):
    img = _img(tmp_path)
    chat = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Frame 1:"}, {"type": "image", "image": img}],
        }
    ]
    msg = to_openai_messages(chat)[0]
    assert [p["type"] for p in msg["content"]] == ["text", "image_url"]


def test_annotate_filter_split_stages_write_counts(tmp_path):
    cfg = config_from_dict(
        {
            "annotate": {"oracle": {"wrong_evidence_rate": 0.0, "missing_evidence_rate": 0.0}},
            "split": {"rl_per_dataset": 2, "exclude_from_contrastive": ["ds_c"]},
        }
    )
    pairs = tmp_path / "data/pairs.parquet"
    pairs.parent.mkdir()
    df = _pairs(tmp_path)
    # one conflicting pair: its positive describes something else
    df.loc[0, "pos_gt"] = json.dumps({"boxes": [[1, 1, 500, 500]], "description": "blue square"})
    df.to_parquet(pairs)
    tcot = annotate_pairs(cfg, pairs, tmp_path / "annotate/tcot.parquet")
    assert tcot["qry_tcot"].str.contains("<answer>").all()
    filt = filter_pairs(cfg, tmp_path / "annotate/tcot.parquet", tmp_path / "filter/f.parquet")
    assert filt["relevant"].sum() == len(df) - 1
    man = json.loads((tmp_path / "filter/manifest.json").read_text())
    assert man["dropped"] == 1 and man["dropped_per_dataset"] == {"ds_a": 1}
    assert man["kept_per_dataset"] == {"ds_a": 5, "ds_b": 6, "ds_c": 6}
    con, rl = split_pairs(
        cfg,
        tmp_path / "filter/f.parquet",
        tmp_path / "split/c.parquet",
        tmp_path / "split/r.parquet",
    )
    assert len(rl) == 6 and set(rl["dataset"]) == {"ds_a", "ds_b", "ds_c"}
    assert "ds_c" not in set(con["dataset"])
    assert not set(con["pair_id"]) & set(rl["pair_id"])  # disjoint
    assert len(con) == 5 + 6 - 4
    cfg2 = config_from_dict(
        {"split": {"rule": "overlap", "rl_per_dataset": 2, "exclude_from_contrastive": []}}
    )
    con2, rl2 = split_pairs(
        cfg2, tmp_path / "filter/f.parquet", tmp_path / "s2/c.parquet", tmp_path / "s2/r.parquet"
    )
    assert set(rl2["pair_id"]) <= set(con2["pair_id"]) and len(con2) == 17
    man = json.loads((tmp_path / "split/manifest.json").read_text())
    assert man["rule"] == "disjoint" and man["rl"] == 6


def test_split_rejects_unknown_dataset_names(tmp_path):
    cfg = config_from_dict({"split": {"exclude_from_contrastive": ["VOC2007"]}})
    df = _pairs(tmp_path).assign(qry_tcot="", pos_tcot="", relevant=True)
    p = tmp_path / "f.parquet"
    df.to_parquet(p)
    with pytest.raises(
        ConfigError, match=r"split.exclude_from_contrastive: unknown dataset\(s\) \['VOC2007'\]"
    ):
        split_pairs(cfg, p, tmp_path / "c.parquet", tmp_path / "r.parquet")


def test_stage_inputs_missing_or_corrupt_are_named(tmp_path):
    cfg = config_from_dict({})
    with pytest.raises(DataError, match=re.escape("missing.parquet: not found")):
        annotate_pairs(cfg, tmp_path / "missing.parquet", tmp_path / "o.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=re.escape("bad.parquet: cannot read parquet")):
        annotate_pairs(cfg, bad, tmp_path / "o.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "wrong.parquet")
    with pytest.raises(DataError, match="not a pair table"):
        annotate_pairs(cfg, tmp_path / "wrong.parquet", tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


def test_oracle_conflicting_annotations_are_caught_by_the_oracle_judge():
    cfg = OracleConfig(wrong_evidence_rate=1.0, missing_evidence_rate=0.0, seed=3)
    ann = OracleAnnotator(cfg)
    items = [
        Item("text", text=f"q{i}", gt={"description": "a red circle at the top"}) for i in range(40)
    ]
    exact = OracleConfig(wrong_evidence_rate=0.0, missing_evidence_rate=0.0)
    clean = OracleAnnotator(exact).tcot(items, ["query"] * 40)
    noisy = ann.tcot(items, ["candidate"] * 40)
    verdicts = ann.judge(list(zip(clean, noisy, strict=True)))
    assert 10 < ann.counts["conflicting_answer"] < 30
    assert sum(v is True for v in verdicts) == ann.counts["conflicting_answer"]
