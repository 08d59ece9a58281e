"""A test double of the Ollama HTTP API, for the lab's backend hosts. Standard library only.

It answers the endpoints LiteLLM and the deploy's checks use, says which host answered (header
`X-Ollama-Double-Host` and the reply text), and counts requests per endpoint. Behaviour can be
changed at run time through `/_double/*`:

  GET  /_double/stats            {"host": ..., "counts": {"POST /api/chat": 3, ...}, "in_flight": 0}
  POST /_double/reset            zero the counters
  POST /_double/config           {"delay_ms": 0, "fail_status": 0, "models": [...]} (any subset)

`delay_ms` holds back only the requests that make a real Ollama run a model (chat, generate, embed):
its version, tags and model details answer at once, so a probe of those costs what it costs a real
backend (the deploy's preflight asks them on every run; a delay there would hide its own cost).

It is built for speed so it is never what a benchmark measures: asyncio protocol, keep-alive,
TCP_NODELAY and a single write per response.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import struct
import time
from collections import Counter
from typing import Any

VERSION = "0.6.8"
EMBEDDING_DIM = 16


class State:
    def __init__(self, host: str, models: list[str]) -> None:
        self.host = host
        self.models = [_with_tag(m) for m in models]
        self.delay_ms = 0
        self.fail_status = 0
        self.counts: Counter[str] = Counter()
        self.in_flight = 0

    def has_model(self, name: str) -> bool:
        return _with_tag(name) in self.models


def _with_tag(name: str) -> str:
    """Ollama names a model without a tag `<name>:latest`."""
    return name if ":" in name else f"{name}:latest"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def _embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()[: EMBEDDING_DIM * 2]
    return [round(v / 65535.0, 6) for v in struct.unpack(f">{EMBEDDING_DIM}H", digest)]


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
    return ""


def _reply_text(state: State, prompt: str) -> str:
    return f"{state.host} answered: {prompt[:64]}"


def _inputs(value: Any) -> list[str]:
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [value if isinstance(value, str) else json.dumps(value)]


class Response:
    __slots__ = ("status", "body", "content_type", "chunks")

    def __init__(self, status: int, body: Any = None, content_type: str = "application/json",
                 chunks: list[bytes] | None = None) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.chunks = chunks


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


def handle(state: State, method: str, path: str, body: bytes) -> Response:
    """Route one request. Pure: easy to unit-test without sockets."""
    path = path.split("?", 1)[0]
    if path.startswith("/_double/"):
        return _control(state, method, path, body)
    state.counts[f"{method} {path}"] += 1
    if method == "GET" and path in ("/", "/api/version", "/api/tags", "/v1/models", "/api/ps"):
        return _listing(state, path)
    if method != "POST":
        return Response(405, {"error": "method not allowed"})
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return Response(400, {"error": "invalid JSON body"})
    if not isinstance(payload, dict):
        return Response(400, {"error": "body must be a JSON object"})
    handler = POST_ROUTES.get(path)
    if handler is None:
        return Response(404, {"error": f"no route {path}"})
    model = payload.get("model") or payload.get("name") or ""
    if not state.has_model(model):
        return Response(404, {"error": f"model '{model}' not found, try pulling it first"})
    return handler(state, model, payload)


def _control(state: State, method: str, path: str, body: bytes) -> Response:
    if path == "/_double/stats":
        return Response(200, {"host": state.host, "counts": dict(state.counts), "in_flight": state.in_flight,
                              "models": state.models, "delay_ms": state.delay_ms,
                              "fail_status": state.fail_status})
    if method == "POST" and path == "/_double/reset":
        state.counts.clear()
        return Response(200, {"ok": True})
    if method == "POST" and path == "/_double/config":
        change = json.loads(body or b"{}")
        if "delay_ms" in change:
            state.delay_ms = int(change["delay_ms"])
        if "fail_status" in change:
            state.fail_status = int(change["fail_status"])
        if "models" in change:
            state.models = [_with_tag(m) for m in change["models"]]
        return Response(200, {"ok": True})
    return Response(404, {"error": f"no control route {path}"})


def _listing(state: State, path: str) -> Response:
    if path == "/":
        return Response(200, "Ollama is running", content_type="text/plain")
    if path == "/api/version":
        return Response(200, {"version": VERSION})
    if path == "/v1/models":
        return Response(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "library"} for m in state.models]})
    models = [{"name": m, "model": m, "modified_at": _now(), "size": 1000,
               "digest": hashlib.sha256(m.encode()).hexdigest(),
               "details": {"format": "gguf", "family": "llama", "parameter_size": "8B",
                           "quantization_level": "Q8_0"}} for m in state.models]
    return Response(200, {"models": models})


def _ollama_stats(prompt: str, reply: str) -> dict[str, Any]:
    return {"total_duration": 1000000, "load_duration": 1000, "prompt_eval_count": max(1, len(prompt.split())),
            "prompt_eval_duration": 1000, "eval_count": max(1, len(reply.split())), "eval_duration": 1000}


def _ndjson(parts: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(p).encode() + b"\n" for p in parts]


def _api_chat(state: State, model: str, payload: dict[str, Any]) -> Response:
    prompt = _last_user_text(payload.get("messages"))
    reply = _reply_text(state, prompt)
    final = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
             "done_reason": "stop", "done": True, **_ollama_stats(prompt, reply)}
    if payload.get("stream", True) is False:
        final["message"]["content"] = reply
        return Response(200, final)
    pieces = [{"model": model, "created_at": _now(), "message": {"role": "assistant", "content": word},
               "done": False} for word in _words(reply)]
    return Response(200, content_type="application/x-ndjson", chunks=_ndjson([*pieces, final]))


def _api_generate(state: State, model: str, payload: dict[str, Any]) -> Response:
    prompt = str(payload.get("prompt", ""))
    reply = _reply_text(state, prompt)
    final = {"model": model, "created_at": _now(), "response": "", "done": True, "done_reason": "stop",
             **_ollama_stats(prompt, reply)}
    if payload.get("stream", True) is False:
        final["response"] = reply
        return Response(200, final)
    pieces = [{"model": model, "created_at": _now(), "response": w, "done": False} for w in _words(reply)]
    return Response(200, content_type="application/x-ndjson", chunks=_ndjson([*pieces, final]))


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _api_embed(state: State, model: str, payload: dict[str, Any]) -> Response:
    texts = _inputs(payload.get("input", ""))
    return Response(200, {"model": model, "embeddings": [_embedding(t) for t in texts], "total_duration": 1000,
                          "load_duration": 100, "prompt_eval_count": sum(len(t.split()) for t in texts)})


def _api_embeddings(state: State, model: str, payload: dict[str, Any]) -> Response:
    return Response(200, {"embedding": _embedding(str(payload.get("prompt", "")))})


def _api_show(state: State, model: str, payload: dict[str, Any]) -> Response:
    return Response(200, {"modelfile": f"FROM {model}", "parameters": "", "template": "{{ .Prompt }}",
                          "details": {"format": "gguf", "family": "llama", "parameter_size": "8B",
                                      "quantization_level": "Q8_0"},
                          "model_info": {"general.architecture": "llama", "llama.context_length": 8192},
                          "capabilities": ["completion", "embedding"]})


def _v1_chat(state: State, model: str, payload: dict[str, Any]) -> Response:
    prompt = _last_user_text(payload.get("messages"))
    reply = _reply_text(state, prompt)
    base = {"id": f"chatcmpl-{state.host}", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_ollama"}
    usage = {"prompt_tokens": max(1, len(prompt.split())), "completion_tokens": max(1, len(reply.split()))}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if not payload.get("stream"):
        return Response(200, {**base, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]})
    events = [{**base, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": w}, "finish_reason": None}]} for w in _words(reply)]
    events.append({**base, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]})
    chunks = [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    return Response(200, content_type="text/event-stream", chunks=chunks)


def _v1_embeddings(state: State, model: str, payload: dict[str, Any]) -> Response:
    texts = _inputs(payload.get("input", ""))
    tokens = sum(len(t.split()) for t in texts)
    return Response(200, {"object": "list", "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                          "data": [{"object": "embedding", "index": i, "embedding": _embedding(t)}
                                   for i, t in enumerate(texts)]})


POST_ROUTES = {
    "/api/chat": _api_chat,
    "/api/generate": _api_generate,
    "/api/embed": _api_embed,
    "/api/embeddings": _api_embeddings,
    "/api/show": _api_show,
    "/v1/chat/completions": _v1_chat,
    "/v1/embeddings": _v1_embeddings,
}

# Every POST route makes a real Ollama run a model but this one, which reads the model's details;
# only model work waits `delay_ms`.
MODEL_DETAILS = "/api/show"


def takes_model_time(method: str, target: str) -> bool:
    path = target.split("?", 1)[0]
    return method == "POST" and path in POST_ROUTES and path != MODEL_DETAILS


def encode(state: State, response: Response, keep_alive: bool) -> bytes:
    """The whole HTTP response as one buffer (one write, so TCP_NODELAY sends it at once)."""
    if response.chunks is not None:
        body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in response.chunks) + b"0\r\n\r\n"
        length_header = b"Transfer-Encoding: chunked\r\n"
    else:
        raw = response.body
        body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
        length_header = b"Content-Length: %d\r\n" % len(body)
    head = (
        b"HTTP/1.1 %d %s\r\n" % (response.status, REASONS.get(response.status, "Unknown").encode())
        + b"Content-Type: " + response.content_type.encode() + b"\r\n"
        + length_header
        + b"X-Ollama-Double-Host: " + state.host.encode() + b"\r\n"
        + (b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
        + b"\r\n"
    )
    return head + body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[tuple[str, str, bytes, bool] | None] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport  # type: ignore[assignment]
        self.worker = asyncio.get_running_loop().create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self.transport.close()  # type: ignore[union-attr]
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4: head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
            self.queue.put_nowait((method, target, body, keep_alive))

    async def _serve(self) -> None:
        # One request at a time per connection, in order (HTTP/1.1 pipelining semantics).
        while (item := await self.queue.get()) is not None:
            method, target, body, keep_alive = item
            is_control = target.startswith("/_double/")
            if not is_control:
                self.state.in_flight += 1
            try:
                if self.state.delay_ms and takes_model_time(method, target):
                    await asyncio.sleep(self.state.delay_ms / 1000)
                if self.state.fail_status and not is_control:
                    self.state.counts[f"{method} {target.split('?', 1)[0]}"] += 1
                    response = Response(self.state.fail_status, {"error": "injected failure"})
                else:
                    response = handle(self.state, method, target, body)
            finally:
                if not is_control:
                    self.state.in_flight -= 1
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(encode(self.state, response, keep_alive))
            if not keep_alive:
                self.transport.close()
                return


async def serve(state: State, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: HttpProtocol(state), host, port, reuse_address=True, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--host-name", default=socket.gethostname())
    parser.add_argument("--config", help="JSON file: {\"models\": [...], \"delay_ms\": 0}")
    args = parser.parse_args()
    config: dict[str, Any] = {}
    if args.config:
        with open(args.config) as fh:
            config = json.load(fh)
    state = State(args.host_name, config.get("models", []))
    state.delay_ms = int(config.get("delay_ms", 0))
    asyncio.run(serve(state, args.bind, args.port))


if __name__ == "__main__":
    main()
