"""Will the new state start, and is the service healthy after a (re)start; if not, put the previous
generation back.

Used by the deploy (a canary before the restart, a check after it) and by the rollback command.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api.exceptions import NestedOperationError

from hx_gateway.host import health as host_health
from hx_gateway.model.settings import Settings
from hx_gateway.proof.redaction import redact_keys
from hx_gateway.pyinfra_ext.facts import shell_command
from hx_gateway.pyinfra_ext.generations import run_tool, spec_of
from hx_gateway.pyinfra_ext.remote import TARGET_PYTHON, run_as_root
from hx_gateway.pyinfra_ext.render import service_environment, start_command, tls_arguments

HOST_HEALTH = Path(host_health.__file__).read_text()


class ServiceUnhealthy(RuntimeError):
    pass


def health_problem(settings: Settings, port: int | None = None, unit: str | None = None) -> str:
    """'' when the service (or a canary on `port`, run as `unit`) is healthy and serves the declared
    models, else what is wrong."""
    base = f"{settings.scheme}://127.0.0.1:{port}" if port else settings.local_url  # a canary listens on loopback
    args = [base, settings.health_timeout, settings.path("litellm.env"),
            unit or settings.service_name, list(settings.public_models)]
    ok, output = run_as_root(shell_command((HOST_HEALTH, [json.dumps(args)])))
    return "\n".join(output.stdout_lines).strip() if ok else f"health probe failed: {output.stderr[-500:]}"


WHY_LINE = re.compile(r"error|exception|traceback|invalid|failed|refused|denied", re.IGNORECASE)


def journal_tail(settings: Settings, keep: int = 12, unit: str | None = None) -> str:
    """The journal lines that say why: errors, once each (every worker repeats them), else the tail."""
    _, output = run_as_root(f"journalctl -u {unit or settings.service_name} -n 400 --no-pager")
    lines = output.stdout_lines
    seen, why = set(), []
    for line in lines:
        message = line.split("]: ", 1)[-1]
        if WHY_LINE.search(message) and message not in seen:
            seen.add(message)
            why.append(line)
    return "\n".join(f"    {redact_keys(line)}" for line in (why or lines)[-keep:])


def restart_service(settings: Settings) -> None:
    run_as_root(f"systemctl daemon-reload && systemctl restart {settings.service_name}")


FREE_PORT = (f"{TARGET_PYTHON} -c \"import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
             "print(s.getsockname()[1])\"")


def canary_command(settings: Settings, unit: str, port: int) -> str:
    """The new state (config, env, auth, venv) as a transient unit on loopback: one process, same user."""
    environment = service_environment(settings, unit)
    properties = [f"User={settings.service_user}", f"Group={settings.service_group}",
                  f"EnvironmentFile={settings.path('litellm.env')}",
                  *(f"Environment={name}={value}" for name, value in environment.items()),
                  f"RuntimeDirectory={unit}", "WorkingDirectory=/tmp", "PrivateTmp=yes", "NoNewPrivileges=yes",
                  "ProtectSystem=strict", "ProtectHome=yes"]
    return " ".join(["systemd-run", "--quiet", "--collect", f"--unit={unit}",
                     *(f"-p {shlex.quote(p)}" for p in properties),
                     *start_command(settings), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1",
                     *tls_arguments(settings)])


def reported(check: Callable[..., None]) -> Callable[..., None]:
    """For python.call: a ServiceUnhealthy fails the operation as one message for a person. pyinfra
    prints a traceback for any other exception from a callback; for this one (its exception for an
    operation that failed inside another) it prints the message we logged and "Error in nested
    operation"."""

    @functools.wraps(check)
    def run(settings: Settings, *args: Any, **kwargs: Any) -> None:
        try:
            check(settings, *args, **kwargs)
        except ServiceUnhealthy as failure:
            host.log_styled(str(failure), fg="red", log_func=logger.error)
            raise NestedOperationError(str(failure)) from None

    return run


def restore_files(settings: Settings) -> str:
    """Put the previous generation's files back without restarting anything; says what happened."""
    restored = run_tool(spec_of(settings), "restore", "previous")
    run_as_root("systemctl daemon-reload")
    return (f"the files are back to generation {restored['restored']} ({restored['created']})"
            if restored.get("restored") else f"no generation to restore the files from ({restored.get('why')})")


@reported
def new_state_starts_or_restored(settings: Settings) -> None:
    """Before restarting a serving gateway: start the new state beside it on a spare loopback port.

    If it does not come up healthy, the running service is never touched: the files go back to the
    previous generation and the run fails with the canary's journal lines. Clients see nothing.
    """
    unit = f"hx-litellm-canary-{secrets.token_hex(4)}"
    _, found = run_as_root(FREE_PORT)
    port = int(found.stdout.strip())
    ok, started = run_as_root(canary_command(settings, unit, port))
    problem = health_problem(settings, port=port, unit=unit) if ok else f"could not start: {started.stderr[-300:]}"
    journal = journal_tail(settings, unit=unit) if problem else ""
    run_as_root(f"systemctl stop {unit} 2>/dev/null; systemctl reset-failed {unit} 2>/dev/null; true")
    if not problem:
        return
    files = restore_files(settings)
    raise ServiceUnhealthy(f"{host.name}: the new state failed its canary start: {problem}. {settings.service_name} "
                           f"was not restarted and still serves the previous state; {files}. Journal lines of "
                           f"the canary:\n{journal}")


@reported
def healthy_or_rolled_back(settings: Settings) -> None:
    """After a (re)start: healthy, or restore the previous generation, restart, and fail the run saying so."""
    problem = health_problem(settings)
    if not problem:
        return
    journal = journal_tail(settings)
    restored = run_tool(spec_of(settings), "restore", "previous")
    if not restored.get("restored"):
        raise ServiceUnhealthy(f"{host.name}: {problem}. No generation to roll back to ({restored.get('why')}). "
                               f"Last journal lines:\n{journal}")
    restart_service(settings)
    after = health_problem(settings)
    outcome = ("the previous generation is serving again" if not after
               else f"the previous generation is NOT healthy either: {after}; "
                    f"see journalctl -u {settings.service_name}")
    raise ServiceUnhealthy(f"{host.name}: {problem}. Rolled back to generation {restored['restored']} "
                           f"({restored['created']}): {outcome}. Last journal lines of the failed start:\n{journal}")
