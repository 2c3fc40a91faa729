"""Tiny Qwen-VL builder, tokenizer, processor and backbone resolution (no hub, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ume.config import BackboneConfig, TinyModelConfig, config_from_dict
from ume.errors import ConfigError, OfflineError
from ume.fingerprints import checksum
from ume.models.backbone import load_backbone, resolve_backbone, set_offline_env

pytestmark = pytest.mark.unit

FAMILIES = ("qwen3_vl", "qwen2_vl")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Both families built once for the module, under HF_HUB_OFFLINE=1."""
    set_offline_env()
    from ume.models.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {fam: build_tiny(fam, TinyModelConfig(), root / fam) for fam in FAMILIES}


@pytest.fixture(scope="module")
def tokenizer():
    from ume.models.tiny import train_tokenizer

    return train_tokenizer(1024, 0)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image, ImageDraw

    p = tmp_path_factory.mktemp("img") / "red_circle.png"
    im = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(im).ellipse((8, 8, 40, 40), fill=(220, 20, 20))
    im.save(p)
    return p


def _chat(image: Path) -> list[dict]:
    return [
        {"role": "system", "content": "You embed images."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": str(image)},
                {"type": "text", "text": "Find a red circle. <emb>"},
            ],
        },
    ]


# --------------------------------------------------------------------------- tokenizer
def test_special_tokens_are_single_ids(tokenizer):
    from ume.models.tiny import SPECIAL_TOKENS, TCOT_TAGS

    ids = [tokenizer.encode(t, add_special_tokens=False) for t in SPECIAL_TOKENS]
    assert all(len(i) == 1 for i in ids), dict(zip(SPECIAL_TOKENS, ids, strict=True))
    assert len({i[0] for i in ids}) == len(SPECIAL_TOKENS)
    assert all(i[0] < len(tokenizer) for i in ids)
    # Tags inside running text stay single tokens and survive decoding.
    text = "<thinking>a red circle</thinking><answer>red</answer>"
    enc = tokenizer.encode(text, add_special_tokens=False)
    for tag in TCOT_TAGS[:2] + TCOT_TAGS[4:]:
        assert tokenizer.convert_tokens_to_ids(tag) in enc
    assert tokenizer.decode(enc, skip_special_tokens=True) == text
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.padding_side == "left"


def test_tokenizer_is_deterministic(tokenizer):
    from ume.models.tiny import train_tokenizer

    again = train_tokenizer(1024, 0)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert len(tokenizer) == 1024 + 15


def test_tokenizer_rejects_tiny_vocab():
    from ume.models.tiny import train_tokenizer

    with pytest.raises(ConfigError, match=r"models\.tiny\.vocab_size"):
        train_tokenizer(100, 0)


