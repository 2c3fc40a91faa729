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

import base64
import io
import json
import logging
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ume.config import EGRLConfig, ServerConfig
from ume.errors import ConfigError, UmeError

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


def _openai_embedding_messages(b) -> list[dict]:
    """A :class:`~ume.inputs.BuiltInput` as OpenAI messages, images inlined as PNG data URLs."""
    images = iter(b.images)
    out = []
    for msg in b.messages:
        parts = []
        for p in msg["content"]:
            if p.get("type") == "image":
                buf = io.BytesIO()
                next(images).save(buf, format="PNG")
                url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append({"type": "text", "text": p.get("text", "")})
        out.append({"role": msg["role"], "content": parts})
    return out


class _Http:
    """Retrying JSON POST with the ServerConfig conventions (key from an env variable)."""

    def __init__(self, cfg: ServerConfig, key: str, path: str) -> None:
        if not cfg.url:
            raise ConfigError(f"{key}.url: give the base URL of the server (http://host:8000/v1)")
        if not cfg.model:
            raise ConfigError(f"{key}.model: name the model the server serves")
        self.cfg = cfg
        self.key = key
        self.endpoint = cfg.url.rstrip("/") + path

    def post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token := os.environ.get(self.cfg.api_key_env):
            headers["Authorization"] = f"Bearer {token}"
        last: Exception | None = None
        for attempt in range(self.cfg.max_retries + 1):
            req = urllib.request.Request(self.endpoint, data=data, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    detail = e.read().decode(errors="replace")[:300]
                    raise UmeError(f"{self.endpoint}: HTTP {e.code}: {detail}") from e
                last = e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
            time.sleep(min(2**attempt * 0.2, 5.0))
        raise UmeError(
            f"{self.endpoint}: no answer after {self.cfg.max_retries + 1} tries ({last}); check "
            f"{self.key}.url and that the server is up"
        )


class ServerEmbedder:
    """An OpenAI-compatible embeddings server (``/v1/embeddings`` with chat ``messages``)."""

    def __init__(self, cfg: ServerConfig, key: str = "egrl.embedder_server") -> None:
        self.http = _Http(cfg, key, "/embeddings")

    def _one(self, b) -> torch.Tensor:
        reply = self.http.post(
            {
                "model": self.http.cfg.model,
                "messages": _openai_embedding_messages(b),
                "encoding_format": "float",
                "add_generation_prompt": False,
            }
        )
        try:
            vec = torch.tensor(reply["data"][0]["embedding"], dtype=torch.float32)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise UmeError(f"{self.http.endpoint}: not an embeddings answer ({e!r})") from e
        return torch.nn.functional.normalize(vec, dim=0)

    def embed_built(self, built: list) -> torch.Tensor:
        with ThreadPoolExecutor(max_workers=max(1, self.http.cfg.concurrency)) as pool:
            return torch.stack(list(pool.map(self._one, built)))


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
        from ume.annotate.backends import ServerAnnotator

        if not cfg.url or not cfg.model:
            raise ConfigError(
                "egrl.discriminator_server: give url and model of the chat server "
                "(discriminator_backend: server)"
            )
        self.client = ServerAnnotator(cfg, temperature=0.0)
        self.max_new_tokens = max_new_tokens

    def answer(self, chats: list[list[dict]]) -> list[str]:
        return self.client._map(chats, self.max_new_tokens)


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
