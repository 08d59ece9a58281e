"""Preflight: facts only. Any problem stops the run before a single change on any host."""

from __future__ import annotations

import os
import socket

from pyinfra import host
from pyinfra.api import deploy

from hx_gateway.fact_cache import read_together
from hx_gateway.facts import FileStates, GatewayHost, HttpProbes
from hx_gateway.generations import Generations, spec_of
from hx_gateway.operations import file_states_arguments
from hx_gateway.render import managed_directories, managed_files
from hx_gateway.settings import Settings

SKIP_IDENTITY_ENV = "HX_SKIP_IDENTITY_GUARD"
MIN_PYTHON = (3, 10)


class PreflightError(RuntimeError):
    pass


def inventory_hostname(name: str) -> str:
    """`@docker/hx-api` -> `hx-api`; `hx-api-server.example` stays."""
    return name.split("/", 1)[1] if name.startswith("@") and "/" in name else name


def identity_problems(settings: Settings, facts: dict, inventory_name: str) -> list[str]:
    if os.environ.get(SKIP_IDENTITY_ENV) == "1":
        return []
    owned = {facts["hostname"], facts["fqdn"], *facts["addresses"]}
    expected = set(settings.expected_identity)
    if not expected:
        name = inventory_hostname(inventory_name)
        expected = {name, name.split(".")[0]}
        if not owned & expected:  # the name alone usually answers: a DNS query only when it does not
            try:
                expected |= {info[4][0] for info in socket.getaddrinfo(name, None)}
            except OSError:
                pass
    if owned & expected:
        return []
    return [f"identity: this host is {facts['hostname']} ({', '.join(facts['addresses'])}), not what the inventory "
            f"means ({', '.join(sorted(expected))}); fix the inventory, or for a rebuild set {SKIP_IDENTITY_ENV}=1"]


def host_problems(settings: Settings, facts: dict) -> list[str]:
    problems = []
    if facts["pid1"] != "systemd":
        problems.append(f"init: PID 1 is {facts['pid1']!r}, not systemd; the gateway runs as a systemd unit")
    version = tuple(int(x) for x in facts["python"].split(".")[:2])
    if version < MIN_PYTHON:
        problems.append(f"python: {facts['python']} is older than 3.10; install a newer python3")
    for listener in facts["listeners"]:
        if settings.service_user not in listener["users"]:
            owner = ", ".join(listener["processes"] + listener["users"]) or "an unknown process"
            problems.append(f"port: {settings.bind_port} is already taken by {owner} on {listener['address']}; "
                            f"stop it or choose another bind_port (LiteLLM would silently move to a random port)")
    return problems


def backend_problems(probes: list[dict]) -> list[str]:
    problems = []
    for probe in probes:
        if probe["error"] or probe["status"] != 200:
            seen = probe["error"] or f"HTTP {probe['status']}"
            problems.append(f"backend: {probe['url']} does not answer from this host ({seen}); "
                            f"check `systemctl status ollama` on it and the network path to port 11434")
    return problems


@deploy("Preflight")
def preflight(settings: Settings) -> dict:
    """Read the gateway host and its backends; raise PreflightError listing every problem.

    One round trip: the managed files and the generations are read here too, for the operations
    planned after preflight (see fact_cache)."""
    facts, probes, _, _ = read_together(
        (GatewayHost, {"bind_port": settings.bind_port, "venv_root": settings.venv_root,
                       "account": (settings.service_user, settings.service_group),
                       "directories": [d.path for d in managed_directories(settings).values()],
                       "unit": f"{settings.service_name}.service"}),
        (HttpProbes, {"requests": [{"url": f"{b}/api/version"} for b in settings.backends]}),
        (FileStates, file_states_arguments(list(managed_files(settings).values()))),
        (Generations, {"spec": spec_of(settings)}),
    )
    problems = identity_problems(settings, facts, host.name) + host_problems(settings, facts)
    problems += backend_problems(probes)
    if problems:
        raise PreflightError(f"preflight failed on {host.name}; nothing was changed:\n"
                             + "\n".join(f"  - {p}" for p in problems))
    facts["backend_addresses"] = sorted({a for p in probes for a in p["addresses"]})
    return facts
