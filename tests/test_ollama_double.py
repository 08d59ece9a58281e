"""The lab's Ollama double answers like Ollama and says who answered (unit level, no sockets)."""

from __future__ import annotations

import json

from lab.ollama_double import State, encode, handle


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
