"""Response caching's effect on the fleet lab (issue 23): an alias whose answers come from the shared
Redis cache against one whose answers come from a backend, through HAProxy.

    python bench/cache.py [--seconds 15]

Converges the fleet lab (hx-redis, hx-lb, 2 gateways) with `cache_ttl` on llama3-8b only, then loads
phi3-3.8b (every request reaches a backend: the lab's Ollama doubles answer after 50 ms, like a small
model on a warm GPU) and llama3-8b (one identical request repeated: all but the first are cache hits),
alternating, at c=1 and c=8. Reports requests/s, p50/p99 and how many requests reached a backend.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from common import report, use_random_secrets
from fleet import deploy

from hx_gateway.load import chat_body, run_load
from lab.lab import Lab, address_of, double_stats

UNCACHED, CACHED = "phi3-3.8b", "llama3-8b"
GROUP_DATA = f"""
model_aliases = [
    {{"name": "{UNCACHED}", "ollama_model": "phi3:3.8b-mini-128k-instruct-q8_0", "kind": "chat"}},
    {{"name": "{CACHED}", "ollama_model": "llama3:8b-instruct-q8_0", "kind": "chat", "cache_ttl": 600}},
    {{"name": "emb-premium", "ollama_model": "mxbai-embed-large", "kind": "embedding"}},
]
"""


def backend_calls() -> int:
    return sum(double_stats(b)["counts"].get("POST /api/chat", 0) for b in ("hx-llm01", "hx-llm02"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    os.environ.update({"HX_LAB_FLEET": "1", "HX_LAB_GATEWAYS": "2"})
    key = use_random_secrets(HX_REDIS_PASSWORD="sk-" + os.urandom(24).hex())
    replace(Lab.from_env(), fleet=True).up()
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "all.py").write_text(GROUP_DATA)
        deploy(Path(scratch))
    balancer = f"http://{address_of('hx-lb')}:4000"
    for alias in (UNCACHED, CACHED):
        run_load(balancer, key, chat_body(alias), 80, 8)  # warm every worker; fills the cache once
    figures: dict = {"load_seconds": args.seconds}
    for concurrency in (1, 8):
        for name, alias in (("backend_answers", UNCACHED), ("cache_answers", CACHED)):
            before = backend_calls()
            summary = run_load(balancer, key, chat_body(alias), 10**9, concurrency, max_seconds=args.seconds).summary()
            figures[f"{name}_c{concurrency}"] = {**{k: summary[k] for k in ("requests", "rps", "p50_ms", "p99_ms",
                                                                            "errors")},
                                                 "reached_a_backend": backend_calls() - before}
    report("cache", figures)


if __name__ == "__main__":
    main()
