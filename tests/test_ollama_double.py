"""The lab's Ollama double answers like Ollama and says who answered (unit level; one test serves it on loopback)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lab.ollama_double import HttpProtocol, State, encode, handle


def state() -> State:
    return State("hx-llm01", ["phi3:mini", "mxbai-embed-large"])


def test_tags_show_latest_and_counts_move():
    s = state()
    body = handle(s, "GET", "/api/tags", b"").body
    assert {m["name"] for m in body["models"]} == {"phi3:mini", "mxbai-embed-large:latest"}
    assert s.counts["GET /api/tags"] == 1


def test_chat_plain_and_streamed_name_the_host():
    s = state()
    plain = handle(s, "POST", "/api/chat", json.dumps({"model": "phi3:mini", "stream": False,
                                                       "messages": [{"role": "user", "content": "hi"}]}).encode())
    assert "hx-llm01" in plain.body["message"]["content"]
    streamed = handle(s, "POST", "/api/chat", json.dumps({"model": "phi3:mini",
                                                          "messages": [{"role": "user", "content": "hi"}]}).encode())
    lines = [json.loads(c) for c in streamed.chunks]
    assert lines[-1]["done"] is True and not lines[0]["done"]
    raw = encode(s, streamed, keep_alive=True)
    assert b"Transfer-Encoding: chunked" in raw and b"X-Ollama-Double-Host: hx-llm01" in raw


def test_missing_model_is_404_and_runtime_config_changes_models():
    s = state()
    assert handle(s, "POST", "/api/embed", b'{"model": "llama3:8b", "input": "x"}').status == 404
    handle(s, "POST", "/_double/config", b'{"models": ["llama3:8b"]}')
    assert handle(s, "POST", "/api/embed", b'{"model": "llama3:8b", "input": ["a", "b"]}').status == 200


def test_openai_compatible_stream_ends_with_done():
    s = state()
    r = handle(s, "POST", "/v1/chat/completions", json.dumps({"model": "phi3:mini", "stream": True,
                                                              "messages": [{"role": "user", "content": "x"}]}).encode())
    assert r.chunks[-1] == b"data: [DONE]\n\n"



@contextmanager
def served(s: State) -> Iterator[int]:
    """The double's HTTP server for `s` on a loopback port of its own (an event loop in a thread)."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(lambda: HttpProtocol(s), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.close()


def answered_after(port: int, method: str, path: str, body: bytes = b"") -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall(f"{method} {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        while conn.recv(65536):
            pass
        return time.monotonic() - started


def test_delay_holds_back_model_work_only_as_a_real_ollama_would():
    """Version, tags and model details answer before the delay (the deploy probes them on every run);
    chat and embeddings after it."""
    s = state()
    s.delay_ms = 1000
    chat = json.dumps({"model": "phi3:mini", "stream": False, "messages": [{"role": "user", "content": "hi"}]})
    with served(s) as port:
        assert answered_after(port, "GET", "/api/version") < 1.0
        assert answered_after(port, "GET", "/api/tags") < 1.0
        assert answered_after(port, "POST", "/api/show", b'{"model": "phi3:mini"}') < 1.0
        assert answered_after(port, "POST", "/api/chat", chat.encode()) >= 1.0
        assert answered_after(port, "POST", "/v1/embeddings", b'{"model": "mxbai-embed-large", "input": "x"}') >= 1.0
    assert s.counts["POST /api/chat"] == 1 and s.counts["GET /api/tags"] == 1
