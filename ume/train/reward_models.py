"""The frozen models of the EG-RL rewards, in-process or behind an OpenAI-compatible server.

Both kinds have one interface each, so the rewards never know where the model runs:

* Embedder — ``embed_built(list[BuiltInput]) -> Tensor [B, D]`` (unit norm):
  :class:`LocalEmbedder` (:class:`ume.models.embedder.Embedder`, loaded on first use) or
  :class:`ServerEmbedder` (``POST {url}/embeddings`` with chat ``messages``, the form vLLM's
  pooling server accepts for multimodal embedding models; serve the Embedder with
  last-token pooling and a chat template that ends the turn at ``<emb>``).
* Discriminator — ``answer(chats) -> list[str]``: :class:`LocalDiscriminator` (greedy
  :func:`~ume.models.backbone.chat_generate`) or :class:`ServerDiscriminator` (chat
  completions, :class:`~ume.annotate.backends.ServerAnnotator`'s client).

Local backends load lazily and drop their weights when pickled (TRL and multiprocessing may
pickle reward functions); server backends hold only their config.

>>> emb = LocalEmbedder("results/default/models/embedder/model")  # doctest: +SKIP
>>> emb.embed_built([build_input(item, tcot)]).shape               # doctest: +SKIP
torch.Size([1, 64])
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ume.clients import ServerClient, to_openai_messages
from ume.config import EGRLConfig, ServerConfig
from ume.errors import ConfigError

log = logging.getLogger(__name__)


class LocalEmbedder:
    """The trained Embedder in this process, frozen (eval mode, no grad)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        max_length: int | None = None,
    ) -> None:
        self.folder = str(folder)
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.max_length = max_length
        self._model = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model": None}

    @property
    def model(self):
        if self._model is None:
            from ume.models.device import choose_device
            from ume.models.embedder import Embedder

            dev = choose_device(self.dtype, self.attn_implementation, role="embedder")
            m = Embedder.from_pretrained(
                self.folder,
                dtype=dev.dtype,
                attn_implementation=dev.attn_implementation,
                max_length=self.max_length,
                device=dev.device,
            )
            m.requires_grad_(False)
            m.eval()
            self._model = m
        return self._model

    @torch.no_grad()
    def embed_built(self, built: list) -> torch.Tensor:
        return self.model.embed_built(built)


class ServerEmbedder:
    """An OpenAI-compatible embeddings server (``/v1/embeddings`` with chat ``messages``)."""

    def __init__(self, cfg: ServerConfig, key: str = "egrl.embedder_server") -> None:
        self.http = ServerClient(cfg, key)

    def _one(self, b) -> torch.Tensor:
        vec = torch.tensor(self.http.embed(to_openai_messages(b.messages, b.images)))
        return torch.nn.functional.normalize(vec, dim=0)

    def embed_built(self, built: list) -> torch.Tensor:
        return torch.stack(self.http.map(self._one, built, desc=f"{self.http.key} embed"))


class LocalDiscriminator:
    """The Discriminator MLLM in this process: greedy, short answers."""

    def __init__(
        self,
        folder: str | Path,
        *,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        max_new_tokens: int = 8,
        batch_size: int = 16,
    ) -> None:
        self.folder = str(folder)
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._loaded = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_loaded": None}

    def _model(self):
        if self._loaded is None:
            from ume.models.backbone import load_backbone
            from ume.models.device import choose_device

            dev = choose_device(self.dtype, self.attn_implementation, role="discriminator")
            model, proc = load_backbone(
                self.folder,
                dtype=dev.dtype,
                attn_implementation=dev.attn_implementation,
                role="discriminator",
                device=dev.device,
            )
            model.requires_grad_(False)
            self._loaded = (model, proc)
        return self._loaded

    def answer(self, chats: list[list[dict]]) -> list[str]:
        from ume.models.backbone import chat_generate

        model, proc = self._model()
        return chat_generate(
            model,
            proc,
            chats,
            max_new_tokens=self.max_new_tokens,
            temperature=0.0,
            batch_size=self.batch_size,
        )


class ServerDiscriminator:
    """An OpenAI-compatible chat-completions server (greedy, ``max_new_tokens`` tokens)."""

    def __init__(self, cfg: ServerConfig, max_new_tokens: int = 8) -> None:
        self.client = ServerClient(cfg, "egrl.discriminator_server")
        self.max_new_tokens = max_new_tokens

    def answer(self, chats: list[list[dict]]) -> list[str]:
        return self.client.map(
            lambda c: self.client.chat(c, max_tokens=self.max_new_tokens)[0], chats
        )


def make_embedder(cfg: EGRLConfig, folder: str | Path | None, *, dtype: str, attn: str):
    """The Embedder backend of ``egrl.embedder_backend`` (``folder``: the trained Embedder)."""
    if cfg.embedder_backend == "server":
        return ServerEmbedder(cfg.embedder_server)
    if folder is None:
        raise ConfigError("egrl.embedder_backend: local needs the trained Embedder's folder")
    return LocalEmbedder(
        folder,
        dtype=dtype,
        attn_implementation=attn,
        max_length=cfg.max_prompt_length + cfg.max_completion_length,
    )


def make_discriminator(cfg: EGRLConfig, folder: str | Path | None, *, dtype: str, attn: str):
    """The Discriminator backend of ``egrl.discriminator_backend`` (None without the reward)."""
    if not cfg.use_process_reward:
        return None
    if cfg.discriminator_backend == "server":
        return ServerDiscriminator(cfg.discriminator_server, cfg.discriminator_max_new_tokens)
    if folder is None:
        raise ConfigError("egrl.discriminator_backend: local needs the Discriminator's folder")
    return LocalDiscriminator(
        folder,
        dtype=dtype,
        attn_implementation=attn,
        max_new_tokens=cfg.discriminator_max_new_tokens,
        batch_size=cfg.discriminator_batch_size,
    )
