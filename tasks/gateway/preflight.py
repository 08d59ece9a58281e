"""Preflight: facts only. Any problem stops the run before a single change on any host."""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlsplit

from pyinfra import host, logger, state
from pyinfra.api import deploy

from hx_gateway.model.fleet import DbSettings, RedisSettings, host_part
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.announce import note_degraded
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import FileStates, GatewayHost, HttpProbes, RedisProbe, Resolves
from hx_gateway.pyinfra_ext.generations import Generations, spec_of
from hx_gateway.pyinfra_ext.operations import file_states_arguments
from hx_gateway.pyinfra_ext.render import CA, files_read, managed_directories, managed_files
from tasks.component import port_taken_problems

SKIP_IDENTITY_ENV = "HX_SKIP_IDENTITY_GUARD"
# Backends the operator allows to be down for this run (host names or URLs, comma-separated).
ALLOW_BACKENDS_DOWN_ENV = "HX_ALLOW_BACKENDS_DOWN"
MIN_PYTHON = (3, 10)


class PreflightError(Refusal):
    pass


def identity_problems(settings: Settings, facts: dict, inventory_name: str) -> list[str]:
    if os.environ.get(SKIP_IDENTITY_ENV) == "1":
        return []
    owned = {facts["hostname"], facts["fqdn"], *facts["addresses"]}
    expected = set(settings.expected_identity)
    if not expected:
        name = host_part(inventory_name)
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


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def bind_host_problems(bind_host: str, addresses: list[str]) -> list[str]:
    """The gateway binds `bind_host`: a wildcard, or an address this host has (else LiteLLM fails to
    start, found only by a failed restart and a rollback). Without `ip` on the host (addresses
    unknown) nothing can be said; the install step brings iproute2."""
    if bind_host in ("0.0.0.0", "::") or not addresses or any(_same_address(bind_host, a) for a in addresses):
        return []
    return [f"bind_host: {bind_host} is not an address of this host (it has {', '.join(addresses)}); the gateway "
            f"could not listen there: set bind_host to one of these, or 0.0.0.0"]


def path_problems(directories: dict[str, dict | None], files: dict[str, dict]) -> list[str]:
    """A path the deploy manages holding something else (a file where a directory goes, a directory
    where a file goes): no write there could succeed, so it is refused before any."""
    problems = [f"{path}: exists but is not a directory; the deploy keeps its files there: move it aside "
                f"(e.g. mv {path} {path}.old) and run again" for path, seen in directories.items()
                if seen is not None and not seen["is_dir"]]
    problems += [f"{path}: cannot be read as a file ({seen['error']}); the deploy writes this file: move what is "
                 f"there aside and run again" for path, seen in files.items() if seen.get("error")]
    return problems


def drop_in_warning(unit: str, drop_ins: list[str]) -> str | None:
    """The deploy writes no drop-in for the gateway's unit: one on the host changes the unit outside
    the deploy (hardening, ExecStart, environment). A warning, not a refusal: it may be deliberate."""
    if not drop_ins:
        return None
    return (f"{unit} has drop-in(s) this deploy did not write: {', '.join(drop_ins)}; they override the unit "
            f"it declares (hardening, ExecStart, environment). Remove them, or set what they set through group_data")


def host_problems(settings: Settings, facts: dict) -> list[str]:
    problems = bind_host_problems(settings.bind_host, facts["addresses"])
    if facts["pid1"] != "systemd":
        problems.append(f"init: PID 1 is {facts['pid1']!r}, not systemd; the gateway runs as a systemd unit")
    version = tuple(int(x) for x in facts["python"].split(".")[:2])
    if version < MIN_PYTHON:
        problems.append(f"python: {facts['python']} is older than 3.10; install a newer python3")
    problems += port_taken_problems(facts["listeners"], settings.service_user, "port", settings.bind_port,
                                    "bind_port", " (LiteLLM would silently move to a random port)")
    return problems


def _names(url: str) -> set[str]:
    """How an operator may name a backend: its URL, host name, or short host name."""
    hostname = urlsplit(url).hostname or ""
    return {url, hostname, hostname.split(".")[0]}


def allowed_down() -> set[str]:
    return {name.strip() for name in os.environ.get(ALLOW_BACKENDS_DOWN_ENV, "").split(",") if name.strip()}


