"""The HTTP layer of ``ume serve``: FastAPI routes, the body limit, errors as OpenAI's.

Every refusal is a 4xx with ``{"error": {"message", "type", "code"}}`` (the message says what
to fix): a body over the limit (413), malformed JSON or fields (400), an unknown model (404),
an image that does not decode, too many items or tokens (400). A failure inside a model is
a 500 for that request only; the server goes on serving.

Routes read the body and hand it to a thread of the pool, where it is decoded, checked and
queued for the batching worker (:class:`~ume.serve.service.Service`).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ume.serve.service import RequestError, Service

log = logging.getLogger(__name__)


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": {"message": message, "type": kind, "code": status}}
    )


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is a 413 (by its Content-Length,
    or as it streams in without one), before any route reads it."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = _error(
            413, f"request body over {self.max_bytes} bytes (--max-body-mb); send fewer items"
        )
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(service: Service, *, timeout_s: float = 600.0):
    """The FastAPI application serving ``service``."""
    app = FastAPI(title="ume serve", version="1")

    @app.exception_handler(RequestError)
    async def _refused(request: Request, e: RequestError):
        service.count(f"refused_{e.status}")
        return _error(e.status, str(e), e.kind)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        service.count("refused_400")
        return _error(400, f"malformed request: {e.errors()[:3]}")

    @app.exception_handler(Exception)
    async def _failed(request: Request, e: Exception):
        service.count("failed_500")
        log.exception("request to %s failed", request.url.path)
        return _error(
            500, f"the server failed on this request ({type(e).__name__}: {e})", "server_error"
        )

    def body_of(raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the body is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body is a JSON object")
        return body

    @app.get("/health")
    def health() -> dict:
        return service.health()

    @app.get("/v1/models")
    def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "owned_by": "ume",
                    "role": role,
                    "root": service.folders[role],
                }
                for role, name in service.names.items()
            ],
        }

    @app.post("/v1/embeddings")
    async def embeddings_route(request: Request) -> dict:
        return await run_in_threadpool(embeddings, body_of(await request.body()))

    @app.post("/v1/chat/completions")
    async def chat_route(request: Request) -> dict:
        return await run_in_threadpool(chat_completions, body_of(await request.body()))

    def embeddings(body: dict[str, Any]) -> dict:
        name = body.get("model")
        service.model_role(name, "embeddings", ("embedder",))
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            raise RequestError(400, f"encoding_format: 'float' or 'base64', got {fmt!r}")
        if "messages" in body:
            got = service.embed_messages(body, timeout=timeout_s)
            vectors, tcots, tokens = [got["vector"]], [None], got["prompt_tokens"]
        else:
            got = service.embed_items(body, timeout=timeout_s)
            vectors, tcots, tokens = got["vectors"], got["tcots"], 0
        data = []
        for i, (v, t) in enumerate(zip(vectors, tcots, strict=True)):
            v = np.asarray(v, dtype=np.float32)
            emb: Any = (
                base64.b64encode(v.astype("<f4").tobytes()).decode()
                if fmt == "base64"
                else [float(x) for x in v]
            )
            row = {"object": "embedding", "index": i, "embedding": emb}
            if t is not None:
                row["tcot"] = t
            data.append(row)
        service.count("embedding_requests")
        return {
            "object": "list",
            "model": name,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def chat_completions(body: dict[str, Any]) -> dict:
        if body.get("stream"):
            raise RequestError(400, "stream: not supported; ask without streaming")
        got = service.chat(body, timeout=timeout_s)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": got["text"]},
                    "finish_reason": got["finish_reason"],
                }
            ],
            "usage": {
                "prompt_tokens": got["prompt_tokens"],
                "completion_tokens": got["completion_tokens"],
                "total_tokens": got["prompt_tokens"] + got["completion_tokens"],
            },
        }

    return app


def serve(service: Service, *, host: str, port: int, max_body_bytes: int, timeout_s: float) -> None:
    """Run the server until interrupted (uvicorn), then stop the worker."""
    import uvicorn

    app = BodyLimit(create_app(service, timeout_s=timeout_s), max_body_bytes)
    log.info("serving %s on http://%s:%d/v1", ", ".join(service.names.values()), host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)
    finally:
        service.close()
