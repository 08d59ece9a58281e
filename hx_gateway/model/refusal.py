"""Refusals: problems found before any host changes (settings, secrets, lock, preflight).

Each is a message for a person. The deploy turns one into pyinfra's "expected error" (a
`PyinfraError`, which pyinfra prints as one message, never as a traceback) and marks the run as
refused, so the preview prints no verdict for a plan it never finished.
"""

from __future__ import annotations

from pyinfra.api import State
from pyinfra.api.exceptions import PyinfraError


class Refusal(Exception):
    """Base of every error that means "nothing was changed; fix this and run again"."""


class RunRefused(PyinfraError):
    pass


REFUSED_ATTRIBUTE = "hx_refused"


def refuse(state: State, refusal: Refusal) -> RunRefused:
    """Mark the run refused (no verdict) and build the error pyinfra prints without a traceback."""
    setattr(state, REFUSED_ATTRIBUTE, True)
    return RunRefused(f"refused, nothing was changed on any host:\n{refusal}")


def was_refused(state: State) -> bool:
    return bool(getattr(state, REFUSED_ATTRIBUTE, False))
