"""Redaction: no secret leaves in what the project writes for people (evidence, tickets, journal lines)."""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "<redacted>"


def redact(text: str, secrets: Iterable[str]) -> str:
    """Defence in depth: no check should ever carry a secret, but nothing leaves with one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


KEY_PATTERN = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")


def redact_keys(text: str) -> str:
    """For text we did not write (journal lines): anything shaped like an API key goes."""
    return KEY_PATTERN.sub(REDACTED, text)
