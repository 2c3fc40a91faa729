"""The client of OpenAI-compatible servers: retries, concurrency, keys, errors naming the key."""

from __future__ import annotations

import json
import pickle
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ume.clients import ServerClient
from ume.config import ServerConfig
from ume.errors import UmeError

pytestmark = pytest.mark.unit


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.seen.append((self.path, dict(self.headers), body))
            srv.in_flight += 1
            srv.most = max(srv.most, srv.in_flight)
            status = srv.statuses.pop(0) if srv.statuses else 200
        time.sleep(srv.delay)
        with srv.lock:
            srv.in_flight -= 1
        if status != 200:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"bad request: no such model")
            return
        text = body["messages"][-1]["content"]
        reply = {
            "choices": [{"message": {"content": f"re: {text}"}}],
            "usage": {"completion_tokens": 3},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen, srv.statuses, srv.lock, srv.in_flight, srv.most, srv.delay = (
        [],
        [],
        threading.Lock(),
        0,
        0,
        0.0,
    )
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()


def _cfg(srv, **kw) -> ServerConfig:
    return ServerConfig(url=f"http://127.0.0.1:{srv.server_port}/v1", model="m", **kw)


def _chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_requests_run_concurrency_at_a_time_and_come_back_in_order(server):
    server.delay = 0.2
    chats = [_chat(f"q{i}") for i in range(6)]
    out = ServerClient(_cfg(server, concurrency=3), "k").generate(chats, max_new_tokens=4)
    assert out == [(f"re: q{i}", 3) for i in range(6)]
    assert server.most == 3
    server.most = 0
    ServerClient(_cfg(server, concurrency=1), "k").generate(chats[:3], max_new_tokens=4)
    assert server.most == 1
    assert all(b["max_tokens"] == 4 and b["model"] == "m" for _, _, b in server.seen)


def test_server_errors_are_retried_and_a_bad_request_is_not(server):
    server.statuses = [503, 502]
    assert (
        ServerClient(_cfg(server, max_retries=2), "k").chat(_chat("x"), max_tokens=2)[0] == "re: x"
    )
    assert len(server.seen) == 3
    server.statuses = [503, 503]
    with pytest.raises(
        UmeError, match=re.escape("no answer after 2 tries (HTTP 503); check k.url")
    ):
        ServerClient(_cfg(server, max_retries=1), "k").chat(_chat("x"), max_tokens=2)
    server.seen.clear()
    server.statuses = [400]
    with pytest.raises(UmeError, match="HTTP 400: bad request: no such model"):
        ServerClient(_cfg(server, max_retries=3), "k").chat(_chat("x"), max_tokens=2)
    assert len(server.seen) == 1  # the request itself is wrong: not retried


def test_the_api_key_comes_from_its_variable_and_is_sent_only_when_set(server, monkeypatch):
    monkeypatch.delenv("UME_TEST_KEY", raising=False)
    client = ServerClient(_cfg(server, api_key_env="UME_TEST_KEY"), "k")
    client.chat(_chat("x"), max_tokens=2)
    monkeypatch.setenv("UME_TEST_KEY", "secret")
    ServerClient(_cfg(server, api_key_env="UME_TEST_KEY"), "k").chat(_chat("x"), max_tokens=2)
    auth = [{k.lower(): v for k, v in h.items()}.get("authorization") for _, h, _ in server.seen]
    assert auth == [None, "Bearer secret"]


def test_a_client_pickles_without_its_connection(server):
    client = ServerClient(_cfg(server), "k")
    client.chat(_chat("x"), max_tokens=2)
    back = pickle.loads(pickle.dumps(client))
    assert back._api is None and back.chat(_chat("y"), max_tokens=2)[0] == "re: y"
