"""The frozen models of the EG-RL rewards, in-process or behind an OpenAI-compatible server.

Both kinds have one interface each, so the rewards never know where the model runs:

* Embedder — ``embed_built(list[BuiltInput]) -> Tensor [B, D]`` (unit norm):
  :class:`LocalEmbedder` (:class:`ume.models.embedder.Embedder`, loaded on first use) or
  :class:`ServerEmbedder` (``POST {url}/embeddings`` with chat ``messages``, the form vLLM's
  pooling server accepts for multimodal embedding models; serve the Embedder with
  last-token pooling and a chat template that ends the turn at ``<emb>``).
* Discriminator — ``answer(chats) -> list[str]``: :class:`Discriminator` over a chat model,
  local (:class:`~ume.models.chat.LocalChatModel`, greedy) or a chat-completions server
  (:class:`~ume.clients.ServerClient`), as the annotator and the evaluation Reasoner.

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

from ume.clients import ChatModel, ServerClient, to_openai_messages
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


class Discriminator:
    """The Discriminator: greedy, short answers from a chat model, in this process
    (:class:`~ume.models.chat.LocalChatModel`) or on a server
    (:class:`~ume.clients.ServerClient`)."""

    def __init__(self, model: ChatModel, max_new_tokens: int = 8) -> None:
        self.model = model
        self.max_new_tokens = max_new_tokens

    def answer(self, chats: list[list[dict]]) -> list[str]:
        return [t for t, _ in self.model.generate(chats, max_new_tokens=self.max_new_tokens)]


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
        client = ServerClient(cfg.discriminator_server, "egrl.discriminator_server")
        return Discriminator(client, cfg.discriminator_max_new_tokens)
    if folder is None:
        raise ConfigError("egrl.discriminator_backend: local needs the Discriminator's folder")
    from ume.models.chat import LocalChatModel

    model = LocalChatModel(
        folder,
        role="discriminator",
        dtype=dtype,
        attn_implementation=attn,
        batch_size=cfg.discriminator_batch_size,
    )
    return Discriminator(model, cfg.discriminator_max_new_tokens)
