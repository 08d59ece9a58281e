"""What the plan will change, recorded by the operations themselves for the change ticket.

pyinfra's own output is for a terminal; the ticket needs the same facts as data. Each operation
that knows what it will change (a file's redacted diff, the venv's old and new LiteLLM, a restart
and its cause) calls `record`; with HX_CHANGE_LOG set (the ticket command sets it), every record
is appended there as one JSON line. Records never hold a secret: callers pass redacted text only.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pyinfra import host

CHANGE_LOG_ENV = "HX_CHANGE_LOG"


def record(kind: str, subject: str, summary: str, **details: Any) -> None:
    path = os.environ.get(CHANGE_LOG_ENV)
    if not path:
        return
    entry = {"host": host.name, "kind": kind, "subject": subject, "summary": summary, **details}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")


def read(path: str) -> list[dict[str, Any]]:
    """Records in plan order, once each (pyinfra may run an operation's planning twice)."""
    seen, entries = set(), []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        key = line.strip()
        if key and key not in seen:
            seen.add(key)
            entries.append(json.loads(key))
    return entries
