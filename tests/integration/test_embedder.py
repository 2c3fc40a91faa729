"""The Embedder on tiny Qwen-VL models: <emb> pooling, encode, LoRA, merge and reload."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from ume.config import LoraConfig, TinyModelConfig
from ume.errors import ConfigError
from ume.inputs import EMB_TOKEN, build_input, collate
from ume.items import Item
from ume.models.backbone import load_backbone
from ume.models.embedder import EMBEDDER_INFO_NAME, Embedder
from ume.models.tiny import build_tiny
from ume.tcot.format import render_tcot

pytestmark = pytest.mark.integration

LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {fam: build_tiny(fam, TinyModelConfig(), root / fam) for fam in ("qwen3_vl", "qwen2_vl")}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Mixed lengths and modalities: short texts, images with boxes, videos with key frames."""
    root = tmp_path_factory.mktemp("media")
    paths = []
    for k in range(4):
        img = Image.new("RGB", (64 + 32 * k, 64), (60 * k, 200 - 40 * k, 30))
        img.paste((255, 255, 255), (8, 8, 30, 40))
        paths.append(str(root / f"im{k}.png"))
        img.save(paths[-1])
    items, tcots = [], []
    for i in range(7):
        kind = i % 3
        if kind == 0:
            items.append(Item(text=f"a red car number {i}"))
            tcots.append(render_tcot("a car", "red", "red car", {"text_keywords": ["red"]}))
        elif kind == 1:
            items.append(Item(modality="image", image=paths[i % 4], inst="Represent the image"))
            tcots.append(render_tcot("box " * i, "white", "a patch", {"bbox_2d": [0, 0, 500, 700]}))
        else:
            items.append(Item(modality="video", frames=tuple(paths), text="what changes? " * i))
            tcots.append(render_tcot("frames", "colour", "fading", {"key_frames": [1, 4]}))
    return items, tcots


@pytest.fixture(scope="module")
def embedder(folders):
    return Embedder.from_pretrained(folders["qwen3_vl"])


def test_embeddings_are_unit_norm_at_the_last_emb(embedder, data):
    items, tcots = data
    # an <emb> inside the user text must not be the one pooled: the builder removes it
    items = [Item(text=f"decoy {EMB_TOKEN} token"), *items[:3]]
    built = [build_input(i, t) for i, t in zip(items, [tcots[0], *tcots[:3]], strict=True)]
    batch = collate(built, embedder.processor)
    with torch.no_grad():
        z = embedder(**batch)  # [B, D]
        hidden = embedder.base_model.model(**batch).last_hidden_state  # [B, T, D]
    assert z.shape == (4, embedder.base_model.config.get_text_config().hidden_size)
    assert torch.allclose(z.norm(dim=1), torch.ones(4), atol=1e-5)
    ids = batch["input_ids"]
    assert (ids[0] == embedder.emb_token_id).sum() == 1
    assert any("reserved token" in p for p in built[0].problems)
    for b in range(4):
        pos = (ids[b] == embedder.emb_token_id).nonzero().max()
        assert pos == ids.shape[1] - 3  # ... <emb><|im_end|>\n, left padding
        expected = torch.nn.functional.normalize(hidden[b, pos], dim=0)
        assert torch.allclose(z[b], expected, atol=1e-5)


def test_embed_built_and_encode_agree_and_tcot_matters(embedder, data):
    items, tcots = data
    with torch.no_grad():
        direct = embedder.embed_built(
            [build_input(i, t) for i, t in zip(items, tcots, strict=True)]
        )
    enc = embedder.encode(items, tcots, batch_size=3)
    assert torch.allclose(direct, enc, atol=1e-5)
    raw = embedder.encode(items, tcots, mode="raw", batch_size=3)
    assert (raw - enc).norm(dim=1).min() > 1e-3
    assert embedder.last_problems == [[]] * len(items)


def test_grouped_encode_keeps_input_order(embedder, data):
    items, tcots = data
    grouped = embedder.encode(items, tcots, batch_size=4, group_by_length=True)
    plain = embedder.encode(items, tcots, batch_size=4, group_by_length=False)
    one_by_one = embedder.encode(items, tcots, batch_size=1)
    assert torch.allclose(grouped, plain, atol=1e-5)
    assert torch.allclose(grouped, one_by_one, atol=1e-5)
    assert embedder.encode([], []).shape == (0, grouped.shape[1])


def test_bad_evidence_is_recorded_not_raised(embedder, data, tmp_path):
    items, tcots = data
    bad = [
        Item(modality="image", image=str(tmp_path / "missing.png")),
        items[1],
        Item(modality="video", frames=(items[2].frames[0], str(tmp_path / "gone.png"))),
    ]
    out = embedder.encode(
        bad, [tcots[1], render_tcot("x", "y", "z", {"bbox_2d": [1200, 0, 1500, 10]}), tcots[2]]
    )
    assert out.shape[0] == 3 and torch.isfinite(out).all()
    assert all(embedder.last_problems)


