"""Generations on the gateway host: keep the deployed state before it changes, restore it on failure.

The host side is `host_generations.py` (sent to the host's python3 as text); this module builds its
command lines, reads it as a fact, and wraps it as an operation.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation

from hx_gateway.host import generations as host_generations
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.fact_cache import cached_fact
from hx_gateway.pyinfra_ext.facts import Program, _JsonFact, shell_command
from hx_gateway.pyinfra_ext.remote import run_as_root
from hx_gateway.pyinfra_ext.render import managed_files

HOST_TOOL = Path(host_generations.__file__).read_text()
STORE = "/var/lib/hx-gateway/generations"


def spec_of(settings: Settings) -> dict[str, Any]:
    """What a generation holds on this host: every managed file, and the venv."""
    return {"store": STORE, "keep": settings.keep_generations, "venv_root": settings.venv_root,
            "files": [asdict(f) for f in managed_files(settings).values()]}


def tool_command(spec: dict[str, Any], *args: str) -> str:
    return shell_command((HOST_TOOL, [json.dumps(spec, sort_keys=True), *args]))


def run_tool(spec: dict[str, Any], *args: str) -> dict[str, Any]:
    """Run the host tool now (from a python.call or a CLI), as the deploy's privileged user."""
    ok, output = run_as_root(tool_command(spec, *args))
    if not ok:
        raise RuntimeError(f"{host.name}: generations {' '.join(args)} failed: {output.stderr[-2000:]}")
    return json.loads(output.stdout)


class Generations(_JsonFact):
    """The deployed state's digest and the generations kept on the host (newest first)."""

    default = dict

    def program(self, spec: dict[str, Any]) -> Program:  # type: ignore[override]
        return HOST_TOOL, [json.dumps(spec, sort_keys=True), "status"]


@operation()
def keep_generation(spec: dict[str, Any], reason: str, after_change: bool = False):
    """
    Keep the deployed state as a generation (and prune old ones and the venvs only they used).

    + reason: written into the generation ("before deploy", "deployed")
    + after_change: the state was just changed by this run, so always ask the host (the plan's
      facts predate the change); pair it with `_if`. Otherwise only when the host holds a state
      no generation has: a first run of this feature, or a hand edit about to be reverted.
    """
    status = cached_fact(Generations, spec=spec)
    gens = status.get("generations", [])
    latest = gens[0] if gens else None
    if not after_change:
        rollback_to = latest["name"] if latest and latest["digest"] == status.get("live") else None
        if status.get("live") is None or rollback_to:
            host.noop("the deployed state is kept already" if rollback_to else "nothing deployed yet")
            if rollback_to:
                changes.record("rollback", rollback_to, f"generation {rollback_to} holds the state now deployed")
            return
        host.log(f"Will keep the deployed state (not in any generation yet) before changing it: {reason}",
                 logger.info)
        changes.record("rollback", "(kept by this run)", "the deployed state is kept as a new generation first")
    yield StringCommand(tool_command(spec, "snapshot", reason))
