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
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from common import (  # first: it puts the repository on sys.path
    chat_load_at_8,
    compared,
    lab_deploy,
    report,
    use_random_secrets,
)

from lab.lab import Lab, address_of
from lab.tls import ensure_lab_tls


def deploy(tls_dir: str | None) -> None:
    lab_deploy(HX_LAB_TLS=tls_dir)


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
    return {**chat_load_at_8(url, key, seconds, ca), "new_connection_ms": new_connection_ms(url, ca, connections)}


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

    report("tls", {"concurrency": 8, "seconds": args.seconds,
                   **compared(rounds, "http", "https", ("rps", "new_connection_ms")), "rounds": rounds})

if __name__ == "__main__":
    main()