def backend_problems(probes: dict[str, dict], allowed: set[str]) -> tuple[list[str], list[str]]:
    """(problems, the backends down that the operator allowed down for this run: a degraded run).
    `probes`: each backend URL and its /api/version probe.

    No backend answering is always refused: the gateway would serve nothing. Some not answering is
    refused unless each of them is named in HX_ALLOW_BACKENDS_DOWN."""
    seen = {url: p["error"] or f"HTTP {p['status']}" for url, p in probes.items() if p["error"] or p["status"] != 200}
    if not seen:
        return [], []
    if len(seen) == len(probes):
        return [f"backend: no backend answers from this host ({'; '.join(f'{u}: {e}' for u, e in seen.items())}); "
                f"the gateway would serve nothing, so the run is refused even with {ALLOW_BACKENDS_DOWN_ENV}: "
                f"check `systemctl status ollama` on the backends and the network path to them"], []
    refused = [url for url in seen if not _names(url) & allowed]
    if refused:
        names = ",".join(urlsplit(u).hostname or u for u in refused)
        return [f"backend: {url} does not answer from this host ({seen[url]}); check `systemctl status ollama` on "
                f"it and the network path to it. To change the gateway while it is down (rotate a key, revoke a "
                f"client, take it out of `backends`), run again with {ALLOW_BACKENDS_DOWN_ENV}={names}: the run "
                f"then goes ahead degraded and the preview, the ticket and verify say so" for url in refused], []
    return [], sorted(seen)


@deploy("Preflight")
def redis_problems(redis: RedisSettings, probe: dict) -> list[str]:
    """Redis must refuse a client without a password. Not reachable yet is no refusal: this run may be
    the one that provisions it (it is deployed before the gateways); verify proves it afterwards."""
    where = f"Redis at {redis.address}:{redis.redis_port}"
    if not probe.get("reachable"):
        host.log(f"{where} does not answer from this gateway yet ({probe.get('error')}): limits stay per "
                 f"gateway until it does (verify checks it)", logger.warning)
        return []
    if not probe.get("unauthenticated", "").startswith("-NOAUTH"):
        return [f"redis: {where} answers a client without a password ({probe.get('unauthenticated')!r}): it is not "
                f"the deploy's Redis, or its ACL was changed by hand; check the `redis` host"]
    return []


def preflight(settings: Settings, redis: RedisSettings | None = None, db: DbSettings | None = None) -> dict:
    """Read the gateway host and its backends (and Redis, with a `redis` host; where the `db` host is);
    raise PreflightError listing every problem.

    One round trip: the managed files and the generations are read here too, for the operations
    planned after preflight (see fact_cache)."""
    redis_probe = [(RedisProbe, {"address": redis.address, "port": redis.redis_port})] if redis else []
    db_address = [(Resolves, {"names": (db.address,)})] if db else []
    facts, probes, files, _, *others = read_together(
        (GatewayHost, {"bind_port": settings.bind_port, "venv_root": settings.venv_root,
                       "account": (settings.service_user, settings.service_group),
                       "directories": [d.path for d in managed_directories(settings).values()],
                       "unit": f"{settings.service_name}.service",
                       "reads": [*(f.path for f in managed_files(settings).values() if f != CA),
                                 f"{settings.venv_root}/current"]}),
        (HttpProbes, {"requests": [{"url": f"{b}/api/version"} for b in settings.backends]}),
        (FileStates, file_states_arguments(files_read(settings))),
        (Generations, {"spec": spec_of(settings)}),
        *redis_probe,
        *db_address,
    )
    redis_found = others[:1] if redis else []
    db_found = [a for found in others[len(redis_found):] for a in found.get(db.address, [])] if db else []
    problems = (identity_problems(settings, facts, host.name) + host_problems(settings, facts)
                + path_problems(facts["directories"], files))
    if redis:
        problems += redis_problems(redis, redis_found[0])
    found, down = backend_problems(dict(zip(settings.backends, probes, strict=True)), allowed_down())
    problems += found
    warning = drop_in_warning(f"{settings.service_name}.service", facts["unit"].get("drop_ins", []))
    if warning:
        host.log(warning, logger.warning)
    if problems:
        raise PreflightError(f"preflight failed on {host.name}; nothing was changed:\n"
                             + "\n".join(f"  - {p}" for p in problems))
    if down:
        note_degraded(state, host.name, down)
        host.log(f"DEGRADED run ({ALLOW_BACKENDS_DOWN_ENV}): going ahead with {', '.join(down)} down", logger.warning)
        changes.record("degraded", ", ".join(down), f"the run goes ahead with {', '.join(down)} not answering "
                       f"({ALLOW_BACKENDS_DOWN_ENV}); verify reports it as degraded until it is back")
    # Peers the service talks to (systemd's IP allow-list, when on): the backends, Redis, the usage database.
    peers = {a for p in probes + redis_found for a in p.get("addresses", [])}
    facts["backend_addresses"] = sorted(peers | set(db_found))
    return facts
