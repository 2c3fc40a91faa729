"""Resolve, load and run the Qwen-VL backbones: tiny folders or real local checkpoints.

ume never downloads: ``set_offline_env`` (from :mod:`ume.offline`) switches
huggingface_hub/transformers/datasets to offline mode, ``resolve_backbone`` refuses anything that
is not a local folder (a hub id gets an :class:`~ume.errors.OfflineError` saying what to do), and
``load_backbone`` loads with ``local_files_only=True``.

>>> folder = resolve_backbone("embedder", cfg.models.embedder, tiny_dir)  # doctest: +SKIP
>>> model, processor = load_backbone(folder, role="embedder")              # doctest: +SKIP
>>> chat_generate(model, processor, [[{"role": "user", "content": [
...     {"type": "image", "image": "/abs/cat.png"}, {"type": "text", "text": "What is it?"}]}]],
...     max_new_tokens=32)                                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ume.config import BackboneConfig
from ume.errors import ConfigError, DataError, OfflineError
from ume.inputs import PixelBudget, apply_budget, fit_chat_images
from ume.offline import looks_like_hub_id, set_offline_env

# model_type in config.json -> transformers class name (the Qwen-VL families ume supports).
SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}
_DTYPES = ("float32", "bfloat16", "float16")
# Tokens cut from generated text: the end of the turn and padding (T-CoT tags stay).
_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
_TINY_RULE = "base_models"


def _looks_like_hub_id(s: str) -> bool:
    return looks_like_hub_id(s)


def resolve_backbone(role: str, cfg: BackboneConfig, tiny_dir: str | Path | None) -> Path:
    """The local folder to load for ``role``: the built tiny model or ``models.<role>.path``.

    Raises :class:`ConfigError` (naming the key and what to do) when the folder is missing or is
    not a transformers model folder, and :class:`OfflineError` when the path looks like a hub id.
    """
    key = f"models.{role}"
    if cfg.source == "tiny":
        if tiny_dir is None:
            raise ConfigError(
                f"{key}.source is 'tiny' but no tiny model folder was given; "
                f"rule {_TINY_RULE} (python -m ume models) builds it"
            )
        folder = Path(tiny_dir)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{key}.source is 'tiny' but the tiny model {folder} is not built (no "
                f"config.json); rule {_TINY_RULE} (python -m ume models) builds it"
            )
        return folder
    if cfg.source != "path":
        raise ConfigError(f"{key}.source = {cfg.source!r}; allowed: tiny, path")
    if not cfg.path:
        raise ConfigError(
            f"{key}.path: source is 'path' but no local folder is given; set {key}.path to the "
            f"folder of a downloaded checkpoint, or use {key}.source: tiny"
        )
    folder = Path(cfg.path).expanduser()
    if not folder.exists():
        if _looks_like_hub_id(cfg.path):
            raise OfflineError(
                f"{key}.path = {cfg.path!r} looks like a model hub id, and ume never downloads: "
                "download the checkpoint on a machine with internet (e.g. `hf download "
                f"{cfg.path} --local-dir /models/{cfg.path.split('/')[-1]}`), copy it here and "
                f"set {key}.path to that local folder"
            )
        raise ConfigError(
            f"{key}.path = {cfg.path!r}: folder not found; set {key}.path to the local folder of "
            "the checkpoint (the one holding config.json)"
        )
    if not folder.is_dir() or not (folder / "config.json").is_file():
        raise ConfigError(
            f"{key}.path = {cfg.path!r} is not a model folder (no config.json in it); set "
            f"{key}.path to the folder that save_pretrained / `hf download` wrote"
        )
    return folder


def _model_type(folder: Path, role: str) -> str:
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"models.{role}: cannot read {folder / 'config.json'}: {e}") from e
    mt = cfg.get("model_type")
    if mt not in SUPPORTED_MODEL_TYPES:
        raise ConfigError(
            f"models.{role}: {folder} holds a {mt!r} model ({', '.join(cfg.get('architectures') or [])}); "
            f"ume supports the Qwen-VL families: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return mt


def _check_attn(attn_implementation: str, role: str) -> None:
    allowed = ("sdpa", "eager", "flash_attention_2")
    if attn_implementation not in allowed:
        raise ConfigError(
            f"models.{role}.attn_implementation = {attn_implementation!r}; allowed: {', '.join(allowed)}"
        )
    if attn_implementation == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        # Checked here: transformers would otherwise try to fetch a kernel from the hub.
        if not is_flash_attn_2_available():
            raise ConfigError(
                f"models.{role}.attn_implementation = 'flash_attention_2' but flash-attn is not "
                "usable here (not installed, or no CUDA GPU); set it to 'sdpa'"
            )


def _load_processor(folder: Path, model_type: str, role: str):
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    from ume.models import tiny  # registers the tiny processors with AutoProcessor

    try:
        proc = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (ImportError, ValueError, TypeError, OSError) as e:
        # A real checkpoint's processor wants a video processor (torchvision); on a machine
        # without it, fall back to the image-only processor (videos are fed as frames).
        msg = str(e).lower()
        if "torchvision" not in msg and "video" not in msg:
            raise ConfigError(f"models.{role}: cannot load the processor from {folder}: {e}") from e
        proc = None
    if proc is not None and isinstance(proc, ProcessorMixin) and hasattr(proc, "image_processor"):
        return proc
    family = "qwen3_vl" if model_type.startswith("qwen3") else "qwen2_vl"
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    try:
        img = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"models.{role}: {folder} has no image processor config (preprocessor_config.json or "
            "processor_config.json); copy the whole checkpoint folder"
        ) from e
    return tiny.PROCESSOR_CLASSES[family](
        image_processor=img, tokenizer=tok, chat_template=_chat_template(folder, tok)
    )


def load_tokenizer(folder: str | Path, role: str = "reasoner"):
    """Only the tokenizer of a model folder (``backbone.json`` records resolve to theirs):
    what counting tokens needs, without loading weights."""
    from transformers import AutoTokenizer

    set_offline_env()
    folder = Path(folder)
    if folder.name == "backbone.json":  # its path is relative to the record's folder
        folder = (folder.parent / json.loads(folder.read_text())["path"]).resolve()
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ConfigError(f"models.{role}: cannot load the tokenizer from {folder}: {e}") from e


def _chat_template(folder: Path, tokenizer) -> str | None:
    """The checkpoint's chat template: chat_template.jinja/.json, else the tokenizer's."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = folder / "chat_template.json"
    if js.is_file():
        return json.loads(js.read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)


