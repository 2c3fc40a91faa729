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
import functools
import io
import mimetypes
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ume.config import ServerConfig
from ume.errors import ConfigError, UmeError
from ume.progress import progress

T = TypeVar("T")
R = TypeVar("R")

#: The chat template an Embedder is served with: the stock Qwen-VL rendering of our messages,
#: except that the final assistant turn (``<emb>``) is not closed, so that a server's
#: last-token pooling lands on ``<emb>`` (the stock template renders ``<emb><|im_end|>\n``).
EMBEDDER_CHAT_TEMPLATE = Path(__file__).parent / "models" / "templates" / "embedder.jinja"

#: ``on_result(index, (text, tokens))``: called as each reply arrives, in arrival order.
OnResult = Callable[[int, tuple[str, int]], None]


class ChatModel(Protocol):
    """What writes text for a role: one ``(text, completion tokens)`` per chat, in order.

    Chats are HF content-part messages (``{"type": "text" | "image", ...}``); sampling
    (temperature, seed) is the model's own setting, the length limit the caller's.
    """

    def generate(
        self,
        chats: Sequence[list[dict]],
        *,
        max_new_tokens: int,
        on_result: OnResult | None = None,
    ) -> list[tuple[str, int]]: ...


@functools.cache
def embedder_chat_template() -> str:
    """The text of :data:`EMBEDDER_CHAT_TEMPLATE` (read once per process)."""
    return EMBEDDER_CHAT_TEMPLATE.read_text(encoding="utf-8")


def generate_each(
    model: Any, chats: Sequence[list[dict]], *, max_new_tokens: int, on_result: OnResult
) -> list[tuple[str, int]]:
    """``model.generate`` with ``on_result`` called per reply as it arrives; a model whose
    ``generate`` takes no ``on_result`` (a test fake, say) reports all replies at its end."""
    import inspect

    try:
        takes = "on_result" in inspect.signature(model.generate).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes = False
    if takes:
        return model.generate(chats, max_new_tokens=max_new_tokens, on_result=on_result)
    outs = model.generate(chats, max_new_tokens=max_new_tokens)
    for i, out in enumerate(outs):
        on_result(i, out)
    return outs


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
        self,
        chats: Sequence[list[dict]],
        *,
        max_new_tokens: int,
        on_result: OnResult | None = None,
    ) -> list[tuple[str, int]]:
        """:meth:`chat` over ``chats`` (``cfg.concurrency`` in flight), in order;
        ``on_result`` gets each reply as it arrives (a caller persists it at once)."""
        return self.map(
            lambda c: self.chat(c, max_tokens=max_new_tokens, temperature=self.temperature),
            chats,
            desc=f"{self.key} chat",
            on_result=on_result,
        )

    def embed(self, messages: list[dict], *, chat_template: str | None = None) -> list[float]:
        """One embedding of an OpenAI chat (``/embeddings`` with ``messages``: vLLM's form for
        multimodal embedding models; not part of OpenAI's own API, hence a plain POST).

        The chat ends with the assistant turn ``<emb>``; it is rendered with ``chat_template``
        (default: :func:`embedder_chat_template`, which leaves that turn open) so that the
        server's last-token pooling is the hidden state at ``<emb>``, as in training. A vLLM
        server takes a template in a request only when started with
        ``--trust-request-chat-template`` (docs/reasoner.md has the command)."""
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "encoding_format": "float",
            "add_generation_prompt": False,
            "chat_template": chat_template
            if chat_template is not None
            else embedder_chat_template(),
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

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        desc: str = "requests",
        on_result: Callable[[int, R], None] | None = None,
    ) -> list[R]:
        """``fn`` over ``items`` with ``cfg.concurrency`` requests in flight; results in
        order. ``on_result(i, result)`` runs (in this thread) as each one arrives.

        When a request fails for good, no new request is sent, the ones in flight are
        awaited and reported to ``on_result`` (their work is not lost), then the first
        error is raised."""
        n_workers = max(1, self.cfg.concurrency)
        out: list[Any] = [None] * len(items)
        errors: list[BaseException] = []
        todo = iter(enumerate(items))
        pending: dict[Future, int] = {}
        with (
            ThreadPoolExecutor(max_workers=n_workers) as pool,
            progress(len(items), desc, unit="request") as bar,
        ):

            def fill() -> None:  # a bounded window: never one future per item of a large stage
                while not errors and len(pending) < 2 * n_workers:
                    nxt = next(todo, None)
                    if nxt is None:
                        return
                    pending[pool.submit(fn, nxt[1])] = nxt[0]

            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        out[i] = fut.result()
                    except Exception as e:  # re-raised below, after the requests in flight
                        errors.append(e)
                        continue
                    if on_result is not None:
                        on_result(i, out[i])
                    bar.update(1)
                fill()
        if errors:
            raise errors[0]
        return out
