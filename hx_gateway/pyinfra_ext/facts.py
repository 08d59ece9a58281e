"""Custom pyinfra facts: read a host's state, change nothing.

Each fact runs a host module (a real file, sent as its text to the target's `python3 -I -S`) that
prints one JSON document: host_facts.py for the host's own state, host_generations.py and
host_venv_check.py for theirs. `Batch` runs several of them in one python3 (host_batch.py), so
preflight reads a host in one round trip.
"""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase

from hx_gateway.host import batch as host_batch
from hx_gateway.host import facts as host_facts
from hx_gateway.host import postgres as host_postgres
from hx_gateway.host import venv_check as host_venv_check
from hx_gateway.pyinfra_ext.remote import TARGET_PYTHON

Program = tuple[str, list[str]]  # a host module's text and its arguments (sys.argv[1:])

HOST_FACTS = Path(host_facts.__file__).read_text()
HOST_BATCH = Path(host_batch.__file__).read_text()
HOST_VENV_CHECK = Path(host_venv_check.__file__).read_text()
HOST_POSTGRES = Path(host_postgres.__file__).read_text()


def host_fact(name: str, *args: Any) -> Program:
    """host_facts.py's fact `name` with its arguments."""
    return HOST_FACTS, [name, json.dumps(args)]


def shell_command(program: Program) -> str:
    source, argv = program
    return " ".join([TARGET_PYTHON, "-c", shlex.quote(source), *(shlex.quote(a) for a in argv)])


class _JsonFact(FactBase):
    """A fact whose `program` runs on the target's python3 and prints one JSON document; `Batch`
    runs several of them in one round trip."""

    def __init_subclass__(cls) -> None:
        # pyinfra reads a fact's arguments from the signature of `command`: it gets `program`'s.
        if "program" in cls.__dict__ and "command" not in cls.__dict__:
            program = cls.__dict__["program"]

            def command(self: _JsonFact, *args: Any, **kwargs: Any) -> str:
                return shell_command(program(self, *args, **kwargs))

            command.__signature__ = inspect.signature(program)  # type: ignore[attr-defined]
            cls.command = command  # type: ignore[method-assign]
        super().__init_subclass__()

    def process(self, output: list[str]) -> Any:  # type: ignore[override]
        return json.loads("\n".join(output))


# What the target's command line holds when the programs travel on stdin: sudo writes every command
# line to the host's auth log, and a Batch carries ~20 KB of Python on every run.
_FROM_STDIN = ("import json, sys; source, sys.argv[1:] = json.load(sys.stdin); "
               "exec(compile(source, '<hx-batch>', 'exec'), {'__name__': '__main__'})")


class Batch(_JsonFact):
    """Several facts' programs in one python3 on the target: one round trip instead of one each
    (each round trip is a `docker exec` or an SSH channel plus sudo). Returns their results in order.

    The programs go on stdin: `host.get_fact(Batch, programs=p, _stdin=Batch.stdin(p))`; the
    command line is one short loader."""

    default = list

    def program(self, programs: list[Program]) -> Program:  # type: ignore[override]
        return HOST_BATCH, [json.dumps(programs)]

    def command(self, programs: list[Program]) -> str:  # type: ignore[override]
        return f"{TARGET_PYTHON} -c {shlex.quote(_FROM_STDIN)}"

    @staticmethod
    def stdin(programs: list[Program]) -> str:
        return json.dumps(Batch().program(programs))


class GatewayHost(_JsonFact):
    """Everything preflight needs from a gateway host (or Open WebUI's: `script`), in one round trip
    (host_facts.gateway_host)."""

    default = dict

    def program(self, bind_port: int, venv_root: str, account: tuple[str, str] = ("", ""),  # type: ignore[override]
                directories: tuple[str, ...] = (), unit: str = "", reads: tuple[str, ...] = (),
                script: str = "litellm") -> Program:
        return host_fact("gateway_host", bind_port, venv_root, list(account), list(directories), unit, list(reads),
                         script)


