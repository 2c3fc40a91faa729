"""Content keys and the T-CoT / embedding caches of the evaluation: what is reused, what is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import real_layouts as fx
from tests.fixtures.eval_fakes import FakeEmbedder, FakeReasoner
from ume.eval.encode import CachedEncoder, EmbeddingCache, embedding_key
from ume.eval.reason import (
    CachedReasoner,
    TCoTCache,
    cache_namespace,
    model_identity,
    strip_tokens,
)
from ume.eval.stats import CacheStats
from ume.fingerprints import chat_fingerprint, content_key, folder_identity, item_fingerprint
from ume.items import Item
from ume.tcot.prompts import tcot_messages

pytestmark = pytest.mark.unit


@pytest.fixture()
def images(tmp_path) -> dict[str, Path]:
    a = fx.png(tmp_path / "run1" / "a.png", (200, 0, 0))
    b = fx.png(tmp_path / "run2" / "a.png", (200, 0, 0))  # same bytes, other folder
    c = fx.png(tmp_path / "run1" / "c.png", (0, 0, 200))
    return {"a": a, "b": b, "c": c}


# --------------------------------------------------------------------------- keys
def test_item_key_follows_image_content_not_path(images):
    a = Item(modality="image", inst="Find it", image=str(images["a"]))
    b = Item(modality="image", inst="Find it", image=str(images["b"]))
    c = Item(modality="image", inst="Find it", image=str(images["c"]))
    assert item_fingerprint(a) == item_fingerprint(b)
    assert item_fingerprint(a) != item_fingerprint(c)
    # ground truth is never seen by a model: it does not enter the key
    g = Item(modality="image", inst="Find it", image=str(images["a"]), gt={"boxes": [[1, 2, 3, 4]]})
    assert item_fingerprint(g) == item_fingerprint(a)


def test_tcot_prompt_key_hashes_images_and_text(images):
    a = tcot_messages(Item(modality="image", image=str(images["a"])), "query")
    b = tcot_messages(Item(modality="image", image=str(images["b"])), "query")
    cand = tcot_messages(Item(modality="image", image=str(images["a"])), "candidate")
    assert chat_fingerprint(a) == chat_fingerprint(b)
    assert chat_fingerprint(a) != chat_fingerprint(cand)
    assert "image_sha256" in str(chat_fingerprint(a)) and str(images["a"]) not in str(
        chat_fingerprint(a)
    )


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({}, True),
        ({"tcot": "other"}, False),
        ({"mode": "answer_only"}, False),
        ({"identity": "other-embedder"}, False),
    ],
)
def test_embedding_key_parts(change, same):
    it = Item(modality="text", text="a red circle")
    base = {"tcot": "<answer>x</answer>", "mode": "full", "identity": "emb"}
    args = base | change
    k0 = embedding_key(it, base["tcot"], base["mode"], base["identity"])
    k1 = embedding_key(it, args["tcot"], args["mode"], args["identity"])
    assert (k0 == k1) is same


def test_raw_mode_key_ignores_the_tcot():
    it = Item(modality="text", text="a red circle")
    assert embedding_key(it, "t1", "raw", "e") == embedding_key(it, None, "raw", "e")
    with pytest.raises(ValueError, match="mode must be one of"):
        embedding_key(it, None, "nonsense", "e")


def test_cache_namespace_depends_on_identity_and_params():
    p = {"max_new_tokens": 8, "temperature": 0.0}
    assert cache_namespace("hf:a", p) == cache_namespace("hf:a", dict(p))
    assert cache_namespace("hf:a", p) != cache_namespace("hf:b", p)
    assert cache_namespace("hf:a", p) != cache_namespace("hf:a", p | {"max_new_tokens": 9})
    assert len(content_key("x", 1)) == 64


def test_folder_identity_changes_with_weights_and_uses_memo(tmp_path):
    m = tmp_path / "model"
    m.mkdir()
    (m / "config.json").write_text("{}")
    (m / "model.safetensors").write_bytes(b"weights-1")
    (m / "manifest.json").write_text('{"start": "now"}')
    (m / "checkpoint-10").mkdir()
    (m / "checkpoint-10" / "x.bin").write_bytes(b"old")
    memo = tmp_path / "memo"
    a = model_identity(m, memo)
    assert model_identity(m, memo) == a and any(memo.iterdir())
    (m / "manifest.json").write_text('{"start": "later"}')  # provenance: not the model
    (m / "checkpoint-10" / "x.bin").write_bytes(b"older")  # checkpoints: not the model
    assert model_identity(m, memo) == a
    (m / "model.safetensors").write_bytes(b"weights-2")
    assert model_identity(m, memo) != a
    copy = tmp_path / "copy"
    shutil.copytree(m, copy)
    assert folder_identity(copy) == folder_identity(m)  # content, not location


def test_strip_tokens_keeps_tcot_tags():
    text = "<thinking>a <|image_pad|><|image_pad|>red<emb> car</thinking><answer>car</answer>"
    out = strip_tokens(text, ["<|image_pad|>", "<emb>"])
    assert out == "<thinking>a red car</thinking><answer>car</answer>"


# --------------------------------------------------------------------------- T-CoT cache
def _items(n: int) -> list[Item]:
    return [Item(modality="text", inst="Find it", text=f"item {i}") for i in range(n)]


def test_cached_reasoner_generates_each_prompt_once_across_instances(tmp_path):
    items = _items(5)
    fake = FakeReasoner()
    ns = cache_namespace(fake.identity, fake.params)
    r = CachedReasoner(fake, TCoTCache(tmp_path, ns), flush_every=2)
    st = CacheStats("reasoning")
    # duplicates inside one call are generated once
    out = r.reason([*items, items[0]], ["query"] * 6, st)
    assert (st.requested, st.unique, st.computed, st.cached) == (6, 5, 5, 0)
    assert st.tokens_generated == 35 and out[0] == out[5]
    assert len(list((tmp_path / ns).glob("part-*.jsonl"))) == 3  # flushed per 2 prompts
    # a new process (new cache object) finds all of them on disk
    fake2 = FakeReasoner()
    r2 = CachedReasoner(fake2, TCoTCache(tmp_path, ns))
    st2 = CacheStats("reasoning")
    assert r2.reason(items, ["query"] * 5, st2) == out[:5]
    assert (st2.computed, st2.cached, st2.tokens_cached, fake2.chats) == (0, 5, 35, 0)
    # the role changes the prompt: candidates are new prompts
    st3 = CacheStats("reasoning")
    r2.reason(items[:2], ["candidate"] * 2, st3)
    assert st3.computed == 2


def test_tcot_cache_skips_bad_lines_and_ignores_unfinished_shards(tmp_path):
    ns = tmp_path / "ns"
    ns.mkdir()
    (ns / "part-1.jsonl").write_text('{"key": "k1", "tcot": "t1", "tokens": 3}\nnot json\n')
    (ns / ".part-2.jsonl.tmp-abc").write_text('{"key": "k2", "tcot": "t2", "tokens": 3}\n')
    c = TCoTCache(tmp_path, "ns")
    assert c.get("k1") == ("t1", 3) and "k2" not in c and len(c) == 1


def test_concurrent_writers_never_share_a_file(tmp_path):
    a, b = TCoTCache(tmp_path, "ns"), TCoTCache(tmp_path, "ns")
    pa = a.put({"k1": ("t1", 1)})
    pb = b.put({"k2": ("t2", 2)})
    assert pa != pb
    c = TCoTCache(tmp_path, "ns")
    assert len(list((tmp_path / "ns").glob("part-*.idx"))) == 2
    assert "k1" in c and not c._mem  # only the index is read at start; texts on demand
    assert c.get("k1") == ("t1", 1) and c.get("k2") == ("t2", 2)
    (tmp_path / "ns" / pa.with_suffix(".idx").name).unlink()  # no index: the shard is read
    assert TCoTCache(tmp_path, "ns").get("k1") == ("t1", 1)


def test_memory_only_cache_writes_nothing(tmp_path):
    c = TCoTCache(None, "ns")
    assert c.put({"k": ("t", 1)}) is None and c.get("k") == ("t", 1)


# --------------------------------------------------------------------------- embedding cache
def test_cached_encoder_encodes_each_key_once_and_returns_input_order(tmp_path):
    items = _items(6)
    tcots = [f"t{i}" for i in range(6)]
    fake = FakeEmbedder()
    enc = CachedEncoder(fake, "emb-1", EmbeddingCache(tmp_path, "ns"), flush_every=4)
    st = CacheStats("encoding")
    z = enc.encode([*items, items[2]], [*tcots, tcots[2]], "full", st)
    assert z.shape == (7, 16) and np.allclose(z[2], z[6])
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    assert (st.requested, st.unique, st.computed, st.cached) == (7, 6, 6, 0)
    assert fake.inputs == 6 and enc.max_calls_per_key() == 1 and enc.calls_per_unique() == 1.0
    # another mode is another input; the same mode again is free
    enc.encode(items, tcots, "answer_only")
    assert fake.inputs == 12
    st2 = CacheStats("encoding")
    z2 = enc.encode(list(reversed(items)), list(reversed(tcots)), "full", st2)
    assert st2.computed == 0 and np.allclose(z2[::-1], z[:6])
    # a new process reads the shards (memory-mapped) and encodes nothing
    fake2 = FakeEmbedder()
    enc2 = CachedEncoder(fake2, "emb-1", EmbeddingCache(tmp_path, "ns"))
    z3 = enc2.encode(items, tcots, "full")
    assert fake2.inputs == 0 and np.allclose(z3, z[:6])
    assert enc.calls_per_unique() == 1.0


def test_raw_mode_encodes_once_whatever_the_tcots():
    fake = FakeEmbedder()
    enc = CachedEncoder(fake, "e", EmbeddingCache(None, "ns"))
    items = _items(3)
    enc.encode(items, ["a", "b", "c"], "raw")
    enc.encode(items, None, "raw")
    assert fake.inputs == 3


def test_embedding_shard_without_keys_file_is_ignored(tmp_path):
    c = EmbeddingCache(tmp_path, "ns")
    c.put(["k1", "k2"], np.eye(2, dtype=np.float32))
    np.save(tmp_path / "ns" / "part-zzz.npy", np.ones((1, 2), np.float32))  # no .keys: unfinished
    c2 = EmbeddingCache(tmp_path, "ns")
    assert len(c2) == 2 and np.allclose(c2.get_many(["k2", "k1"]), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="keys for vectors"):
        c2.put(["a"], np.ones((2, 2), np.float32))
