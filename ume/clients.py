"""One client for OpenAI-compatible servers (vLLM, say): chat completions and embeddings.

Annotator, Reasoner (evaluation), Embedder and Discriminator (EG-RL rewards) all reach a
server through :class:`ServerClient`, configured by a :class:`~ume.config.ServerConfig` and
named by its config key so that every error says which section to fix. Requests go through
the ``openai`` client (timeouts, retries with exponential backoff on connection errors,
timeouts, HTTP 408/409/429 and 5xx, pooled connections); ``cfg.concurrency`` requests are in
flight at once.

A server client is a :class:`ChatModel`, as a local model is
(:class:`ume.models.chat.LocalChatModel`): every role that writes text takes either.

>>> client = ServerClient(cfg.annotate.server, "annotate.server")   # doctest: +SKIP
>>> client.generate(chats, max_new_tokens=256)                       # doctest: +SKIP
[('<thinking> ...', 212), ...]
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ume.config import ServerConfig
from ume.errors import ConfigError, UmeError
from ume.progress import progress

T = TypeVar("T")
R = TypeVar("R")


class ChatModel(Protocol):
    """What writes text for a role: one ``(text, completion tokens)`` per chat, in order.

    Chats are HF content-part messages (``{"type": "text" | "image", ...}``); sampling
    (temperature, seed) is the model's own setting, the length limit the caller's.
    """

    def generate(
        self, chats: Sequence[list[dict]], *, max_new_tokens: int
    ) -> list[tuple[str, int]]: ...


def image_data_url(image: Any) -> str:
    """A PIL image or an image file as a ``data:`` URL (PIL images as PNG)."""
    if hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    mime = mimetypes.guess_type(str(image))[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(image).read_bytes()).decode()


def to_openai_messages(chat: Sequence[dict], images: Iterable[Any] | None = None) -> list[dict]:
    """HF content-part chats -> OpenAI chat messages, images inlined as data URLs.

    An image part carries its image (``{"type": "image", "image": path | PIL}``) or, as in a
    :class:`~ume.inputs.BuiltInput`, is bare and takes the next of ``images``.
    """
    pending = iter(images or ())
    out = []
    for msg in chat:
        content = msg["content"]
        if isinstance(content, str):
            out.append({"role": msg["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                img = part.get("image")
                url = image_data_url(img if img is not None else next(pending))
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append({"type": "text", "text": part.get("text", "")})
        out.append({"role": msg["role"], "content": parts})
    return out


class ServerClient:
    """Chat completions and embeddings from ``cfg.url`` (API key from ``cfg.api_key_env``).

    ``cfg.max_retries`` retries per request (the ``openai`` client's backoff); a request
    the server rejects (HTTP 4xx but 408/409/429) fails at once. ``key`` names the config
    section in errors; ``temperature`` is the sampling of :meth:`generate`.
    """

    def __init__(self, cfg: ServerConfig, key: str, *, temperature: float = 0.0) -> None:
        if not cfg.url:
            raise ConfigError(
                f"{key}.url: give the base URL of an OpenAI-compatible server "
                "(e.g. http://host:8000/v1)"
            )
        if not cfg.model:
            raise ConfigError(f"{key}.model: name the model the server serves")
        self.cfg = cfg
        self.key = key
        self.base = cfg.url.rstrip("/")
        self.temperature = temperature
        self._api: Any = None

    def __getstate__(self) -> dict:
        # TRL and multiprocessing may pickle reward functions: hold the config, not a connection
        return {**self.__dict__, "_api": None}

    @property
    def api(self):
        """The ``openai.OpenAI`` client, made on first use (one connection pool per process)."""
        if self._api is None:
            import openai

            self._api = openai.OpenAI(
                base_url=self.base,
                api_key=os.environ.get(self.cfg.api_key_env) or "unused",
                max_retries=self.cfg.max_retries,
                timeout=self.cfg.timeout_s,
            )
        return self._api

    def _headers(self) -> dict[str, Any]:
        """No key in the environment: send no Authorization header (a server without
        ``--api-key`` needs none), as the openai client would otherwise refuse to."""
        import openai

        return {} if os.environ.get(self.cfg.api_key_env) else {"Authorization": openai.omit}

    def _call(self, path: str, fn: Callable[[], T]) -> T:
        """``fn()`` (one request to ``path``) with the client's errors said in ume's words."""
        import openai

        endpoint = self.base + path
        try:
            return fn()
        except openai.APIStatusError as e:
            if e.status_code >= 500 or e.status_code in (408, 409, 429):
                raise UmeError(
                    f"{endpoint}: no answer after {self.cfg.max_retries + 1} tries (HTTP "
                    f"{e.status_code}); check {self.key}.url and that the server is up"
                ) from e
            detail = (e.response.text if e.response is not None else str(e))[:300]
            raise UmeError(f"{endpoint}: HTTP {e.status_code}: {detail}") from e
        except openai.APIConnectionError as e:  # timeouts included
            raise UmeError(
                f"{endpoint}: no answer after {self.cfg.max_retries + 1} tries ({e}); "
                f"check {self.key}.url and that the server is up"
            ) from e
        except openai.APIResponseValidationError as e:
            raise UmeError(f"{endpoint}: the answer is not JSON ({e})") from e

    def chat(
        self, chat: Sequence[dict], *, max_tokens: int, temperature: float = 0.0
    ) -> tuple[str, int]:
        """One chat completion: (text, completion tokens as the server counts them)."""
        reply = self._call(
            "/chat/completions",
            lambda: self.api.chat.completions.create(
                model=self.cfg.model,
                messages=to_openai_messages(chat),
                max_tokens=max_tokens,
                temperature=temperature,
                extra_headers=self._headers(),
            ),
        )
        try:
            text = reply.choices[0].message.content or ""
        except (AttributeError, IndexError, TypeError) as e:
            raise UmeError(
                f"{self.base}/chat/completions: the answer is not a chat completion ({e!r})"
            ) from e
        usage = getattr(reply, "usage", None)
        return text, int(getattr(usage, "completion_tokens", 0) or 0)

    def generate(
        self, chats: Sequence[list[dict]], *, max_new_tokens: int
    ) -> list[tuple[str, int]]:
        """:meth:`chat` over ``chats`` (``cfg.concurrency`` in flight), in order."""
        return self.map(
            lambda c: self.chat(c, max_tokens=max_new_tokens, temperature=self.temperature),
            chats,
            desc=f"{self.key} chat",
        )

    def embed(self, messages: list[dict]) -> list[float]:
        """One embedding of an OpenAI chat (``/embeddings`` with ``messages``: vLLM's form for
        multimodal embedding models; not part of OpenAI's own API, hence a plain POST)."""
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "encoding_format": "float",
            "add_generation_prompt": False,
        }
        reply = self._call(
            "/embeddings",
            lambda: self.api.post(
                "/embeddings", body=body, cast_to=object, options={"headers": self._headers()}
            ),
        )
        try:
            return [float(x) for x in reply["data"][0]["embedding"]]
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise UmeError(f"{self.base}/embeddings: not an embeddings answer ({e!r})") from e

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str = "requests") -> list[R]:
        """``fn`` over ``items`` with ``cfg.concurrency`` requests in flight, in order."""
        with (
            ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool,
            progress(len(items), desc, unit="request") as bar,
        ):
            out = []
            for r in pool.map(fn, items):
                out.append(r)
                bar.update(1)
            return out