class Listeners(_JsonFact):
    """TCP listeners on a port, with the processes and users that own them."""

    default = list

    def program(self, port: int) -> Program:  # type: ignore[override]
        return host_fact("listeners", port)


class HttpProbes(_JsonFact):
    """GET (or POST) each URL from the host itself: status, body head, round-trip ms, or the error."""

    default = list

    def program(self, requests: list[dict[str, Any]], timeout: float = 5.0) -> Program:  # type: ignore[override]
        return host_fact("http_probes", requests, timeout)


class FileStates(_JsonFact):
    """Managed files in one round trip: sha256, owner, mode, and what a diff needs (never a secret:
    see host_facts.file_states)."""

    default = dict

    def program(self, paths: list[str], secret_paths: list[str], salt: str, with_text: bool,  # type: ignore[override]
                dotenv_paths: list[str] | None = None) -> Program:
        return host_fact("file_states", paths, secret_paths, salt, with_text, dotenv_paths)


class PeerConnections(_JsonFact):
    """Remote addresses of the TCP connections (any state but LISTEN) to a local port."""

    default = list

    def program(self, port: int, sample: str = "") -> Program:  # type: ignore[override]
        # `sample` only makes each reading a fact of its own, never served from pyinfra's cache.
        return host_fact("peer_connections", port)


class VenvLitellm(_JsonFact):
    """The LiteLLM version the deployed venv's own interpreter imports (not just a directory name)."""

    default = str

    def program(self, venv_root: str) -> Program:  # type: ignore[override]
        return host_fact("venv_litellm", venv_root)


class VenvPolicy(_JsonFact):
    """What the serving venv would run at every interpreter start, and whether its LiteLLM is allowed
    (hx_gateway/host/venv_check.py, the program the install runs before activating a venv)."""

    default = dict

    def program(self, venv_root: str, policy: dict) -> Program:  # type: ignore[override]
        return HOST_VENV_CHECK, [json.dumps(policy, sort_keys=True), f"{venv_root}/current"]


class ComponentHost(_JsonFact):
    """What preflight needs from a Redis or HAProxy host (host_facts.component_host)."""

    default = dict

    def program(self, host_name: str, units: tuple[str, ...], packages: tuple[str, ...],  # type: ignore[override]
                directories: tuple[str, ...] = (), reads: tuple[str, ...] = (), reloads: bool = False) -> Program:
        return host_fact("component_host", host_name, list(units), list(packages), list(directories), list(reads),
                         reloads)


class RedisProbe(_JsonFact):
    """From a gateway: Redis reachable, refusing a client without a password, and (reading the
    gateway's env file on the host) letting the gateways' user in."""

    default = dict

    def program(self, address: str, port: int, env_file: str = "", sample: str = "") -> Program:  # type: ignore[override]
        # `sample` only makes each reading a fact of its own, never served from pyinfra's cache.
        return host_fact("redis_probe", address, port, env_file)


class PrometheusTargets(_JsonFact):
    """On the monitoring host: what Prometheus scrapes and whether each target is up."""

    default = list

    def program(self, url: str, sample: str = "") -> Program:  # type: ignore[override]
        # `sample` only makes each reading a fact of its own, never served from pyinfra's cache.
        return host_fact("prometheus_targets", url)


class PostgresHost(_JsonFact):
    """What the `db` component needs from its host (hx_gateway/host/postgres.py): the distribution, the
    clusters, and the server's role, database and migrations."""

    default = dict

    def program(self, port: int, database: str, role: str) -> Program:  # type: ignore[override]
        return HOST_POSTGRES, [json.dumps([port, database, role])]


class Resolves(_JsonFact):
    """The addresses each name stands for on the host (its resolver, its /etc/hosts)."""

    default = dict

    def program(self, names: tuple[str, ...]) -> Program:  # type: ignore[override]
        return host_fact("resolve", list(names))
