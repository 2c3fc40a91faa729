"""``ume serve`` end to end on localhost with the tiny models: the pipeline's own server
backends against it, and its answers against the local path.

Tolerance of embeddings: ``atol 1e-5`` on unit vectors (float32). The server runs the same
code (builder, processor, weights, pooled position) as the local path, but in batches of
another composition (concurrent requests, left padding, other matmul shapes): float32 sums
in another order differ by ~1e-7 per element, far below 1e-5; a wrong pooled token or a
wrong input moves a tiny model's unit vector by more than 0.1.
Chat answers are compared exactly (greedy decoding of the same prompt in a batch of one).
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.serve import ServerProcess
from tests.fixtures.tiny_run import SMALL_TINY
from ume.clients import ServerClient
from ume.config import ServerConfig, load_config
from ume.eval.encode import make_encoder
from ume.eval.reason import (
    CachedReasoner,
    TCoTCache,
    cache_namespace,
    hf_reasoner,
    resolve_model_folder,
    server_reasoner,
)
from ume.eval.stats import CacheStats
from ume.inputs import build_input
from ume.io import write_json
from ume.items import Item
from ume.models.chat import LocalChatModel
from ume.models.stage import build_base_models
from ume.tcot.format import render_tcot
from ume.train.reward_models import Discriminator, ServerEmbedder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NAMES = {"reasoner": "tiny-reasoner", "embedder": "tiny-embedder", "discriminator": "tiny-disc"}
ATOL = 1e-5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    cfg = load_config(
        REPO / "config/config.yaml",
        overrides={
            "results_dir": str(root / "results"),
            "eval": {"max_new_tokens": 24},
            "models": {"tiny": SMALL_TINY},  # the small random models: plumbing under test
        },
    )
    write_json(root / "config.json", cfg.to_dict())
    build_base_models(cfg, root / "models", ("reasoner", "embedder", "discriminator"))
    models = {r: root / "models" / r / "backbone.json" for r in NAMES}
    media = root / "media"
    media.mkdir()
    imgs = []
    for k in range(4):
        im = Image.new("RGB", (40 + 12 * k, 36), (50 * k, 200 - 40 * k, 30))
        im.paste((255, 255, 255), (4, 4, 20, 24))
        imgs.append(media / f"im{k}.png")
        im.save(imgs[-1])
    server = ServerProcess(
        root / "config.json",
        models,
        NAMES,
        cache_dir=root / "cache",
        log=root / "serve.log",
        extra=("--max-items", "8", "--max-body-mb", "1", "--allowed-local-media-path", str(root)),
    )
    yield {"root": root, "cfg": cfg, "models": models, "server": server, "images": imgs}
    server.stop()


def _cfg(world, role: str, **kw) -> ServerConfig:
    return ServerConfig(
        url=world["server"].url + "/v1", model=NAMES[role], max_retries=0, timeout_s=120, **kw
    )


def test_bad_requests_are_4xx_with_a_message_and_the_server_keeps_serving(world):
    s = world["server"]
    bad = world["root"] / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cases = [
        (b"{not json", 400, "not JSON"),
        ({"model": "nope", "input": "x"}, 404, "not served"),
        ({"model": NAMES["embedder"], "input": [{"image": f"file://{bad}"}]}, 400, "not decode"),
        # a file outside --allowed-local-media-path, directly or through '..'
        ({"model": NAMES["embedder"], "input": [{"image": "/etc/hostname"}]}, 403, "outside"),
        (
            {"model": NAMES["embedder"], "input": [{"image": f"{world['root']}/../x.png"}]},
            403,
            "outside the folders",
        ),
        ({"model": NAMES["embedder"], "input": [{"image": "aGVsbG8="}]}, 400, "not decode"),
        ({"model": NAMES["embedder"], "input": ["x"] * 9}, 400, "at most 8"),
        ({"model": NAMES["embedder"], "input": [{"txt": "typo"}]}, 400, "unknown field"),
        ({"model": NAMES["embedder"], "input": "x", "mode": "odd"}, 400, "mode"),
        ({"model": NAMES["reasoner"], "messages": "hi"}, 400, "list of chat messages"),
        (
            {
                "model": NAMES["reasoner"],
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 10**6,
            },
            400,
            "max_tokens",
        ),
    ]
    for body, status, words in cases:
        path = "/v1/chat/completions" if "messages" in str(body)[:80] else "/v1/embeddings"
        got, reply = s.post(path, body)
        assert got == status, (body if isinstance(body, bytes) else str(body)[:120], reply)
        assert words in reply["error"]["message"]
    got, reply = s.post_declared("/v1/embeddings", 2 << 20)  # over --max-body-mb 1
    assert got == 413 and "body over" in reply["error"]["message"]
    got, reply = s.post("/v1/embeddings", {"model": NAMES["embedder"], "input": "fine"})
    assert got == 200 and len(reply["data"]) == 1
    import urllib.request

    with urllib.request.urlopen(s.url + "/v1/models", timeout=10) as r:
        served = {m["id"]: m for m in json.loads(r.read())["data"]}
    assert set(served) == set(NAMES.values())
    root = served[NAMES["embedder"]]["root"]  # the weights behind a name, as vLLM says
    assert root == str(resolve_model_folder(world["models"]["embedder"]))
    stats = s.health()["stats"]
    assert stats["refused_400"] >= 8 and stats["refused_404"] >= 1


def test_server_embeddings_equal_the_local_path(world):
    """Items in every form (text, file URL, base64, frames), with and without reasoning."""
    cfg, imgs = world["cfg"], world["images"]
    b64 = base64.b64encode(imgs[1].read_bytes()).decode()
    inputs = [
        {"text": "a white square on green", "instruction": "Find the image."},
        {"image": f"file://{imgs[0]}", "instruction": "Represent the image."},
        {"image": f"data:image/png;base64,{b64}", "role": "candidate"},
        {"frames": [f"file://{p}" for p in imgs], "text": "what changes?"},
    ]
    s = world["server"]
    got, reply = s.post("/v1/embeddings", {"model": NAMES["embedder"], "input": inputs})
    assert got == 200, reply
    z_server = np.array([d["embedding"] for d in reply["data"]], np.float32)
    tcots_server = [d["tcot"] for d in reply["data"]]
    items = [
        Item(modality="text", inst="Find the image.", text="a white square on green"),
        Item(modality="image", inst="Represent the image.", image=str(imgs[0])),
        Item(modality="image", image=str(imgs[1])),
        Item(modality="video", text="what changes?", frames=tuple(str(p) for p in imgs)),
    ]
    roles = ["query", "query", "candidate", "query"]
    r = hf_reasoner(cfg, world["models"]["reasoner"], identity_memo=None)
    local = CachedReasoner(r, TCoTCache(None, cache_namespace(r.identity, r.params)))
    tcots = local.reason(items, roles)
    assert tcots == tcots_server  # the same Reasoner, prompts and decoding
    enc = make_encoder(cfg, world["models"]["embedder"], None)
    z_local = enc.encode(items, tcots, cfg.train_embedder.tcot_input)
    assert np.allclose(z_server, z_local, atol=ATOL)
    # reasoning: false embeds the raw input (no T-CoT)
    got, raw = s.post(
        "/v1/embeddings", {"model": NAMES["embedder"], "input": inputs[:2], "reasoning": False}
    )
    assert got == 200 and all("tcot" not in d for d in raw["data"])
    z_raw = np.array([d["embedding"] for d in raw["data"]], np.float32)
    assert np.allclose(z_raw, enc.encode(items[:2], None, "raw"), atol=ATOL)
    # the T-CoT matters: (the random tiny Reasoner may well write nothing readable, which
    # the builder embeds as the raw input, so a written one is used here)
    written = ["<thinking> a white square </thinking> <answer> white square </answer>"] * 2
    z_tcot = enc.encode(items[:2], written, cfg.train_embedder.tcot_input)
    assert not np.allclose(z_raw, z_tcot, atol=1e-2)


def test_the_server_uses_evaluations_caches(world):
    """What the server wrote is what evaluation reads: nothing generated or encoded again."""
    cfg, imgs = world["cfg"], world["images"]
    item = Item(modality="image", inst="Represent the image.", image=str(imgs[3]))
    s = world["server"]
    body = {"model": NAMES["embedder"], "input": [{"image": str(imgs[3]),
            "instruction": "Represent the image."}]}  # fmt: skip
    assert s.post("/v1/embeddings", body)[0] == 200
    cache = world["root"] / "cache"
    r = hf_reasoner(cfg, world["models"]["reasoner"], identity_memo=cache / "identity")
    tc = TCoTCache(cache / "tcot", cache_namespace(r.identity, r.params))
    st = CacheStats("reasoning")
    tcot = CachedReasoner(r, tc).reason([item], ["query"], st)
    assert (st.cached, st.computed) == (1, 0)
    enc = make_encoder(cfg, world["models"]["embedder"], cache / "emb", identity_memo=None)
    est = CacheStats("encoding")
    enc.encode([item], tcot, cfg.train_embedder.tcot_input, est)
    assert (est.cached, est.computed) == (1, 0)


def test_the_pipeline_server_embedder_pools_emb_as_the_local_one(world):
    """Issue 10.3: the EG-RL server Embedder sends <emb> as an assistant turn; with the
    shipped template the server's last token is <emb>, as the local Embedder's pooled one."""
    imgs = world["images"]
    good = render_tcot("a square", "white", "white square", {"bbox_2d": [100, 100, 500, 600]})
    built = [
        build_input(Item(modality="image", image=str(imgs[2]), inst="Find it"), good),
        build_input(Item(modality="text", text="a short caption"), None),
        build_input(Item(modality="video", frames=tuple(str(p) for p in imgs[:3])), None),
    ]
    folder = resolve_model_folder(world["models"]["embedder"])
    # the local Embedder as the server loads it (same processor settings), no server between
    with torch.no_grad():
        local = make_encoder(world["cfg"], folder, None).embedder.embed_built(built)
    server = ServerEmbedder(_cfg(world, "embedder", concurrency=3)).embed_built(built)
    assert torch.allclose(server, local, atol=ATOL)
    # the stock template closes the turn (<emb><|im_end|>\n): pooling lands after <emb>
    from ume.clients import to_openai_messages

    stock = local_embedder_template(folder)
    client = ServerClient(_cfg(world, "embedder"), "egrl.embedder_server")
    wrong = torch.nn.functional.normalize(
        torch.tensor(client.embed(to_openai_messages(built[1].messages), chat_template=stock)),
        dim=0,
    )
    assert not torch.allclose(wrong, local[1], atol=1e-2)


def local_embedder_template(folder) -> str:
    from ume.models.backbone import load_backbone

    _, processor = load_backbone(folder, role="embedder")
    return processor.chat_template


def test_chat_answers_equal_local_greedy_generate(world):
    """The Reasoner (evaluation's server Reasoner) and the Discriminator (EG-RL's) as chat
    models: the same greedy answers as the local model."""
    imgs = world["images"]
    chats = [
        [{"role": "user", "content": "Describe a red circle."}],
        [{"role": "user", "content": [{"type": "image", "image": str(imgs[0])},
                                      {"type": "text", "text": "What is in the image?"}]}],
    ]  # fmt: skip
    for role in ("reasoner", "discriminator"):
        folder = resolve_model_folder(world["models"][role])
        # the local model as the server loads it: evaluation's Reasoner, the Discriminator
        local = (
            hf_reasoner(world["cfg"], folder, identity_memo=None).model
            if role == "reasoner"
            else LocalChatModel(folder, role=role, batch_size=1)
        )
        want = [local.generate([c], max_new_tokens=12)[0][0] for c in chats]
        client = ServerClient(_cfg(world, role, concurrency=1), f"{role}.server")
        got = [t for t, _ in client.generate(chats, max_new_tokens=12)]
        assert got == want, role
    d = Discriminator(ServerClient(_cfg(world, "discriminator"), "egrl.discriminator_server"))
    assert len(d.answer(chats)) == 2
    # evaluation's server Reasoner writes T-CoTs through it, cached by the served name
    ev = server_reasoner(_cfg(world, "reasoner", concurrency=1), max_new_tokens=12)
    tc = TCoTCache(world["root"] / "client-cache", cache_namespace(ev.identity, ev.params))
    out = CachedReasoner(ev, tc).reason([Item(modality="text", text="a cat")], ["query"])
    assert isinstance(out[0], str)


def test_concurrent_requests_are_batched(world):
    s = world["server"]
    before = s.health()["stats"]
    bodies = [
        {"model": NAMES["embedder"], "input": [f"query number {i}"], "reasoning": i % 2 == 0}
        for i in range(8)
    ]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda b: s.post("/v1/embeddings", b), bodies))
    assert all(code == 200 for code, _ in replies)
    after = s.health()["stats"]
    batches = after.get("batches", 0) - before.get("batches", 0)
    assert 1 <= batches < 8, json.dumps(after)
