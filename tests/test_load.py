"""The load generator against a local HTTP server: what it counts, and how it survives a dropped
connection (the failover test and the throughput benchmark rely on both)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hx_gateway.load import chat_body, main, run_load


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the gateway
    seen: list[tuple[str, str, dict]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.seen.append((self.path, self.headers["Authorization"], body))
            number = len(self.seen)
        if number % 10 == 0:  # every tenth request: the connection dies without an answer
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status = 500 if number % 10 == 5 else 200
        answer = b'{"ok": true}' if status == 200 else b'{"error": "backend down"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("x-litellm-model-api-base", f"http://llm0{number % 2 + 1}:11434")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Backend.seen = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/prefix"
    httpd.shutdown()


def test_counts_answers_errors_and_backends(server):
    result = run_load(server, "sk-test", chat_body("phi3-3.8b"), 100, 4)
    summary = result.summary()
    assert summary["requests"] == 100 and len(Backend.seen) == 100
    assert summary["statuses"] == {"200": 80, "500": 10, "None": 10}  # the dropped ones: no HTTP answer
    assert summary["errors"] == 20 and len(result.failures()) == 20
    assert sum(summary["backends"].values()) == 80 and set(summary["backends"]) == {
        "http://llm01:11434", "http://llm02:11434"}
    assert {o.error for o in result.failures() if o.status == 500} == {'{"error": "backend down"}'}
    assert sum(summary["errors_by_reason"].values()) == 20 and summary["errors_by_reason"][
        '{"error": "backend down"}'] == 10
    path, authorization, body = Backend.seen[0]
    assert path == "/prefix/v1/chat/completions" and authorization == "Bearer sk-test"
    assert body["model"] == "phi3-3.8b"
    assert 0 < summary["p50_ms"] <= summary["p99_ms"] and summary["rps"] > 0


def test_stops_at_the_time_budget_and_reports_progress(server):
    numbers: list[int] = []
    result = run_load(server, "k", chat_body("m"), 10**9, 2, max_seconds=0.3, on_progress=numbers.append)
    assert 0 < len(result.outcomes) == len(numbers) < 10**9
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    assert result.wall_seconds < 5


def test_a_failing_progress_callback_is_not_swallowed(server):
    def explode(number: int) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_load(server, "k", chat_body("m"), 5, 1, on_progress=explode)


@pytest.mark.parametrize(("argv", "env", "said"), [
    (["hx-api:4000"], {"HX_MASTER_KEY": "sk-x"}, "write the gateway's base URL with its scheme"),
    (["http://127.0.0.1:9"], {}, "--key-env HX_MASTER_KEY: not set in the environment"),
])
def test_the_command_refuses_a_url_without_scheme_and_a_missing_key_by_name(monkeypatch, capsys, argv, env, said):
    """Before: a missing key was a KeyError traceback; a URL without a scheme went to localhost."""
    monkeypatch.delenv("HX_MASTER_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and said in capsys.readouterr().err


def test_with_resend_a_request_whose_kept_connection_dies_is_sent_once_more_and_counted(server):
    result = run_load(server, "k", chat_body("m"), 100, 1, resend_on_closed=True)
    summary = result.summary()
    # Every tenth request the server sees dies unanswered (10, 20, ... 110 of 111): each is sent again.
    assert summary["requests"] == 100 and len(Backend.seen) == 111
    assert summary["resent"] == 11 and "None" not in summary["statuses"]
    assert run_load(server, "k", chat_body("m"), 100, 1).summary()["resent"] == 0
