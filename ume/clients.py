"""One client for OpenAI-compatible servers (vLLM, say): chat completions and embeddings.

Annotator, Reasoner (evaluation), Embedder and Discriminator (EG-RL rewards) all reach a
server through :class:`ServerClient`, configured by a :class:`~ume.config.ServerConfig` and
named by its config key so that every error says which section to fix.

>>> client = ServerClient(cfg.annotate.server, "annotate.server")   # doctest: +SKIP
>>> text, tokens = client.chat(messages, max_tokens=256)            # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ume.config import ServerConfig
from ume.errors import ConfigError, UmeError

T = TypeVar("T")
R = TypeVar("R")


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
    """Retrying JSON POSTs to ``cfg.url`` (API key from the env variable ``cfg.api_key_env``).

    Connection errors and HTTP 5xx are retried ``cfg.max_retries`` times with backoff; an
    HTTP 4xx (the request itself is wrong) fails at once. ``key`` names the config section.
    """

    def __init__(self, cfg: ServerConfig, key: str) -> None:
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

    def post(self, path: str, body: dict) -> dict:
        endpoint = self.base + path
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token := os.environ.get(self.cfg.api_key_env):
            headers["Authorization"] = f"Bearer {token}"
        last: Exception | None = None
        for attempt in range(self.cfg.max_retries + 1):
            req = urllib.request.Request(endpoint, data=data, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    detail = e.read().decode(errors="replace")[:300]
                    raise UmeError(f"{endpoint}: HTTP {e.code}: {detail}") from e
                last = e
            except json.JSONDecodeError as e:
                raise UmeError(f"{endpoint}: the answer is not JSON ({e})") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = e
            time.sleep(min(2**attempt * 0.2, 5.0))
        raise UmeError(
            f"{endpoint}: no answer after {self.cfg.max_retries + 1} tries ({last}); "
            f"check {self.key}.url and that the server is up"
        )

    def chat(
        self, chat: Sequence[dict], *, max_tokens: int, temperature: float = 0.0
    ) -> tuple[str, int]:
        """One chat completion: (text, completion tokens as the server counts them)."""
        reply = self.post(
            "/chat/completions",
            {
                "model": self.cfg.model,
                "messages": to_openai_messages(chat),
                "max_tokens": max_tokens,
                "temperature": temperature,
            },
        )
        try:
            text = reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise UmeError(
                f"{self.base}/chat/completions: the answer is not a chat completion ({e!r})"
            ) from e
        return text, int((reply.get("usage") or {}).get("completion_tokens") or 0)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` with ``cfg.concurrency`` requests in flight, in order."""
        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            return list(pool.map(fn, items))
