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

The Embedder is asked for what it was trained on (:func:`embedder_input`): the input mode
(``train_embedder.tcot_input``), the token limit (``train_embedder.max_length``) and the pixel
budget its training stage recorded in its ``backbone.json``, so that an ablation run is
rewarded on the inputs it was trained on. A server backend prepares inputs with the same
processor and length rule, and checks before any request that the server serves the
configured name from the configured weights (:func:`~ume.models.backbone.check_served_model`).

>>> emb = LocalEmbedder("results/default/models/embedder/model")  # doctest: +SKIP
>>> emb.embed_built([build_input(item, tcot)]).shape               # doctest: +SKIP
torch.Size([1, 64])
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ume.clients import ChatModel, ServerClient, to_openai_messages
from ume.config import EGRLConfig, ServerConfig
from ume.errors import ConfigError, DataError
from ume.inputs import PixelBudget, fit_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedderInput:
    """How the Embedder reads its inputs: as its training stage recorded them."""

    mode: str = "full"
    max_length: int | None = None
    frame_base: int = 1
    budget: PixelBudget | None = None
    source: str = "defaults"  # where the values come from (manifests say)
    extra: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "max_length": self.max_length,
            "frame_base": self.frame_base,
            "budgets": self.budget.to_dict() if self.budget else None,
            "source": self.source,
        }


def _record_of(path: str | Path) -> tuple[dict | None, Path | None]:
    """(the ``backbone.json`` record, its file) of a stage input: the file itself, or a stage
    folder holding one; (None, None) for a bare model folder."""
    p = Path(path)
    f = p if p.is_file() else p / "backbone.json"
    if not f.is_file():
        return None, None
    try:
        return json.loads(f.read_text()), f
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{f}: cannot read the Embedder's record ({e}); rerun its stage") from e


def embedder_input(path: str | Path | None) -> EmbedderInput:
    """What the Embedder at ``path`` (its ``backbone.json``, stage folder or model folder)
    was trained on: the ``input`` entry the training stage writes (``tcot_input``,
    ``max_length``, ``frame_base``, ``budgets``). An Embedder without one (a base model:
    tests, or the untrained Embedder) reads the method's ``full`` input without a limit."""
    if path is None:
        return EmbedderInput(source="no Embedder record: the method's full input")
    rec, f = _record_of(path)
    inp = (rec or {}).get("input")
    if not isinstance(inp, dict):
        return EmbedderInput(source=f"{f or path}: no training record (base model): full input")
    b = inp.get("budgets")
    budget = (
        PixelBudget(
            b["image_min_tokens"],
            b["image_max_tokens"],
            b["video_min_tokens"],
            b["video_max_tokens"],
        )
        if isinstance(b, dict)
        else None
    )
    return EmbedderInput(
        mode=str(inp.get("tcot_input", "full")),
        max_length=inp.get("max_length"),
        frame_base=int(inp.get("frame_base", 1)),
        budget=budget,
        source=str(f),
    )


class LocalEmbedder:
    """The trained Embedder in this process, frozen (eval mode, no grad)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        dtype: str = "float32",
        attn_implementation: str = "sdpa",
        max_length: int | None = None,
        budget: PixelBudget | None = None,
    ) -> None:
        self.folder = str(folder)
        self.dtype = dtype
        self.attn_implementation = attn_implementation
        self.max_length = max_length
        self.budget = budget
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
                budget=self.budget,
            )
            m.requires_grad_(False)
            m.eval()
            self._model = m
        return self._model

    @torch.no_grad()
    def embed_built(self, built: list) -> torch.Tensor:
        return self.model.embed_built(built)


class ServerEmbedder:
    """An OpenAI-compatible embeddings server (``/v1/embeddings`` with chat ``messages``).

    ``folder``: the served Embedder's model folder. Its processor (no weights) fits every
    input to the pixel budget and the length rule before it is sent (``max_length``,
    ``budget``: the Embedder's training record), so that the server embeds what a local
    Embedder would; without a folder, inputs go as built.
    """

    def __init__(
        self,
        cfg: ServerConfig,
        key: str = "egrl.embedder_server",
        *,
        folder: str | Path | None = None,
        max_length: int | None = None,
        budget: PixelBudget | None = None,
    ) -> None:
        self.http = ServerClient(cfg, key)
        self.folder = None if folder is None else str(folder)
        self.max_length = max_length
        self.budget = budget
        self._processor = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_processor": None}

    @property
    def processor(self):
        if self._processor is None and self.folder is not None:
            from ume.models.backbone import load_processor

            self._processor = load_processor(self.folder, role="embedder", budget=self.budget)
        return self._processor

    def _one(self, b) -> torch.Tensor:
        if self.processor is not None:
            b = fit_input(b, self.processor, self.max_length)
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


def make_embedder(
    cfg: EGRLConfig,
    folder: str | Path | None,
    *,
    dtype: str,
    attn: str,
    settings: EmbedderInput | None = None,
    check_server: bool = True,
):
    """The Embedder backend of ``egrl.embedder_backend`` (``folder``: the trained Embedder;
    ``settings``: what it was trained on, :func:`embedder_input`). A server is checked to
    serve the configured name from ``folder`` before any request."""
    s = settings or EmbedderInput()
    if cfg.embedder_backend == "server":
        if check_server:
            from ume.models.backbone import check_served_model

            check_served_model(
                cfg.embedder_server, "egrl.embedder_server", folder, what="trained Embedder"
            )
        return ServerEmbedder(
            cfg.embedder_server, folder=folder, max_length=s.max_length, budget=s.budget
        )
    if folder is None:
        raise ConfigError("egrl.embedder_backend: local needs the trained Embedder's folder")
    return LocalEmbedder(
        folder, dtype=dtype, attn_implementation=attn, max_length=s.max_length, budget=s.budget
    )


def make_discriminator(
    cfg: EGRLConfig,
    folder: str | Path | None,
    *,
    dtype: str,
    attn: str,
    budget: PixelBudget | None = None,
    expected: str | Path | None = None,
    check_server: bool = True,
):
    """The Discriminator backend of ``egrl.discriminator_backend`` (None without the reward);
    a server is checked to serve the configured name (from ``expected``, the configured
    Discriminator's folder, when given) before any request."""
    if not cfg.use_process_reward:
        return None
    if cfg.discriminator_backend == "oracle":
        return OracleDiscriminator()
    if cfg.discriminator_backend == "server":
        if check_server:
            from ume.models.backbone import check_served_model

            check_served_model(
                cfg.discriminator_server,
                "egrl.discriminator_server",
                expected,
                what="Discriminator (models.discriminator.path)",
            )
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
        budget=budget,
    )
    return Discriminator(model, cfg.discriminator_max_new_tokens)
