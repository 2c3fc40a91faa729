"""The Embedder: a Qwen-VL backbone whose embedding is the hidden state at ``<emb>``.

Wraps any supported backbone, tiny or real (:data:`~ume.models.backbone.SUPPORTED_MODEL_TYPES`):

- ``<emb>`` is put into the tokenizer if missing; its input-embedding row is initialised to
  the mean of the existing rows (the embedding matrix is resized when it has no spare row);
- ``forward`` runs the backbone's multimodal model (no LM head) and returns the last-layer
  hidden state at the **last** ``<emb>`` of each row, L2-normalised: [B, D], float32;
- ``encode`` is the batched, no-grad API: inputs built with :func:`ume.inputs.build_input`,
  grouped by length inside windows (less padding), results in input order;
- LoRA through peft on the language model's linear layers only (vision tower frozen);
  ``save_merged`` writes a plain model folder with the adapters merged in, which
  :func:`~ume.models.backbone.load_backbone` reads back.

>>> emb = Embedder.from_pretrained(folder, lora=cfg.train_embedder.lora)  # doctest: +SKIP
>>> z = emb.encode(items, tcots, mode="full")                             # doctest: +SKIP
>>> z.shape                                                               # doctest: +SKIP
torch.Size([len(items), hidden_size])
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ume.config import LoraConfig
from ume.errors import ConfigError, DataError
from ume.inputs import EMB_TOKEN, BuiltInput, PixelBudget, build_input, collate, input_length
from ume.io import atomic_path
from ume.items import Item
from ume.models.backbone import SUPPORTED_MODEL_TYPES, load_backbone

EMBEDDER_INFO_NAME = "ume_embedder.json"
_LORA_KEY = "train_embedder.lora"


class Embedder(torch.nn.Module):
    """Embedding model around a Qwen-VL ``model`` and its ``processor``.

    ``max_length``: token limit per input (see :func:`ume.inputs.collate`); ``role``: the
    ``models.<role>`` config key named in errors.
    """

    def __init__(
        self, model, processor, *, max_length: int | None = None, role: str = "embedder"
    ) -> None:
        super().__init__()
        self.role = role
        _check_backbone(model, processor, role)
        self.model = model
        self.processor = processor
        self.max_length = max_length
        self.emb_token_id = _ensure_emb_token(model, processor)
        self.last_problems: list[list[str]] = []  # per input of the last encode(), input order
        self.train(model.training)  # a Module starts in training mode; follow the backbone

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        lora: LoraConfig | None = None,
        role: str = "embedder",
        max_length: int | None = None,
        device: str | None = None,
        budget: PixelBudget | None = None,
    ) -> Embedder:
        """Load a local backbone folder; with an enabled ``lora``, add fresh adapters.

        Without LoRA (``lora`` None or ``enabled: false``) every parameter but the vision
        tower's stays trainable (full fine-tuning). ``budget``: the pixel budget of its
        processor (config ``budgets``; see :func:`~ume.models.backbone.load_backbone`).
        """
        model, processor = load_backbone(
            folder,
            dtype=dtype,
            attn_implementation=attn_implementation,
            role=role,
            device=device,
            budget=budget,
        )
        emb = cls(model, processor, max_length=max_length, role=role)
        if lora is not None and lora.enabled:
            emb.add_lora(lora)
        else:
            emb.freeze_vision()
        return emb

    def add_lora(self, cfg: LoraConfig) -> None:
        """Wrap the backbone with peft LoRA adapters on ``cfg.target_modules`` of the LM only."""
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        if self.is_peft:
            raise ConfigError(f"{_LORA_KEY}: the Embedder already has LoRA adapters")
        base = self.base_model
        prefix = _module_name(base, _inner(base).language_model)
        names = "|".join(re.escape(m) for m in cfg.target_modules)
        pattern = rf"{re.escape(prefix)}\.(?:.*\.)?(?:{names})"
        hits = [
            n
            for n, m in base.named_modules()
            if isinstance(m, torch.nn.Linear) and re.fullmatch(pattern, n)
        ]
        if not hits:
            raise ConfigError(
                f"{_LORA_KEY}.target_modules = {cfg.target_modules} matches no linear layer of "
                f"the language model ({prefix}); use names like q_proj, k_proj, v_proj, o_proj, "
                "gate_proj, up_proj, down_proj"
            )
        peft_cfg = PeftLoraConfig(
            r=cfg.r,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=pattern,
            bias="none",
        )
        self.model = get_peft_model(base, peft_cfg)  # freezes every non-LoRA parameter
        self.freeze_vision()

    def freeze_vision(self) -> None:
        for p in _inner(self.base_model).visual.parameters():
            p.requires_grad_(False)

    def gradient_checkpointing_enable(self) -> None:
        """Recompute activations in backward (non-reentrant: works with frozen inputs)."""
        self.base_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        self.base_model.config.use_cache = False

    # ------------------------------------------------------------------ properties
    @property
    def is_peft(self) -> bool:
        return hasattr(self.model, "peft_config")

    @property
    def base_model(self):
        """The transformers ``...ForConditionalGeneration`` (inside peft's wrapper, if any)."""
        return self.model.get_base_model() if self.is_peft else self.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ embedding
    def forward(self, **batch: Any) -> torch.Tensor:
        """Embeddings of a collated batch (:func:`ume.inputs.collate`): [B, D] float32, unit norm.

        ``input_ids`` [B, T] must hold ``<emb>`` in every row; the hidden state at its last
        occurrence (after the final norm) is the embedding.
        """
        inner = _inner(self.base_model)
        accepted = _accepted_kwargs(inner)
        kw = {k: v.to(self.device) for k, v in batch.items() if k in accepted}
        if "pixel_values" in kw:
            kw["pixel_values"] = kw["pixel_values"].to(self.dtype)
        if "use_cache" in accepted:
            kw["use_cache"] = False
        hidden = inner(**kw).last_hidden_state  # [B, T, D]
        ids = kw["input_ids"]  # [B, T]
        is_emb = ids == self.emb_token_id
        if not bool(is_emb.any(1).all()):
            rows = (~is_emb.any(1)).nonzero().flatten().tolist()
            raise DataError(
                f"rows {rows} of the batch hold no {EMB_TOKEN} token; build inputs with "
                "ume.inputs.build_input (the assistant turn is <emb>)"
            )
        t = ids.shape[1]
        last = t - 1 - is_emb.flip(1).int().argmax(1)  # [B] position of the last <emb>
        h = hidden[torch.arange(ids.shape[0], device=ids.device), last]  # [B, D]
        return F.normalize(h.float(), dim=-1)

    def embed_built(self, built: list[BuiltInput]) -> torch.Tensor:
        """Collate + forward; keeps the graph when grad is enabled. [len(built), D]"""
        return self(**collate(built, self.processor, max_length=self.max_length))

    @torch.no_grad()
    def encode(
        self,
        items: list[Item],
        tcots: list[str | None],
        *,
        mode: str = "full",
        batch_size: int = 16,
        group_by_length: bool = True,
        frame_base: int = 1,
        window: int = 64,
    ) -> torch.Tensor:
        """Embeddings of ``items`` with their T-CoTs, no grad, eval mode: [N, D], input order.

        Inputs are built ``window`` batches at a time (bounded memory on large corpora);
        with ``group_by_length`` each window is sorted by token length so that a batch pads
        to similar lengths. The problems met by the builder land in ``last_problems``.
        """
        if len(items) != len(tcots):
            raise ValueError(f"encode: {len(items)} items but {len(tcots)} T-CoTs")
        if batch_size < 1:
            raise ConfigError(f"encode: batch_size must be >= 1, got {batch_size}")
        out: torch.Tensor | None = None
        self.last_problems = []
        was_training = self.model.training
        self.eval()
        try:
            step = batch_size * max(1, window)
            for start in range(0, len(items), step):
                idx = list(range(start, min(start + step, len(items))))
                built = [
                    build_input(items[i], tcots[i], mode=mode, frame_base=frame_base) for i in idx
                ]
                self.last_problems += [b.problems for b in built]
                order = list(range(len(idx)))
                if group_by_length:
                    lengths = [input_length(b, self.processor) for b in built]
                    order.sort(key=lambda j: -lengths[j])
                for b0 in range(0, len(order), batch_size):
                    chunk = order[b0 : b0 + batch_size]
                    z = self.embed_built([built[j] for j in chunk])  # [len(chunk), D]
                    if out is None:
                        out = torch.empty(len(items), z.shape[1], dtype=z.dtype)
                    out[[idx[j] for j in chunk]] = z.cpu()
        finally:
            self.train(was_training)
        if out is None:
            return torch.empty(0, self.base_model.config.get_text_config().hidden_size)
        return out

    # ------------------------------------------------------------------ saving
    def save_merged(self, out_dir: str | Path) -> Path:
        """Save a plain model folder (LoRA merged in) + processor, atomically.

        The live model is left untouched (merged weights are computed into a separate
        state dict on the CPU), so training can go on after a save.
        """
        base = self.base_model
        state = _merged_state_dict(base) if self.is_peft else base.state_dict()
        out_dir = Path(out_dir)
        with atomic_path(out_dir, is_dir=True) as tmp:
            base.save_pretrained(tmp, state_dict=state)
            self.processor.save_pretrained(tmp)
            info = {
                "emb_token": EMB_TOKEN,
                "emb_token_id": self.emb_token_id,
                "merged_lora": self.is_peft,
                "lora": _lora_info(self.model) if self.is_peft else None,
            }
            (tmp / EMBEDDER_INFO_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        return out_dir


# --------------------------------------------------------------------------- helpers
def _inner(model):
    """The multimodal model inside a ``...ForConditionalGeneration`` (``.visual``, ``.language_model``)."""
    return model.model


def _check_backbone(model, processor, role: str) -> None:
    inner = getattr(model, "model", None)
    if not (hasattr(inner, "visual") and hasattr(inner, "language_model")):
        raise ConfigError(
            f"models.{role}: {type(model).__name__} is not a supported Qwen-VL model (needs a "
            "vision tower model.visual and a language model model.language_model); use one of "
            f"the Qwen-VL families {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if not (hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")):
        raise ConfigError(
            f"models.{role}: {type(processor).__name__} is not a multimodal processor (needs an "
            "image processor and a tokenizer); copy the whole checkpoint folder"
        )


def _ensure_emb_token(model, processor) -> int:
    """The id of ``<emb>``, adding the token (and an initialised embedding row) if missing."""
    tok = processor.tokenizer
    ids = tok.encode(EMB_TOKEN, add_special_tokens=False)
    if len(ids) == 1 and ids[0] != tok.unk_token_id:
        return ids[0]
    tok.add_tokens([EMB_TOKEN], special_tokens=True)
    new_id = tok.convert_tokens_to_ids(EMB_TOKEN)
    emb = model.get_input_embeddings()
    if new_id >= emb.weight.shape[0]:
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        emb = model.get_input_embeddings()
    with torch.no_grad():  # a real checkpoint's spare rows are untrained: use the mean row
        emb.weight[new_id] = emb.weight[:new_id].float().mean(0).to(emb.weight.dtype)
    return new_id


def _module_name(root, module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return name
    raise ConfigError("models.embedder: the language model is not a submodule of the backbone")


_ACCEPTED: dict[type, frozenset[str]] = {}


def _accepted_kwargs(module) -> frozenset[str]:
    cls = type(module)
    if cls not in _ACCEPTED:
        _ACCEPTED[cls] = frozenset(inspect.signature(cls.forward).parameters)
    return _ACCEPTED[cls]


def _merged_state_dict(base) -> dict[str, torch.Tensor]:
    """``base``'s state dict with each LoRA layer's weight merged (W + delta) and no lora_ keys."""
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    for name, m in base.named_modules():
        if isinstance(m, LoraLayer):
            w = m.get_base_layer().weight
            delta = sum(
                (m.get_delta_weight(a).float() for a in m.active_adapters if a in m.lora_A),
                torch.zeros((), device=w.device),
            )
            merged[f"{name}.weight"] = (w.detach().float() + delta).to(w.dtype).cpu()
    out: dict[str, torch.Tensor] = {}
    for k, v in base.state_dict().items():
        if "lora_" in k:
            continue
        k = k.replace(".base_layer.", ".")
        out[k] = merged.get(k, v)
    return out


def _lora_info(model) -> dict[str, Any]:
    cfg = model.peft_config[model.active_adapter]
    return {
        "r": cfg.r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "target_modules": str(cfg.target_modules),
    }