def test_lora_targets_only_language_model_linears(folders):
    emb = Embedder.from_pretrained(folders["qwen3_vl"], lora=LORA)
    lora_modules = [n for n, m in emb.named_modules() if hasattr(m, "lora_A")]
    assert lora_modules and all(".language_model." in n for n in lora_modules)
    layers = TinyModelConfig().num_layers
    assert len(lora_modules) == layers * 7  # layers x (q, k, v, o, gate, up, down)
    trainable = [n for n, p in emb.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(p.requires_grad for p in emb.base_model.model.visual.parameters())
    with pytest.raises(ConfigError, match=r"train_embedder\.lora\.target_modules"):
        Embedder.from_pretrained(folders["qwen3_vl"], lora=LoraConfig(target_modules=["qkv"]))


def test_full_finetuning_freezes_only_the_vision_tower(embedder):
    assert not any(p.requires_grad for p in embedder.base_model.model.visual.parameters())
    assert all(p.requires_grad for p in embedder.base_model.model.language_model.parameters())


def test_lora_trains_and_merged_model_reloads_with_the_same_embeddings(folders, data, tmp_path):
    items, tcots = data
    emb = Embedder.from_pretrained(folders["qwen3_vl"], lora=LORA)
    base = emb.encode(items, tcots)
    emb.train()
    emb.gradient_checkpointing_enable()
    assert emb.base_model.is_activation_checkpointing
    loss = emb.embed_built(
        [build_input(i, t) for i, t in zip(items[:4], tcots[:4], strict=True)]
    ).sum()
    loss.backward()
    grads = [p.grad for n, p in emb.named_parameters() if "lora_B" in n]  # lora_A's: 0 at B = 0
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    torch.manual_seed(0)
    with torch.no_grad():  # an adapter that does something (lora_B starts at zero)
        for n, p in emb.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    before = emb.encode(items, tcots)
    assert emb.model.training  # encode restored the mode
    assert (before - base).norm(dim=1).min() > 1e-3

    out = emb.save_merged(tmp_path / "merged")
    names = {p.name for p in out.iterdir()}
    assert "config.json" in names and EMBEDDER_INFO_NAME in names
    assert not any(n.startswith("adapter") for n in names)
    assert json.loads((out / EMBEDDER_INFO_NAME).read_text())["merged_lora"] is True
    model, processor = load_backbone(out, role="embedder")
    assert not any("lora" in k for k in model.state_dict())
    after = Embedder(model, processor).encode(items, tcots)
    assert torch.allclose(before, after, atol=1e-5)
    assert torch.allclose(emb.encode(items, tcots), before, atol=1e-6)  # still the LoRA model


def test_missing_emb_token_is_added_and_initialised(monkeypatch):
    import ume.models.tiny as tiny

    monkeypatch.setattr(tiny, "PROJECT_TOKENS", tiny.TCOT_TAGS)
    monkeypatch.setattr(tiny, "SPECIAL_TOKENS", (*tiny.CHAT_TOKENS, *tiny.TCOT_TAGS))
    for spare in (0, 8):  # no spare row (resize), or spare untrained rows (real checkpoints)
        model, processor = tiny.make_tiny("qwen3_vl")
        assert len(processor.tokenizer.encode(EMB_TOKEN, add_special_tokens=False)) > 1
        if spare:
            model.resize_token_embeddings(len(processor.tokenizer) + spare)
        rows = model.get_input_embeddings().weight.shape[0]
        emb = Embedder(model, processor)
        weight = model.get_input_embeddings().weight
        assert weight.shape[0] == (rows if spare else rows + 1)
        assert processor.tokenizer.encode(EMB_TOKEN, add_special_tokens=False) == [emb.emb_token_id]
        expected = weight[: emb.emb_token_id].mean(0)
        assert torch.allclose(weight[emb.emb_token_id], expected, atol=1e-6)
        z = emb.encode([Item(text="a red car")], [None])
        assert torch.allclose(z.norm(dim=1), torch.ones(1), atol=1e-5)


def test_a_backbone_that_is_not_qwen_vl_names_the_config_key(tmp_path, embedder):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"models\.embedder"):
        Embedder(LlamaForCausalLM(cfg), embedder.processor)
    with pytest.raises(ConfigError, match=r"models\.embedder"):
        Embedder(embedder.base_model, embedder.processor.tokenizer)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    with pytest.raises(ConfigError, match=r"models\.embedder"):
        Embedder.from_pretrained(tmp_path / "llama")


def test_qwen2_vl_backbone(folders, data):
    items, tcots = data
    emb = Embedder.from_pretrained(folders["qwen2_vl"], lora=LORA)
    lora_modules = [n for n, m in emb.named_modules() if hasattr(m, "lora_A")]
    assert lora_modules and all(".language_model." in n for n in lora_modules)
    grouped = emb.encode(items, tcots, batch_size=4)
    assert torch.allclose(grouped.norm(dim=1), torch.ones(len(items)), atol=1e-5)
    assert torch.allclose(grouped, emb.encode(items, tcots, group_by_length=False), atol=1e-5)
