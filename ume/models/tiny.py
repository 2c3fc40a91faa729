"""Tiny random-initialised Qwen-VL models built locally (no hub, no download).

A tiny model is an instance of the *real* architecture class (``Qwen3VLForConditionalGeneration``
or ``Qwen2VLForConditionalGeneration``) with a few thousand parameters, so every code path of the
pipeline (processor, chat template, vision tower, M-RoPE, generation, LoRA, TRL) runs on a CPU in
seconds. It comes with

- a byte-level BPE tokenizer trained here on a built-in corpus, carrying the Qwen chat tokens,
  ``<emb>`` and the T-CoT tags (each a single token), a Qwen-style multimodal chat template,
  left padding and a pad token;
- a ``Qwen2VLImageProcessorPil`` (no torchvision) with the ``models.tiny.patch_size`` (with
  patch 16 a 96x96 image gives 3x3 merged tokens, one per cell of the synthetic scenes; the
  ``budgets`` section bounds every input's tokens);
- a processor subclass without a video processor (videos are fed as lists of frames), registered
  with ``AutoProcessor`` so ``AutoProcessor.from_pretrained(folder)`` returns it.

The same config and seed give identical weights and identical files.

>>> from transformers import AutoProcessor, PretrainedConfig, Qwen2VLProcessor, Qwen3VLProcessor

from ume.config import TinyModelConfig
>>> build_tiny("qwen3_vl", TinyModelConfig(), "results/default/models/tiny_qwen3_vl")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from transformers import AutoProcessor, PretrainedConfig, Qwen2VLProcessor, Qwen3VLProcessor

from ume.config import TinyModelConfig
from ume.errors import ConfigError
from ume.fingerprints import file_sha256
from ume.io import atomic_path
from ume.offline import set_offline_env

set_offline_env()  # building a tiny model never needs the hub; make sure nothing tries

Family = Literal["qwen3_vl", "qwen2_vl"]
FAMILIES: tuple[str, ...] = ("qwen3_vl", "qwen2_vl")
TINY_INFO_NAME = "ume_tiny.json"

# Qwen chat / vision tokens (the names the real Qwen-VL tokenizers use).
CHAT_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
EMB_TOKEN = "<emb>"
TCOT_TAGS: tuple[str, ...] = (
    "<thinking>",
    "</thinking>",
    "<rethink>",
    "</rethink>",
    "<answer>",
    "</answer>",
)
# Project tokens: single tokens the model can emit; not "special", so decoding with
# ``skip_special_tokens=True`` keeps them (like ``<think>`` in the real Qwen3 tokenizers).
PROJECT_TOKENS: tuple[str, ...] = (EMB_TOKEN, *TCOT_TAGS)
SPECIAL_TOKENS: tuple[str, ...] = (*CHAT_TOKENS, *PROJECT_TOKENS)

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"

# Qwen-style chat template for multimodal content parts. An image part ({"type": "image"} or any
# part holding an "image"/"image_url" key) becomes <|vision_start|><|image_pad|><|vision_end|>;
# the processor expands <|image_pad|> to the image's token count. No default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# Vision patch size per family (the real checkpoints' values; models.tiny.patch_size overrides
# it) and the 2x2 merge of patches into one visual token.
PATCH_SIZE = {"qwen2_vl": 14, "qwen3_vl": 16}
MERGE_SIZE = 2
MAX_TOKENS_SIDE = 8  # processor bound, merged tokens per side (budgets bound each input)


# --------------------------------------------------------------------------- corpus
def _words(text: str) -> list[str]:
    return text.split()


_COLOURS = _words("red green blue yellow orange purple pink brown black white grey cyan magenta")
_SHAPES = _words("circle square triangle rectangle star ellipse hexagon line arrow cross diamond")
_POSITIONS = _words(
    "left right top bottom centre center middle above below beside near far corner "
    "upper lower inside outside behind front between "
    "top-left top-right bottom-left bottom-right"
)
_DOC_WORDS = _words(
    "document page title table figure chart caption paragraph section header footer "
    "column row cell total revenue report invoice date author abstract summary chapter "
    "slide text font line number answer question"
)
_VIDEO_WORDS = _words(
    "video frame frames clip moves appears disappears enters leaves rotates grows shrinks "
    "first last then after before while during second seconds start end scene action"
)
_INSTRUCTIONS = (
    "Find an image that matches the caption.",
    "Represent the given image for retrieval.",
    "Represent the given document page.",
    "Find a video that includes the event.",
    "Answer the question about the image.",
    "Which object is in the picture?",
    "Retrieve the page that answers the question.",
    "Describe the image in one sentence.",
    "Identify the main object and its position.",
    "Select the frames where the event happens.",
    "Given the query, find the most relevant candidate.",
    "Think step by step, locate the evidence, then give the answer.",
    "Is the candidate relevant to the query? Answer Yes or No.",
)
_FILLER = _words(
    "the a an of in on at to with and or is are there this that which what where when how "
    "many one two three four five small large big tiny image picture photo query candidate "
    "object objects colour color shape position evidence keyframe keyframes box boxes "
    "yes no true false"
)


def _evidence_line(rng: random.Random, c: str, s: str, p: str) -> str:
    """A T-CoT evidence object of one of the three kinds (boxes on the 3x3 scene grid)."""
    kind = rng.randrange(3)
    if kind == 0:
        edges = [0, 47, 281, 328, 391, 609, 672, 719, 953, 1000]
        box = sorted(rng.sample(edges, 2)) + sorted(rng.sample(edges, 2))
        return json.dumps({"bbox_2d": [box[0], box[2], box[1], box[3]]})
    if kind == 1:
        a = rng.randrange(1, 8)
        return json.dumps({"key_frames": [a, a + 1]})
    return json.dumps({"text_keywords": [c, s, p]})


def _corpus(seed: int, n_lines: int = 1500) -> list[str]:
    """A deterministic English + JSON corpus for the BPE trainer (same seed -> same lines)."""
    rng = random.Random(seed)
    lines: list[str] = list(_INSTRUCTIONS)
    words = _COLOURS + _SHAPES + _POSITIONS + _DOC_WORDS + _VIDEO_WORDS + _FILLER
    lines.append(" ".join(words))
    lines.append(" ".join(w.capitalize() for w in words))
    lines.append("0 1 2 3 4 5 6 7 8 9 10 11 12 16 20 32 40 50 64 100 128 256 300 500 1000")
    for _ in range(n_lines):
        kind = rng.randrange(6)
        c, s, p = rng.choice(_COLOURS), rng.choice(_SHAPES), rng.choice(_POSITIONS)
        if kind == 0:
            lines.append(f"A {c} {s} at the {p} of the image, {rng.choice(_FILLER)} {s}.")
        elif kind == 1:
            box = sorted(rng.randrange(0, 1000) for _ in range(4))
            lines.append(
                json.dumps({"bbox_2d": [box[0], box[1], box[2], box[3]], "label": f"{c} {s}"})
            )
        elif kind == 2:
            a, b = sorted(rng.sample(range(1, 17), 2))
            lines.append(
                f"In the video the {c} {s} {rng.choice(_VIDEO_WORDS)} from frame {a} to "
                f"frame {b}; keyframes: {json.dumps({'keyframes': [a, b]})}"
            )
        elif kind == 3:
            words_ = rng.sample(_DOC_WORDS, 5)
            lines.append(
                f"{words_[0].capitalize()} {rng.randrange(1, 100)}: the {words_[1]} of the "
                f"{words_[2]} shows {rng.randrange(0, 10000)} in {words_[3]} {words_[4]}."
            )
        elif kind == 4:  # the body of a compact T-CoT (tags are added tokens: not here)
            lines.append(f"{c} {s} {p} {_evidence_line(rng, c, s, p)} {c} {s} {c} {s} {p}")
        else:
            lines.append(f"{rng.choice(_INSTRUCTIONS)} {' '.join(rng.sample(words, 8))}")
    # The project's fixed prompt texts, repeated so that BPE merges them: a tiny Reasoner
    # reads them in every prompt (~500 tokens each without, ~300 with).
    return lines + _prompt_texts() * 20


def _prompt_texts() -> list[str]:
    from ume.tcot import prompts

    return prompts.fixed_texts()


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(vocab_size: int = 1024, seed: int = 0):
    """Train a byte-level BPE on the built-in corpus and wrap it as a transformers tokenizer.

    ``vocab_size`` counts the learned vocabulary before the special tokens are appended. The
    result has the Qwen chat tokens and the project's ``<emb>``/T-CoT tags as single tokens, a
    Qwen-style multimodal chat template, ``<|endoftext|>`` as pad token and left padding.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 300:
        raise ConfigError(
            f"models.tiny.vocab_size = {vocab_size} is too small: the byte alphabet alone has 256 "
            "symbols; use at least 300 (default 1024)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHAT_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in PROJECT_TOKENS])

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "image_token": IMAGE_TOKEN,
            "video_token": VIDEO_TOKEN,
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    for t in SPECIAL_TOKENS:  # each must be one id
        ids = hf_tok.encode(t, add_special_tokens=False)
        if len(ids) != 1:  # pragma: no cover - guards a tokenizers behaviour change
            raise RuntimeError(f"token {t!r} is not a single id in the tiny tokenizer: {ids}")
    return hf_tok


# --------------------------------------------------------------------------- processors
class UmeTinyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor without a video processor (the default one needs torchvision).

    ProcessorMixin derives the sub-processors from this ``__init__`` signature, so only the
    image processor and the tokenizer are saved and loaded. Videos go in as lists of frames.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class UmeTinyQwen3VLProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor without a video processor (see :class:`UmeTinyQwen2VLProcessor`)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class _UmeTinyQwen2VLKey(PretrainedConfig):
    model_type = "ume_tiny_qwen2_vl_processor"


class _UmeTinyQwen3VLKey(PretrainedConfig):
    model_type = "ume_tiny_qwen3_vl_processor"


PROCESSOR_CLASSES: dict[str, type] = {
    "qwen2_vl": UmeTinyQwen2VLProcessor,
    "qwen3_vl": UmeTinyQwen3VLProcessor,
}


def register_processors() -> None:
    """Make ``AutoProcessor.from_pretrained(folder)`` return the tiny processors (idempotent).

    Registered against private config classes, so the real Qwen-VL configs stay mapped to the
    real processors; AutoProcessor finds ours by the ``processor_class`` name saved in the folder.
    Runs on import of this module.
    """
    AutoProcessor.register(_UmeTinyQwen2VLKey, UmeTinyQwen2VLProcessor, exist_ok=True)
    AutoProcessor.register(_UmeTinyQwen3VLKey, UmeTinyQwen3VLProcessor, exist_ok=True)


register_processors()


def patch_size(family: Family, cfg: TinyModelConfig | None = None) -> int:
    """The vision patch side of a tiny ``family`` model: ``models.tiny.patch_size`` or the
    family's own."""
    _check_family(family)
    cfg = cfg or TinyModelConfig()
    return cfg.patch_size or PATCH_SIZE[family]


def make_image_processor(family: Family, cfg: TinyModelConfig | None = None):
    """``Qwen2VLImageProcessorPil`` with the tiny patch size and wide pixel bounds (the
    ``budgets`` section sets every input's own bounds when inputs are built)."""
    from transformers import Qwen2VLImageProcessorPil

    cfg = cfg or TinyModelConfig()
    patch = patch_size(family, cfg)
    factor = patch * MERGE_SIZE
    return Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
        min_pixels=factor * factor,
        max_pixels=(factor * MAX_TOKENS_SIDE) ** 2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def make_processor(family: Family, tokenizer, cfg: TinyModelConfig | None = None):
    """The tiny processor (image processor + tokenizer + chat template) of ``family``."""
    _check_family(family)
    return PROCESSOR_CLASSES[family](
        image_processor=make_image_processor(family, cfg),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


# --------------------------------------------------------------------------- config + model
def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(
            f"models.<role>.family = {family!r} is not supported; allowed: {', '.join(FAMILIES)}"
        )


def _check_shape(cfg: TinyModelConfig) -> int:
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(
            f"models.tiny.hidden_size ({cfg.hidden_size}) must be divisible by "
            f"models.tiny.num_heads ({cfg.num_heads})"
        )
    if cfg.num_heads % cfg.num_kv_heads:
        raise ConfigError(
            f"models.tiny.num_heads ({cfg.num_heads}) must be divisible by "
            f"models.tiny.num_kv_heads ({cfg.num_kv_heads})"
        )
    head_dim = cfg.hidden_size // cfg.num_heads
    if head_dim % 2 or head_dim < 8:
        raise ConfigError(
            f"head_dim = models.tiny.hidden_size / models.tiny.num_heads = {head_dim} must be even "
            "and at least 8 (M-RoPE splits head_dim/2 into 3 sections)"
        )
    if cfg.num_layers < 1 or cfg.vision_depth < 1:
        raise ConfigError("models.tiny.num_layers and models.tiny.vision_depth must be >= 1")
    return head_dim


def _mrope_section(head_dim: int) -> list[int]:
    """Temporal/height/width rotary sections summing to head_dim/2 (e.g. 16 -> [4, 2, 2])."""
    half = head_dim // 2
    hw = max(1, (half * 5) // 16)
    return [half - 2 * hw, hw, hw]


def make_config(family: Family, cfg: TinyModelConfig, tokenizer):
    """The transformers config of a tiny model whose token ids match ``tokenizer``."""
    from transformers import Qwen2VLConfig, Qwen3VLConfig

    _check_family(family)
    head_dim = _check_shape(cfg)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in CHAT_TOKENS}
    vocab = len(tokenizer)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": _mrope_section(head_dim),
    }
    text = {
        "vocab_size": vocab,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6,
        "initializer_range": cfg.initializer_range,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
    }
    vision_width = cfg.vision_hidden_size
    vision_heads = cfg.vision_heads
    patch = patch_size(family, cfg)
    tokens = {
        "image_token_id": ids[IMAGE_TOKEN],
        "video_token_id": ids[VIDEO_TOKEN],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }
    if family == "qwen3_vl":
        n_deep = max(1, min(3, cfg.vision_depth, cfg.num_layers))
        deep = sorted(
            {round(i * (cfg.vision_depth - 1) / max(1, n_deep - 1)) for i in range(n_deep)}
        )
        text.update(head_dim=head_dim, rope_parameters={**rope, "mrope_interleaved": True})
        text.pop("bos_token_id")
        text.pop("eos_token_id")
        vision = {
            "depth": cfg.vision_depth,
            "hidden_size": vision_width,
            "intermediate_size": 2 * vision_width,
            "num_heads": vision_heads,
            "patch_size": patch,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            "out_hidden_size": cfg.hidden_size,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": deep,
            "initializer_range": cfg.initializer_range,
        }
        config = Qwen3VLConfig(text_config=text, vision_config=vision, **tokens)
    else:
        text.update(rope_parameters=rope)
        vision = {
            "depth": cfg.vision_depth,
            "embed_dim": vision_width,
            "hidden_size": cfg.hidden_size,
            "mlp_ratio": 2,
            "num_heads": vision_heads,
            "patch_size": patch,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": 2,
            "initializer_range": cfg.initializer_range,
        }
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    config.initializer_range = cfg.initializer_range
    config.bos_token_id = ids["<|endoftext|>"]
    config.eos_token_id = ids[EOS_TOKEN]
    config.pad_token_id = ids[PAD_TOKEN]
    return config


def model_class(family: Family) -> type:
    """The transformers model class of ``family``."""
    import transformers

    _check_family(family)
    name = {
        "qwen3_vl": "Qwen3VLForConditionalGeneration",
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
    }[family]
    return getattr(transformers, name)


def make_tiny(family: Family, cfg: TinyModelConfig | None = None) -> tuple[Any, Any]:
    """Build the tiny model and processor in memory (no files): ``(model, processor)``."""
    import torch

    cfg = cfg or TinyModelConfig()
    tokenizer = train_tokenizer(cfg.vocab_size, cfg.seed)
    processor = make_processor(family, tokenizer, cfg)
    config = make_config(family, cfg, tokenizer)
    torch.manual_seed(cfg.seed)
    model = model_class(family)(config)
    model.eval()
    gen = model.generation_config
    gen.eos_token_id = [config.eos_token_id, config.bos_token_id]
    gen.pad_token_id = config.pad_token_id
    gen.bos_token_id = config.bos_token_id
    gen.do_sample = False
    return model, processor


def build_tiny(family: Family, cfg: TinyModelConfig | None, out_dir: str | Path) -> Path:
    """Build a tiny ``family`` model and save model, processor and tokenizer into ``out_dir``.

    The folder is written atomically (a half-built folder never appears) and holds a
    ``ume_tiny.json`` describing what was built. Same ``cfg`` (seed included) -> identical files.
    """
    cfg = cfg or TinyModelConfig()
    from transformers.utils import logging as hf_logging

    out_dir = Path(out_dir)
    model, processor = make_tiny(family, cfg)
    with atomic_path(out_dir, is_dir=True) as tmp:
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        n_params = sum(p.numel() for p in model.parameters())
        info = {
            "family": family,
            "model_class": type(model).__name__,
            "processor_class": type(processor).__name__,
            "tiny": cfg.model_dump(),
            "num_parameters": n_params,
            "vocab_size": len(processor.tokenizer),
            "special_tokens": {
                t: processor.tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS
            },
            "patch_size": patch_size(family, cfg),
            "weights_sha256": {f.name: file_sha256(f) for f in sorted(tmp.glob("*.safetensors"))},
        }
        (tmp / TINY_INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return out_dir


def read_tiny_info(folder: str | Path) -> dict[str, Any] | None:
    """The ``ume_tiny.json`` of a tiny model folder, or None for a real backbone."""
    p = Path(folder) / TINY_INFO_NAME
    return json.loads(p.read_text()) if p.is_file() else None
