"""A bounded load through the gateway: fixed concurrency, a request budget, every outcome kept.

Used by the failover test and the throughput benchmark; the operator can run it too:
    python -m hx_gateway.load URL --key-env HX_MASTER_KEY --requests 200 --concurrency 8

The client is the standard library's http.client, one keep-alive connection per worker thread:
it spends ~0.35 ms of CPU per request where httpx spent ~1.1 ms (measured at 200 rps on the lab).
On a machine the gateway shares with its load, what the client burns is taken from the gateway.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Outcome:
    started: float  # seconds since the load began
    seconds: float
    status: int | None  # None: no HTTP answer at all
    backend: str  # x-litellm-model-api-base, "" when absent
    error: str = ""
    resent: bool = False  # answered after a resend on a new connection (see run_load)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    wall_seconds: float = 0.0

    def failures(self, after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and o.started >= after]

    def summary(self) -> dict:
        latencies = sorted(o.seconds * 1000 for o in self.outcomes if o.ok)

        def pct(p: float) -> float:
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1) if latencies else 0.0

        return {
            "requests": len(self.outcomes),
            "errors": len(self.failures()),
            "rps": round(len(self.outcomes) / self.wall_seconds, 1) if self.wall_seconds else 0.0,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else 0.0,
            "backends": dict(Counter(o.backend for o in self.outcomes if o.ok)),
            "statuses": dict(Counter(str(o.status) for o in self.outcomes)),
            "resent": sum(o.resent for o in self.outcomes),
            # why the failures failed: the commonest reasons, with their counts
            "errors_by_reason": dict(Counter(o.error[:120] or f"HTTP {o.status}" for o in self.failures())
                                     .most_common(3)),
        }


def chat_body(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}


def _connect(url: str, timeout: float, ca_bundle: str | None = None) -> Callable[[], http.client.HTTPConnection]:
    """A new keep-alive connection; over HTTPS verified against `ca_bundle` (else the system store)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_bundle)
        return lambda: http.client.HTTPSConnection(parts.hostname or "localhost", parts.port, timeout=timeout,
                                                   context=context)
    return lambda: http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=timeout)


def run_load(url: str, key: str, body: dict, requests: int, concurrency: int, path: str = "/v1/chat/completions",
             max_seconds: float = 60.0, on_progress: Callable[[int], None] | None = None,
             timeout: float = 60.0, ca_bundle: str | None = None, stop: threading.Event | None = None,
             resend_on_closed: bool = False) -> LoadResult:
    """Send `requests` POSTs (or stop after max_seconds, or once `stop` is set) with `concurrency` in flight.
    `resend_on_closed`: a request whose reused keep-alive connection fails is sent once more on a new one."""
    result, lock, sent = LoadResult(), threading.Lock(), [0]
    began = time.monotonic()
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    target = urlsplit(url).path.rstrip("/") + path
    connect = _connect(url, timeout, ca_bundle)

    def worker() -> None:
        connection, reused = connect(), False
        try:
            while True:
                with lock:
                    if sent[0] >= requests or time.monotonic() - began > max_seconds or (stop and stop.is_set()):
                        return
                    sent[0] += 1
                    number = sent[0]
                if on_progress:
                    on_progress(number)
                started = time.monotonic()
                for attempt in (1, 2):
                    try:
                        connection.request("POST", target, payload, headers)
                        response = connection.getresponse()
                        text = response.read()
                        outcome = Outcome(started - began, time.monotonic() - started, response.status,
                                          response.getheader("x-litellm-model-api-base", ""),
                                          "" if response.status == 200 else text[:200].decode(errors="replace"),
                                          resent=attempt > 1)
                        reused = True
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        outcome = Outcome(started - began, time.monotonic() - started, None, "", type(exc).__name__)
                        connection.close()  # the next request opens a fresh connection
                        was_reused, reused = reused, False
                        # A keep-alive connection the server closed before answering (a worker that stops):
                        # clients that resend then (the OpenAI SDKs do) see no error; counted as `resent`.
                        if not (resend_on_closed and was_reused and attempt == 1):
                            break
                with lock:
                    result.outcomes.append(outcome)
        finally:
            connection.close()

    with ThreadPoolExecutor(concurrency) as pool:
        workers = [pool.submit(worker) for _ in range(concurrency)]
    for finished in workers:
        finished.result()  # a bug in a worker (or in on_progress) must not pass for a quiet run
    result.wall_seconds = time.monotonic() - began
    result.outcomes.sort(key=lambda o: o.started)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="gateway base URL, e.g. http://hx-api:4000")
    parser.add_argument("--key-env", default="HX_MASTER_KEY", help="environment variable holding the key")
    parser.add_argument("--model", default="phi3-3.8b")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--ca-bundle", help="PEM file of the CA an https:// gateway's certificate is checked "
                                            "against (default: the system's trust store)")
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(f"url {args.url!r}: write the gateway's base URL with its scheme, e.g. http://hx-api:4000")
    if args.ca_bundle and not os.path.isfile(args.ca_bundle):
        parser.error(f"--ca-bundle {args.ca_bundle}: no such file; give the PEM file of the gateway's CA")
    if not os.environ.get(args.key_env):
        parser.error(f"--key-env {args.key_env}: not set in the environment; export it (the key is never an "
                     f"argument: it would show in the process list)")
    result = run_load(args.url, os.environ[args.key_env], chat_body(args.model), args.requests, args.concurrency,
                      max_seconds=args.max_seconds, ca_bundle=args.ca_bundle)
    print(json.dumps(result.summary()))
    return 0 if not result.failures() else 1


if __name__ == "__main__":
    raise SystemExit(main())
