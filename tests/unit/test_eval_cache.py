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
    ChatReasoner,
    TCoTCache,
    cache_namespace,
    model_identity,
    strip_tokens,
)
from ume.eval.stats import CacheStats
from ume.fingerprints import chat_fingerprint, content_key, folder_identity, item_fingerprint
from ume.items import Item
from ume.store import count_records
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
    # a Reasoner that cannot report replies one by one is asked (and stored) per 2 prompts
    assert fake.calls == 3 and count_records(tmp_path / ns) == 5
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


class _DyingChat:
    """A chat model that replies to ``survive`` chats (one by one), then fails for good."""

    def __init__(self, survive: int) -> None:
        self.survive = survive
        self.asked: list[str] = []

    def generate(self, chats, *, max_new_tokens, on_result=None):
        out = []
        for i, chat in enumerate(chats):
            if len(self.asked) >= self.survive:
                raise ConnectionError("server gone")
            text = content_key("chat", chat_fingerprint(chat))[:12]
            self.asked.append(text)
            out.append((f"<answer>{text}</answer>", 3))
            if on_result is not None:
                on_result(i, out[-1])
        return out


def test_each_tcot_is_stored_as_it_arrives_and_a_rerun_asks_only_for_the_rest(tmp_path):
    items = _items(6)
    dying = _DyingChat(survive=4)
    reasoner = ChatReasoner(dying, identity="server:m", params={"t": 0}, max_new_tokens=8)
    ns = cache_namespace(reasoner.identity, reasoner.params)
    with pytest.raises(ConnectionError):
        CachedReasoner(reasoner, TCoTCache(tmp_path, ns)).reason(items, ["query"] * 6)
    assert count_records(tmp_path / ns) == 4  # the 4 replies before the failure are kept
    healthy = _DyingChat(survive=100)
    reasoner2 = ChatReasoner(healthy, identity="server:m", params={"t": 0}, max_new_tokens=8)
    st = CacheStats("reasoning")
    out = CachedReasoner(reasoner2, TCoTCache(tmp_path, ns)).reason(items, ["query"] * 6, st)
    assert (st.cached, st.computed) == (4, 2) and len(healthy.asked) == 2
    assert not set(healthy.asked) & set(dying.asked)  # nothing finished is asked again
    assert len(set(out)) == 6


def test_tcot_cache_drops_a_cut_tail_and_keeps_the_rest(tmp_path, caplog):
    c = TCoTCache(tmp_path, "ns")
    c.put({"k1": ("t1", 1), "k2": ("t2", 2), "k3": ("t3", 3)})
    c.close()
    seg = next((tmp_path / "ns").rglob("seg-*.jsonl"))
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a crash cut the last record
    with caplog.at_level("WARNING"):
        c2 = TCoTCache(tmp_path, "ns")
        assert c2.find(["k1", "k2", "k3"]) == {"k1", "k2", "k3"}  # the index lists all three
        assert c2.get("k1") == ("t1", 1) and c2.get("k2") == ("t2", 2)
        assert c2.get("k3") is None  # its record fails the checksum: dropped, not served
    assert any("cut or damaged" in r.message for r in caplog.records)
    (seg.with_suffix(".idx")).unlink()  # no index: the segment is scanned, same verdict
    c3 = TCoTCache(tmp_path, "ns")
    assert c3.find(["k1", "k2", "k3"]) == {"k1", "k2"} and c3.store.dropped == 1


def test_concurrent_writers_never_share_a_file(tmp_path):
    a, b = TCoTCache(tmp_path, "ns"), TCoTCache(tmp_path, "ns")
    a.put({"k1": ("t1", 1)})
    b.put({"k2": ("t2", 2)})
    segs = list((tmp_path / "ns").rglob("seg-*.jsonl"))
    assert len(segs) == 2 and len(list((tmp_path / "ns").rglob("seg-*.idx"))) == 2
    c = TCoTCache(tmp_path, "ns")
    assert "k1" in c and not c.store._values  # only the index is read; texts on demand
    assert c.get_many(["k1", "k2"]) == [("t1", 1), ("t2", 2)]


def test_a_task_reads_its_own_group_and_only_the_keys_it_asks_for(tmp_path):
    for task in ("A", "B", "C"):
        w = TCoTCache(tmp_path, "ns")
        w.group = task
        w.put({f"{task}{i}": (f"t{task}{i}", 1) for i in range(50)})
        w.close()
    c = TCoTCache(tmp_path, "ns")
    c.group = "B"
    assert c.find([f"B{i}" for i in range(50)]) == {f"B{i}" for i in range(50)}
    assert c.store.segments_read == 1 and len(c) == 50  # the other tasks were not read
    assert c.find(["A3", "Z"]) == {"A3"} and len(c) == 51  # a miss visits the others ...
    assert c.store.segments_read == 4  # ... (and its own again) and keeps only those keys


def test_memory_only_cache_writes_nothing(tmp_path):
    c = TCoTCache(None, "ns")
    c.put({"k": ("t", 1)})
    assert c.get("k") == ("t", 1) and not any(tmp_path.iterdir())


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
    shard_dir = next((tmp_path / "ns").rglob("part-*.npy")).parent
    np.save(shard_dir / "part-zzz.npy", np.ones((1, 2), np.float32))  # no .keys: unfinished
    c2 = EmbeddingCache(tmp_path, "ns")
    assert c2.find(["k1", "k2"]) == {"k1", "k2"}
    assert np.allclose(c2.get_many(["k2", "k1"]), [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="keys for vectors"):
        c2.put(["a"], np.ones((2, 2), np.float32))


def test_a_cut_embedding_shard_keeps_its_whole_rows(tmp_path, caplog):
    c = EmbeddingCache(tmp_path, "ns")
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    c.put(["k0", "k1", "k2", "k3"], vecs)
    npy = next((tmp_path / "ns").rglob("part-*.npy"))
    npy.write_bytes(npy.read_bytes()[:-5])  # the last row is cut
    with caplog.at_level("WARNING"):
        c2 = EmbeddingCache(tmp_path, "ns")
        assert c2.find(["k0", "k1", "k2", "k3"]) == {"k0", "k1", "k2"}
    assert np.allclose(c2.get_many(["k2", "k0"]), vecs[[2, 0]])
    assert any("cut short" in r.message for r in caplog.records)


def test_embedding_lookups_start_in_the_task_group(tmp_path):
    for task in ("A", "B"):
        w = EmbeddingCache(tmp_path, "ns")
        w.group = task
        w.put([f"{task}{i}" for i in range(3)], np.eye(3, dtype=np.float32))
    c = EmbeddingCache(tmp_path, "ns")
    c.group = "A"
    assert c.find(["A0", "A2"]) == {"A0", "A2"} and c.keys_files_read == 1
    assert c.find(["B1"]) == {"B1"} and c.keys_files_read == 3 and len(c) == 3