def test_chat_template_renders_image_placeholders(tokenizer):
    conv = [
        {"role": "system", "content": "Sys."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": "/x/a.png"},
                {"type": "image"},
                {"type": "text", "text": "Same?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>yes</answer>"}]},
        {"role": "user", "content": "And now?"},
    ]
    text = tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    img = "<|vision_start|><|image_pad|><|vision_end|>"
    assert text == (
        "<|im_start|>system\nSys.<|im_end|>\n"
        f"<|im_start|>user\n{img}{img}Same?<|im_end|>\n"
        "<|im_start|>assistant\n<answer>yes</answer><|im_end|>\n"
        "<|im_start|>user\nAnd now?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_prompt = tokenizer.apply_chat_template(conv[:1], tokenize=False)
    assert no_prompt == "<|im_start|>system\nSys.<|im_end|>\n"


@pytest.mark.parametrize("family", FAMILIES)
def test_64px_image_gives_four_tokens(family, tokenizer, image):
    from PIL import Image

    from ume.models.tiny import make_processor

    proc = make_processor(family, tokenizer)
    text = proc.apply_chat_template(_chat(image), tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((inputs["input_ids"] == image_id).sum()) == 4
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert "mm_token_type_ids" in inputs
    assert int(inputs["mm_token_type_ids"].sum()) == 4


# --------------------------------------------------------------------------- builder
@pytest.mark.parametrize("family", FAMILIES)
def test_saved_model_reloads_offline_with_identical_logits(family, built, image):
    import os

    import torch
    from PIL import Image

    from ume.models.tiny import PROCESSOR_CLASSES, make_tiny, model_class

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    folder = built[family]
    model, proc = load_backbone(folder, role="embedder")
    assert type(model) is model_class(family)
    assert type(proc) is PROCESSOR_CLASSES[family]
    assert type(proc.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert proc.tokenizer.padding_side == "left"
    ref_model, _ = make_tiny(family, TinyModelConfig())

    text = proc.apply_chat_template(_chat(image), tokenize=False, add_generation_prompt=True)
    inputs = proc(text=[text], images=[Image.open(image).convert("RGB")], return_tensors="pt")
    with torch.no_grad():
        a = model(**inputs).logits
        b = ref_model(**inputs).logits
    assert a.shape[-1] == len(proc.tokenizer)
    assert torch.equal(a, b)
    cfg = model.config
    assert cfg.image_token_id == proc.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # models.tiny.patch_size (16: a 96-px scene is 3x3 tokens) overrides the family's own
    assert cfg.vision_config.patch_size == TinyModelConfig().patch_size == 16
    assert cfg.tie_word_embeddings is False
    n = sum(p.numel() for p in model.parameters())
    assert n < 2_000_000  # h128 / 4 layers: the embedded default, sized for learning


def test_build_is_deterministic_and_seeded(built, tmp_path):
    import torch

    from ume.models.tiny import build_tiny, make_tiny

    again = build_tiny("qwen3_vl", TinyModelConfig(), tmp_path / "again")
    for name in sorted(p.name for p in built["qwen3_vl"].iterdir()):
        assert checksum(again / name) == checksum(built["qwen3_vl"] / name), name
    a, _ = make_tiny("qwen2_vl", TinyModelConfig(seed=0))
    b, _ = make_tiny("qwen2_vl", TinyModelConfig(seed=1))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_writes_description(family, built):
    from ume.models.tiny import SPECIAL_TOKENS, read_tiny_info

    folder = built[family]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp left
    info = read_tiny_info(folder)
    assert info["family"] == family
    assert info["tiny"]["hidden_size"] == TinyModelConfig().hidden_size
    assert set(info["special_tokens"]) == set(SPECIAL_TOKENS)
    assert info["weights_sha256"]["model.safetensors"] == checksum(folder / "model.safetensors")
    assert json.loads((folder / "processor_config.json").read_text())["processor_class"].startswith(
        "UmeTiny"
    )


def test_bad_tiny_shape_names_the_key(tokenizer):
    from ume.models.tiny import make_config

    with pytest.raises(ConfigError, match=r"models\.tiny\.num_heads"):
        make_config("qwen2_vl", TinyModelConfig(hidden_size=60, num_heads=8), tokenizer)
    with pytest.raises(ConfigError, match="family"):
        make_config("llava", TinyModelConfig(), tokenizer)


# --------------------------------------------------------------------------- resolve / load
def test_set_offline_env_is_idempotent(monkeypatch):
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    set_offline_env()
    set_offline_env()
    import os

    import huggingface_hub.constants as c

    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert os.environ[k] == "1"
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert c.HF_HUB_OFFLINE is True


def test_resolve_tiny(built, tmp_path):
    cfg = BackboneConfig(source="tiny", family="qwen2_vl")
    assert resolve_backbone("embedder", cfg, built["qwen2_vl"]) == built["qwen2_vl"]
    with pytest.raises(ConfigError, match="base_models"):
        resolve_backbone("embedder", cfg, None)
    with pytest.raises(ConfigError, match=r"models\.reasoner.*base_models"):
        resolve_backbone("reasoner", cfg, tmp_path / "not_built")


def test_resolve_path_errors_name_the_key(built, tmp_path):
    ok = BackboneConfig(source="path", path=str(built["qwen3_vl"]))
    assert resolve_backbone("reasoner", ok, None) == built["qwen3_vl"]

    missing = BackboneConfig(source="path", path=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"models\.embedder\.path"):
        resolve_backbone("embedder", missing, None)

    # the config refuses these itself; resolve_backbone keeps its own guard
    hub = BackboneConfig.model_construct(source="path", path="Qwen/Qwen3-VL-8B-Instruct")
    with pytest.raises(OfflineError, match=r"models\.reasoner\.path.*never downloads"):
        resolve_backbone("reasoner", hub, None)

    (tmp_path / "empty").mkdir()
    empty = BackboneConfig(source="path", path=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match=r"models\.annotator\.path.*config\.json"):
        resolve_backbone("annotator", empty, None)

    none = BackboneConfig.model_construct(source="path", path=None)
    with pytest.raises(ConfigError, match=r"models\.embedder\.path"):
        resolve_backbone("embedder", none, None)


def test_load_rejects_unsupported_model_and_missing_flash_attn(built, tmp_path):
    from transformers.utils import is_flash_attn_2_available

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match=r"models\.discriminator.*qwen3_vl"):
        load_backbone(tmp_path, role="discriminator")
    with pytest.raises(ConfigError, match=r"models\.embedder"):
        load_backbone(tmp_path / "nowhere", role="embedder")
    if not is_flash_attn_2_available():
        with pytest.raises(ConfigError, match=r"models\.embedder\.attn_implementation.*sdpa"):
            load_backbone(built["qwen2_vl"], attn_implementation="flash_attention_2")


def test_real_checkpoint_processor_falls_back_without_video_processor(built, tmp_path):
    """A real Qwen3-VL folder names Qwen3VLProcessor, whose video processor needs torchvision;
    load_backbone then builds the image-only processor from the same files."""
    import shutil

    from ume.models.tiny import PROCESSOR_CLASSES

    folder = tmp_path / "realish"
    shutil.copytree(built["qwen3_vl"], folder)
    (folder / "ume_tiny.json").unlink()
    for name in ("processor_config.json", "tokenizer_config.json"):
        f = folder / name
        f.write_text(f.read_text().replace("UmeTinyQwen3VLProcessor", "Qwen3VLProcessor"))
    _, proc = load_backbone(folder, role="reasoner")
    assert type(proc) is PROCESSOR_CLASSES["qwen3_vl"]
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    assert "<|image_pad|>" in proc.apply_chat_template(chat, tokenize=False)


def test_light_imports():
    """``ume.models`` and ``ume.models.backbone`` must not import transformers (huggingface_hub
    reads the offline switches at import time, so set_offline_env has to come first)."""
    import subprocess
    import sys

    code = (
        "import sys, ume.models, ume.models.backbone; "
        "assert 'transformers' not in sys.modules and 'huggingface_hub' not in sys.modules; "
        "assert callable(ume.models.set_offline_env)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiny_vision_size_and_patch_follow_the_config():
    from PIL import Image

    from ume.models.tiny import make_tiny

    cfg = TinyModelConfig(
        patch_size=8,
        vision_hidden_size=48,
        vision_heads=3,
        initializer_range=0.1,
    )
    model, processor = make_tiny("qwen3_vl", cfg)
    v = model.config.vision_config
    assert (v.patch_size, v.hidden_size, v.num_heads) == (8, 48, 3)
    assert model.model.visual.patch_embed.proj.weight.std().item() == pytest.approx(0.1, rel=0.1)

    def tokens(side: int) -> int:
        grid = processor.image_processor(images=[Image.new("RGB", (side, side))])["image_grid_thw"]
        return int(grid.prod()) // 4  # 2x2 patches merge into one token

    assert tokens(96) == 36  # 16-px tokens (8-px patches, 2x2 merged): 6 x 6
    assert tokens(32) == 4
    with pytest.raises(ConfigError, match="vision_heads"):
        config_from_dict({"models": {"tiny": {"vision_hidden_size": 48, "vision_heads": 5}}})
