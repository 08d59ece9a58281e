"""HAProxy's runtime API on a balancer host: read the gateways' state, drain one, put it back.

Runs on the `lb` host as root, `python3 -I -S haproxy.py COMMAND JSON_ARGS`, standard library only,
sent as this file's text (hx_gateway/pyinfra_ext/roll.py and verify use it). It talks to the local
stats socket (`stats socket ... level admin` in templates/lb/haproxy.cfg.j2), never over the network.

    servers SOCKET BACKEND                       {server: {"status", "sessions", "total", "admin"}}
    drain SOCKET BACKEND SERVER TIMEOUT          no new requests; wait (bounded) for the in-flight ones
    ready SOCKET BACKEND SERVER TIMEOUT          take requests again, once its health check says UP
    all_up SOCKET BACKEND [SERVER...] TIMEOUT    every named server UP (bounded wait)
    listed SOCKET BACKEND [SERVER...]            the running configuration lists every named server
"""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
import time
from typing import Any

POLL_SECONDS = 0.25


def ask(socket_path: str, command: str) -> str:
    """One runtime API command; the socket closes after each answer (non-interactive mode)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def parse_stat(text: str, backend: str) -> dict[str, dict[str, Any]]:
    """`show stat` is CSV whose header line starts with "# "; fields are read by name."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {row["svname"]: {"status": row["status"], "sessions": int(row["scur"] or 0),
                            "total": int(row["stot"] or 0), "admin": row["status"].startswith(("DRAIN", "MAINT"))}
            for row in rows if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")}


def servers(socket_path: str, backend: str) -> dict[str, dict[str, Any]]:
    return parse_stat(ask(socket_path, "show stat"), backend)


def _wait(socket_path: str, backend: str, server: str, timeout: float, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = servers(socket_path, backend).get(server, {})
        if done(state) or time.monotonic() >= deadline:
            return {**state, "waited": done(state)}
        time.sleep(POLL_SECONDS)


def drain(socket_path: str, backend: str, server: str, timeout: float) -> dict[str, Any]:
    """Weight 0 for new requests; the ones in flight finish. Returns the state when they have (or the
    timeout passed: `waited` is False then)."""
    answer = ask(socket_path, f"set server {backend}/{server} state drain").strip()
    if answer:
        return {"error": answer}
    return _wait(socket_path, backend, server, timeout, lambda s: s.get("sessions", 1) == 0)


def ready(socket_path: str, backend: str, server: str, timeout: float) -> dict[str, Any]:
    """Back in rotation, and UP by its own health check before this returns (bounded)."""
    answer = ask(socket_path, f"set server {backend}/{server} state ready").strip()
    if answer:
        return {"error": answer}
    return _wait(socket_path, backend, server, timeout, lambda s: s.get("status") == "UP")


def all_up(socket_path: str, backend: str, names: list[str], timeout: float) -> dict[str, Any]:
    """Every named server UP by its health check (bounded wait: a fresh start needs `rise` checks)."""
    deadline = time.monotonic() + timeout
    while True:
        found = servers(socket_path, backend)
        ok = all(found.get(name, {}).get("status") == "UP" for name in names)
        if ok or time.monotonic() >= deadline:
            return {"ok": ok, "servers": found}
        time.sleep(POLL_SECONDS)


def listed(socket_path: str, backend: str, names: list[str]) -> dict[str, Any]:
    """HAProxy runs the deploy's configuration: the gateways' backend lists every named server."""
    try:
        found = servers(socket_path, backend)
    except OSError as exc:
        return {"ok": False, "error": f"runtime API at {socket_path}: {exc}"}
    return {"ok": all(name in found for name in names), "servers": found}


COMMANDS = {"servers": servers, "drain": drain, "ready": ready, "all_up": all_up, "listed": listed}


def main(argv: list[str]) -> int:
    """Prints the result as JSON; exits 1 when it says `ok: false` or `waited: false`."""
    result = COMMANDS[argv[0]](*json.loads(argv[1]))
    print(json.dumps(result))
    return 1 if result.get("ok") is False or result.get("waited") is False or "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
