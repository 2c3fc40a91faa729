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
import os
from pathlib import Path

import torch

from ume.config import EGRLConfig, ServerConfig
from ume.errors import ConfigError, UmeError
from ume.serving import ServerClient, to_openai_messages

log = logging.getLogger(__name__)


def _device() -> str:
    """This process's GPU (``LOCAL_RANK`` under torchrun/accelerate), else the CPU."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


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
            from ume.models.embedder import Embedder

            m = Embedder.from_pretrained(
                self.folder,
                dtype=self.dtype,
                attn_implementation=self.attn_implementation,
                max_length=self.max_length,
                device=_device(),
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
        reply = self.http.post(
            "/embeddings",
            {
                "model": self.http.cfg.model,
                "messages": to_openai_messages(b.messages, b.images),
                "encoding_format": "float",
                "add_generation_prompt": False,
            },
        )
        try:
            vec = torch.tensor(reply["data"][0]["embedding"], dtype=torch.float32)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise UmeError(f"{self.http.base}/embeddings: not an embeddings answer ({e!r})") from e
        return torch.nn.functional.normalize(vec, dim=0)

    def embed_built(self, built: list) -> torch.Tensor:
        return torch.stack(self.http.map(self._one, built))


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

            model, proc = load_backbone(
                self.folder,
                dtype=self.dtype,
                attn_implementation=self.attn_implementation,
                role="discriminator",
                device=_device(),
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


class OracleDiscriminator:
    """The Discriminator of the synthetic world: a rule-based judge that reads the same chat
    (:func:`~ume.tcot.prompts.discriminator_messages`) and names the candidate whose T-CoT
    agrees best with the query T-CoT (:func:`~ume.annotate.backends.oracle_agreement`:
    content-word overlap, a colour or shape clash counting against).

    Why it exists: on the embedded default the Discriminator model is a tiny random network
    that names no candidate (every process reward would be a miss), and a tiny network cannot
    learn listwise matching within the miniature's minutes. The synthetic world's ground truth
    is a closed vocabulary (colours, shapes, grid cells, events, counts), so a judge that
    compares the words the T-CoTs state is exact there: a rollout that states what its input
    shows gets picked with its positives, one that states something else does not. It never
    sees the labels: ties (a query T-CoT stating nothing) are broken at random, seeded by the
    chat, so shuffled and unshuffled candidates are judged alike (no position bias). Real
    backbones keep the frozen MLLM (``local`` / ``server``); the config allows ``oracle`` only
    with ``data.source: synthetic``.

    >>> from ume.tcot.prompts import discriminator_messages
    >>> chat = discriminator_messages("<answer> red circle </answer>",
    ...     ["<answer> blue circle </answer>", "<answer> red circle left </answer>"])
    >>> OracleDiscriminator().answer([chat])
    ['2']
    """

    name = "oracle"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.unreadable = 0

    def _one(self, chat: list[dict]) -> str:
        import hashlib
        import random

        from ume.annotate.backends import oracle_agreement, tcot_words
        from ume.tcot.prompts import read_discriminator_messages

        read = read_discriminator_messages(chat)
        if read is None:  # not a listwise chat: answer like a model that cannot read it
            self.unreadable += 1
            return "(unreadable question)"
        query, candidates = read
        q = tcot_words(query)
        scores = [oracle_agreement(q, tcot_words(c)) for c in candidates]
        best = max(scores)
        tied = [i for i, v in enumerate(scores) if v == best]
        digest = hashlib.sha256(f"{self.seed}:{query}:{candidates}".encode()).digest()
        return str(random.Random(digest).choice(tied) + 1)

    def answer(self, chats: list[list[dict]]) -> list[str]:
        return [self._one(c) for c in chats]


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
    if cfg.discriminator_backend == "oracle":
        return OracleDiscriminator()
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
