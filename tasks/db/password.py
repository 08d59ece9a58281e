"""The gateways' role password as PostgreSQL stores it: a SCRAM-SHA-256 verifier (RFC 5802/7677).

The deploy sends PostgreSQL the verifier, never the password (so it is in no command, log or
pg_stat_activity), and decides from a digest of the stored verifier whether the password changed:
the host tells only the salt and iteration count (which the server tells any client) and a sha256 of
the verifier. The password is printable ASCII (secrets.py), which SASLprep leaves as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

ITERATIONS = 4096  # PostgreSQL's scram_iterations default


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def matches(password: str, role: dict | None) -> bool:
    """Whether the role the PostgresHost fact read has this password (`scram`: "iterations:salt",
    `sha256`: of the whole verifier)."""
    if not role or not role.get("scram"):
        return False
    iterations, _, salt = role["scram"].partition(":")
    try:
        expected = verifier(password, base64.b64decode(salt, validate=True), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(hashlib.sha256(expected.encode()).hexdigest(), role.get("sha256", ""))
