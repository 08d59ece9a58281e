"""HTTPS against plain HTTP on the lab gateway: requests/s at c=8 over keep-alive connections, and what
a new connection costs (a fresh connection per request to /health/liveliness, one client).

    python bench/tls.py [--seconds 15] [--rounds 3] [--connections 200]

The two deploys alternate `--rounds` times (this VM drifts by 10-30 % over minutes; each redeploy
restarts the gateway, which is then warmed before it is measured); each figure is the median over
the rounds, every round listed. Goal (issue 24): HTTPS >= 0.9x plain HTTP requests/s at c=8.
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, report, use_random_secrets  # first: it puts the repository on sys.path

from hx_gateway.load import chat_body, run_load
from lab.lab import Lab, address_of
from lab.tls import ensure_lab_tls

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")


def deploy(tls_dir: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HX_LAB_TLS"}
    if tls_dir:
        env["HX_LAB_TLS"] = tls_dir
    result = subprocess.run([PYINFRA, "-y", "lab/inventory.py", "deploy.py"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.exit(f"deploy failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def new_connection_ms(url: str, ca: str | None, count: int) -> float:
    """Median milliseconds of one request on a connection opened for it (TCP, and TLS when https)."""
    address, port = url.split("://")[1].split(":")
    context = ssl.create_default_context(cafile=ca) if ca else None
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        connection = (http.client.HTTPSConnection(address, int(port), context=context, timeout=10) if context
                      else http.client.HTTPConnection(address, int(port), timeout=10))
        connection.request("GET", "/health/liveliness")
        connection.getresponse().read()
        connection.close()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 2)


def measure(url: str, key: str, ca: str | None, seconds: float, connections: int) -> dict:
    run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=3, ca_bundle=ca)  # warm the workers
    load = run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=seconds, ca_bundle=ca).summary()
    return {"rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "errors": load["errors"],
            "new_connection_ms": new_connection_ms(url, ca, connections)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    key = use_random_secrets()
    Lab().up()
    address = address_of("hx-api")
    tls_dir = tempfile.mkdtemp(prefix="hx-bench-tls-")
    ca = str(ensure_lab_tls(Path(tls_dir), [address]).ca)
    rounds: dict[str, list[dict]] = {"http": [], "https": []}
    try:
        for _ in range(args.rounds):
            for scheme in ("http", "https"):
                deploy(tls_dir if scheme == "https" else None)
                rounds[scheme].append(measure(f"{scheme}://{address}:4000", key, ca if scheme == "https" else None,
                                              args.seconds, args.connections))
    finally:
        deploy(None)  # the lab as ./hx lab leaves it

    def median(scheme: str, figure: str) -> float:
        return round(statistics.median(r[figure] for r in rounds[scheme]), 2)

    report("tls", {
        "concurrency": 8, "seconds": args.seconds,
        "http_rps": median("http", "rps"), "https_rps": median("https", "rps"),
        "https_over_http": round(median("https", "rps") / median("http", "rps"), 3),
        "http_new_connection_ms": median("http", "new_connection_ms"),
        "https_new_connection_ms": median("https", "new_connection_ms"),
        "rounds": rounds,
    })


if __name__ == "__main__":
    main()