def load_backbone(
    folder: str | Path,
    *,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    role: str = "embedder",
    device: str | None = None,
    budget: PixelBudget | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from a local folder, offline, in eval mode.

    The model class comes from ``model_type`` in config.json (Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
    Qwen3-VL-MoE); anything else raises :class:`ConfigError` naming ``models.<role>``.
    ``budget``: the run's pixel budget (config ``budgets``), given to the processor
    (:func:`ume.inputs.apply_budget`); None keeps the checkpoint's own bounds (a real
    Qwen3-VL allows images of 16k tokens: every stage passes the budget).
    """
    set_offline_env()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"models.{role}: {folder} is not a model folder (no config.json); "
            f"for source: tiny rule {_TINY_RULE} builds it, for source: path set models.{role}.path"
        )
    if dtype not in _DTYPES:
        raise ConfigError(f"models.{role}.dtype = {dtype!r}; allowed: {', '.join(_DTYPES)}")
    _check_attn(attn_implementation, role)
    model_type = _model_type(folder, role)

    import torch
    import transformers

    cls = getattr(transformers, SUPPORTED_MODEL_TYPES[model_type])
    try:
        model = cls.from_pretrained(
            folder,
            dtype=getattr(torch, dtype),
            attn_implementation=attn_implementation,
            local_files_only=True,
        )
    except (ImportError, ValueError) as e:
        if "flash" in str(e).lower():
            raise ConfigError(
                f"models.{role}.attn_implementation = {attn_implementation!r} failed: {e}; "
                "set it to 'sdpa'"
            ) from e
        raise
    except OSError as e:
        raise OfflineError(
            f"models.{role}: loading {folder} needed a file that is not there ({e}); ume never "
            "downloads: copy the complete checkpoint folder"
        ) from e
    if device:
        model.to(device)
    model.eval()
    processor = apply_budget(_load_processor(folder, model_type, role), budget)
    return model, processor


# --------------------------------------------------------------------------- generation
def _load_image(src: Any):
    from PIL import Image

    if isinstance(src, Image.Image):
        return src.convert("RGB")
    path = Path(str(src).removeprefix("file://"))
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from e


def conversation_images(conversation: Sequence[dict]) -> list:
    """The images of a chat in order of appearance (parts ``{"type": "image", "image": ...}``)."""
    out = []
    for msg in conversation:
        content = msg.get("content")
        if isinstance(content, str) or content is None:
            continue
        for part in content:
            if part.get("type") == "image" or "image" in part:
                src = part.get("image", part.get("url", part.get("path")))
                if src is None:
                    raise DataError(f"image part without an 'image' path: {part!r}")
                out.append(_load_image(src))
    return out


def _text_only_template(conversation: Sequence[dict]) -> list[dict]:
    """Drop the image payloads (paths) so the template sees only ``{"type": "image"}``."""
    out = []
    for msg in conversation:
        content = msg.get("content")
        if isinstance(content, list):
            content = [
                {"type": "image"} if (p.get("type") == "image" or "image" in p) else p
                for p in content
            ]
        out.append({**msg, "content": content})
    return out


def _stop_ids(tokenizer) -> list[int]:
    ids = []
    for t in _STOP_TOKENS:
        i = tokenizer.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tokenizer.unk_token_id and i not in ids:
            ids.append(i)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def decode_completion(tokenizer, ids: Sequence[int], stop_ids: Sequence[int]) -> str:
    """Decode generated ids up to the first stop token; special tokens other than the stop and
    pad tokens (e.g. T-CoT tags, if a tokenizer marks them special) are kept."""
    ids = list(ids)
    stop = set(stop_ids)
    for i, t in enumerate(ids):
        if t in stop:
            ids = ids[:i]
            break
    pad = tokenizer.pad_token_id
    ids = [t for t in ids if t != pad]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    for t in _STOP_TOKENS:
        text = text.replace(t, "")
    return text.strip()


def chat_generate(
    model,
    processor,
    conversations: list[list[dict]],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
) -> list[str]:
    """Generate one assistant reply per chat; returns the decoded completions only.

    Chats are HF-format messages whose content parts are ``{"type": "text", "text": ...}`` or
    ``{"type": "image", "image": "/abs/path.png"}`` (a video is given as several image parts).
    Batches are left-padded; ``temperature=0`` is greedy decoding, otherwise sampling seeded by
    ``seed``. ``batch_size`` splits the chats into chunks (default: one batch).
    """
    import torch

    if not conversations:
        return []
    if batch_size and len(conversations) > batch_size:
        out: list[str] = []
        for i in range(0, len(conversations), batch_size):
            out += chat_generate(
                model,
                processor,
                conversations[i : i + batch_size],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed + i,
            )
        return out

    tokenizer = processor.tokenizer
    texts, images = [], []
    for conv in conversations:
        texts.append(
            processor.apply_chat_template(
                _text_only_template(conv), tokenize=False, add_generation_prompt=True
            )
        )
        # frames (image parts labelled "Frame k:") to the per-frame budget, others to the image one
        images += fit_chat_images(conv, conversation_images(conv), processor)
    inputs = processor(
        text=texts,
        images=images or None,
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )
    inputs = inputs.to(model.device)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    stop_ids = _stop_ids(tokenizer)
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "eos_token_id": stop_ids,
        "pad_token_id": tokenizer.pad_token_id
        if tokenizer.pad_token_id is not None
        else stop_ids[0],
    }
    if temperature and temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0)
        torch.manual_seed(seed)
    else:
        gen_kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    with torch.inference_mode():
        out_ids = model.generate(**inputs, **gen_kwargs)
    new = out_ids[:, inputs["input_ids"].shape[1] :].tolist()
    return [decode_completion(tokenizer, row, stop_ids) for row in new]


# --------------------------------------------------------------------------- processors, servers
def load_processor(folder: str | Path, *, role: str, budget: PixelBudget | None = None):
    """The processor of a model folder alone (no weights), with the pixel budget: what a
    client needs to prepare inputs for a server that serves that model."""
    set_offline_env()
    folder = Path(folder)
    return apply_budget(_load_processor(folder, _model_type(folder, role), role), budget)


def served_models(url: str, *, api_key: str | None = None, timeout_s: float = 30.0) -> list[dict]:
    """``GET {url}/models`` of an OpenAI-compatible server: its ``data`` entries (``id``; vLLM
    adds ``root``, the weights it loaded)."""
    import urllib.request

    req = urllib.request.Request(url.rstrip("/") + "/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        body = json.loads(r.read().decode("utf-8"))
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError(f"{url}/models answered without a 'data' list: {str(body)[:200]}")
    return [m for m in data if isinstance(m, dict)]


def _same_weights(root: str, expected: Path) -> bool:
    """Does a server's ``root`` name the folder ``expected``? The same path when the server's
    file system is this one; else the same last three path components (a cluster mounts one
    folder under different prefixes)."""
    r = Path(root).expanduser()
    if r.exists() and expected.exists():
        return r.resolve() == expected.resolve()
    tail = 3
    return Path(root).parts[-tail:] == expected.resolve().parts[-tail:]


def check_served_model(
    cfg: Any, key: str, expected: str | Path | None = None, *, what: str = ""
) -> dict:
    """Before any request: the server at ``<key>.url`` serves ``<key>.model``, and, when the
    server names its weights (vLLM's ``root``) and ``expected`` (a model folder, e.g.
    ``models.discriminator.path`` or the trained Embedder) is given, those are the weights.

    The served name is a cache identity (T-CoTs, embeddings): a name that is not served, or
    that serves other weights than the config says, is a :class:`ConfigError` naming the key
    (``what`` names the expected model in the message). Returns the served entry."""
    import os
    import urllib.error

    try:
        models = served_models(
            cfg.url, api_key=os.environ.get(cfg.api_key_env), timeout_s=min(cfg.timeout_s, 60.0)
        )
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise ConfigError(
            f"{key}.url = {cfg.url!r}: cannot list the served models ({e}); start the server, "
            f"or fix {key}.url"
        ) from e
    by_id = {str(m.get("id")): m for m in models}
    if cfg.model not in by_id:
        raise ConfigError(
            f"{key}.model = {cfg.model!r} is not served by {cfg.url} (it serves "
            f"{sorted(by_id) or 'nothing'}); the served name is the cache identity: set "
            f"{key}.model to the --served-model-name the server was started with, or restart it "
            "under the configured name"
        )
    entry = by_id[cfg.model]
    root = entry.get("root")
    if expected is not None and isinstance(root, str) and root:
        exp = Path(expected)
        if not _same_weights(root, exp):
            raise ConfigError(
                f"{key}.model = {cfg.model!r}: the server at {cfg.url} serves it from {root}, "
                f"but the configured {what or 'model'} is {exp}; serve {exp} under that name, "
                f"or point {key} at the server that does (one name per weights)"
            )
    return entry
