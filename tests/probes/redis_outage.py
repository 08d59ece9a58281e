"""Run by the gateway venv's python on a gateway (tests/test_deploy.py): how long one limit check
costs the worker's event loop while Redis is going away, and how many times it knocks.

Two stand-ins for a Redis that is going away, on loopback: one that closes every connection at once
(a Redis shutting down) and one that accepts and never answers (a hung host). hx_auth.py is loaded
the way LiteLLM loads it, with REDIS_HOST pointing at each in turn. Prints one JSON document:
{"closes": {"seconds": ..., "connections": ...}, "hangs": {...}}.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import threading
import time


def stand_in(closes: bool) -> tuple[int, list[socket.socket]]:
    """A listener on a free loopback port that closes each connection at once, or keeps it silent."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            accepted.append(conn)
            if closes:
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], accepted


def one_check(config: str, port: int) -> float:
    os.environ.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port))
    from litellm.proxy.types_utils.utils import get_instance_fn

    store = get_instance_fn("hx_auth.STORE", config)  # a fresh module load each time, as LiteLLM does
    started = time.monotonic()
    store.take_request("probe", 10)
    return time.monotonic() - started


def main(config: str) -> None:
    scratch = tempfile.mkdtemp()
    os.environ.update(HX_LIMITS_DB=os.path.join(scratch, "limits.sqlite"),
                      HX_CLIENT_KEYS_FILE=os.path.join(scratch, "none.json"))
    found = {}
    for name, closes in (("closes", True), ("hangs", False)):
        port, accepted = stand_in(closes)
        seconds = one_check(config, port)
        found[name] = {"seconds": round(seconds, 3), "connections": len(accepted)}
    print(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1])
