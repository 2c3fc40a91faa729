"""The local chat model: one transformers MLLM writing replies, for every role that writes text.

The annotator (T-CoTs and relevance verdicts), the evaluation Reasoner (T-CoTs) and the
EG-RL Discriminator (which candidate) each take a :class:`~ume.clients.ChatModel`: this
class for a model in the process, :class:`~ume.clients.ServerClient` for one behind a
server. Generation is batched and left-padded through the processor
(:func:`~ume.models.backbone.chat_generate`); chats are sorted by size (images, text length)
before batching so that a batch pads little, and replies come back in the input order.

The weights load on first use, on this process's device (:func:`~ume.models.device.choose_device`),
frozen; a pickled model (TRL and multiprocessing may pickle reward functions) leaves them behind.

>>> chat = LocalChatModel(folder, role="discriminator", batch_size=16)  # doctest: +SKIP
>>> chat.generate(chats, max_new_tokens=8)                               # doctest: +SKIP
[('Candidate 2', 3), ...]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ume.models.device import choose_device
from ume.progress import progress


def chat_size(chat: list[dict]) -> tuple[int, int]:
    """(images, text characters) of a chat: a cheap proxy of its prompt length."""
    n_img = n_chr = 0
    for msg in chat:
        content = msg.get("content")
        if isinstance(content, str):
            n_chr += len(content)
            continue
        for part in content or ():
            if part.get("type") == "image" or "image" in part:
                n_img += 1
            else:
                n_chr += len(part.get("text", ""))
    return n_img, n_chr


class LocalChatModel:
    """A local transformers chat MLLM (``models.<role>``), batched ``generate``.

    ``temperature=0`` decodes greedily; above, batch ``b`` (in size order) samples with seed
    ``seed + b * batch_size``. ``model`` / ``processor``: an already loaded pair (no folder).
    Replies are ``(text, tokens)``, tokens counted by the tokenizer on the text.
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        *,
        role: str,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        batch_size: int = 16,
        temperature: float = 0.0,
        seed: int = 0,
        model: Any = None,
        processor: Any = None,
        budget: Any = None,
    ) -> None:
        self.folder = None if folder is None else str(folder)
        self.budget = budget  # ume.inputs.PixelBudget (config budgets) for the processor
        self.role = role
        self.device_choice = choose_device(dtype, attn_implementation, role=role)
        self.batch_size = max(1, batch_size)
        self.temperature = temperature
        self.seed = seed
        self._loaded = (model, processor) if model is not None else None

    def __getstate__(self) -> dict:
        if self.folder is None:
            return dict(self.__dict__)  # handed a model: nothing to load it back from
        return {**self.__dict__, "_loaded": None}

    @property
    def dtype(self) -> str:
        return self.device_choice.dtype

    @property
    def attn_implementation(self) -> str:
        return self.device_choice.attn_implementation

    def loaded(self) -> tuple[Any, Any]:
        """``(model, processor)``, loaded from ``folder`` on first use."""
        if self._loaded is None:
            from ume.models.backbone import load_backbone

            model, processor = load_backbone(
                self.folder,
                dtype=self.dtype,
                attn_implementation=self.attn_implementation,
                role=self.role,
                device=self.device_choice.device,
                budget=self.budget,
            )
            model.requires_grad_(False)
            self._loaded = (model, processor)
        return self._loaded

    @property
    def tokenizer(self):
        return self.loaded()[1].tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(
        self, chats: Sequence[list[dict]], *, max_new_tokens: int, on_result=None
    ) -> list[tuple[str, int]]:
        """Replies in input order; ``on_result(i, reply)`` after each batch, as they come."""
        from ume.models.backbone import chat_generate

        model, processor = self.loaded()
        order = sorted(range(len(chats)), key=lambda i: chat_size(chats[i]))
        out: list[tuple[str, int] | None] = [None] * len(chats)
        with progress(len(chats), f"{self.role} generate", unit="chat") as bar:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                texts = chat_generate(
                    model,
                    processor,
                    [chats[i] for i in idx],
                    max_new_tokens=max_new_tokens,
                    temperature=self.temperature,
                    seed=self.seed + start,
                )
                for i, t in zip(idx, texts, strict=True):
                    out[i] = (t, self.count_tokens(t))
                    if on_result is not None:
                        on_result(i, out[i])
                bar.update(len(idx))
        return out  # type: ignore[return-value]
