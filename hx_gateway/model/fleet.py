"""The optional groups around the gateways: `redis` (limits and router state shared by every gateway),
`lb` (HAProxy in front of them), `db` (PostgreSQL, the usage records) and `monitor` (Prometheus), and the
rules that span groups.

Their knobs, with defaults, are declared in group_data/redis.py, lb.py, db.py and monitor.py; the gateway's in
settings.py. Every problem names the knob (or group) and the fix, like the gateway's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar
from urllib.parse import urlsplit

from hx_gateway.model.settings import (
    NAME_RE,
    Settings,
    _bind_host_problems,
    _int,
    _problems_for_url,
    tls_knobs_set,
    tls_problems,
)
from hx_gateway.model.tls import CertificateSummary

# Only the letters HAProxy allows in a server name (the gateway's inventory name, host part).
SERVER_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def host_part(inventory_name: str) -> str:
    """`@docker/hx-api` -> `hx-api`; an SSH inventory name is the host name already."""
    return inventory_name.rsplit("/", 1)[-1]


def host_port(address: str, port: int) -> str:
    """`address:port`, with an IPv6 address in brackets (a URL's, HAProxy's and Prometheus's form)."""
    try:
        return f"[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"{address}:{port}"
    except ValueError:  # a name
        return f"{address}:{port}"


def service_address(bind_address: str | None, inventory_name: str) -> str:
    """Where the gateways connect to a host of the service (Redis, PostgreSQL): its bound address when
    one is set, else its inventory name."""
    return bind_address or host_part(inventory_name)


class _ServiceHost:
    """A host of the service the gateways (or the monitor) connect to: where, from its bind knob."""

    BIND_KNOB: ClassVar[str]
    host: str  # inventory name

    @property
    def address(self) -> str:
        return service_address(getattr(self, self.BIND_KNOB), self.host)


@dataclass(frozen=True)
class RedisSettings(_ServiceHost):
    BIND_KNOB = "redis_bind_address"
    host: str  # inventory name
    redis_port: int
    redis_bind_address: str | None
    redis_user: str
    redis_maxmemory_mb: int
    redis_private_users: bool


# A PostgreSQL identifier that needs no quoting anywhere (SQL, pg_hba.conf, a libpq keyword).
SQL_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class DbSettings(_ServiceHost):
    BIND_KNOB = "db_bind_address"
    host: str  # inventory name
    db_port: int
    db_bind_address: str | None
    db_name: str
    db_user: str
    db_queue_rows: int


@dataclass(frozen=True)
class MonitorSettings(_ServiceHost):
    BIND_KNOB = "monitor_bind_address"
    host: str  # inventory name
    monitor_port: int
    monitor_bind_address: str | None
    monitor_retention_days: int
    monitor_scrape_interval: int
    gateway_metrics_port: int
    node_exporter_port: int
    haproxy_exporter_port: int
    redis_exporter_port: int
    postgres_exporter_port: int
    alert_for_seconds: int
    alert_5xx_ratio: float
    alert_429_per_second: float
    alert_p99_seconds: float
    alert_certificate_days: int
    monitor_private_users: bool

    @property
    def url(self) -> str:
        """Prometheus's API, from the monitoring host itself (its name resolves there to the bound address)."""
        return f"http://{host_port(self.address, self.monitor_port)}"


@dataclass(frozen=True)
class LbSettings:
    host: str  # inventory name
    lb_bind_host: str
    lb_port: int
    lb_url: str
    lb_check_interval: int
    lb_idle_timeout: int
    # Not knobs of their own: the TLS knobs (group_data/all.py) make HAProxy serve HTTPS.
    serves_tls: bool = False
    ca_bundle: str | None = None
    certificate: CertificateSummary | None = None  # what it serves (set once the files were checked)
    tls_min_days_left: int = 14


@dataclass(frozen=True)
class Member:
    """A gateway as a balancer sees it: its server name, where it listens, how long it drains."""

    name: str
    address: str
    port: int
    drain_timeout: int
    serves_tls: bool = False

    @classmethod
    def of(cls, inventory_name: str, settings: Settings) -> Member:
        url = urlsplit(settings.gateway_url)
        return cls(SERVER_NAME_UNSAFE.sub("_", host_part(inventory_name)), url.hostname or "",
                   url.port or settings.bind_port, settings.drain_timeout, settings.tls)


@dataclass(frozen=True)
class Fleet:
    """What every host's plan knows of the others (no secret here: those are in Secrets)."""

    redis: RedisSettings | None = None
    lbs: tuple[LbSettings, ...] = ()
    gateways: tuple[Member, ...] = ()
    db: DbSettings | None = None
    monitor: MonitorSettings | None = None
    # Every host the deploy manages (inventory names, in inventory order): each runs a node exporter
    # when there is a `monitor` host.
    hosts: tuple[str, ...] = ()

    def member(self, inventory_name: str) -> Member | None:
        name = SERVER_NAME_UNSAFE.sub("_", host_part(inventory_name))
        return next((m for m in self.gateways if m.name == name), None)


REDIS_KNOBS = tuple(f.name for f in fields(RedisSettings) if f.name != "host")
LB_KNOBS = tuple(f.name for f in fields(LbSettings) if f.name.startswith("lb_"))
DB_KNOBS = tuple(f.name for f in fields(DbSettings) if f.name != "host")
MONITOR_KNOBS = tuple(f.name for f in fields(MonitorSettings) if f.name != "host")
EXPORTER_PORTS = ("gateway_metrics_port", "node_exporter_port", "haproxy_exporter_port", "redis_exporter_port",
                  "postgres_exporter_port")


def _missing(data: Mapping[str, Any], knobs: Sequence[str], group: str) -> list[str]:
    return [f"{name}: missing from the host data; group_data/{group}.py declares it with its default: run pyinfra "
            f"from the repository (or pass its group_data/)" for name in knobs if name not in data]


def _bind_address_problems(bind: Any, knob: str, what: str) -> list[str]:
    """One private address of the host (`what`: the component) or None; never a wildcard."""
    if bind is None:
        return []
    problems = [p.replace("bind_host", knob, 1) for p in _bind_host_problems(bind)]
    if not problems and ipaddress.ip_address(bind).is_unspecified:
        problems.append(f"{knob}: {bind!r} would listen on every address; name one private address of the "
                        f"{what} host, or None for the address its inventory name resolves to")
    return problems


def load_redis(name: str, data: Mapping[str, Any]) -> tuple[RedisSettings | None, list[str]]:
    problems = _missing(data, REDIS_KNOBS, "redis")
    if problems:
        return None, problems
    bind = data["redis_bind_address"]
    problems += _bind_address_problems(bind, "redis_bind_address", "Redis")
    user = data["redis_user"]
    if not isinstance(user, str) or not NAME_RE.match(user) or user == "default":
        problems.append(f"redis_user: {user!r} is not a usable ACL user; use letters, digits, '.', '_' or '-' "
                        f"(not `default`, which the deploy switches off)")
    private_users = data["redis_private_users"]
    if not isinstance(private_users, bool):
        problems.append(f"redis_private_users: {private_users!r} must be True or False")
    settings = RedisSettings(name, _int(data, "redis_port", 1, 65535, problems), bind, str(user),
                             _int(data, "redis_maxmemory_mb", 16, 1048576, problems), bool(private_users))
    return settings, problems


def load_db(name: str, data: Mapping[str, Any]) -> tuple[DbSettings | None, list[str]]:
    problems = _missing(data, DB_KNOBS, "db")
    if problems:
        return None, problems
    bind = data["db_bind_address"]
    problems += _bind_address_problems(bind, "db_bind_address", "database")
    for knob in ("db_name", "db_user"):
        value = data[knob]
        if not isinstance(value, str) or not SQL_NAME_RE.match(value) or value.startswith("pg_") or value == "postgres":
            problems.append(f"{knob}: {value!r} is not a usable PostgreSQL name; use lower-case letters, digits and "
                            f"'_' (starting with a letter, at most 63, not `postgres` or pg_...)")
    settings = DbSettings(name, _int(data, "db_port", 1, 65535, problems), bind, str(data["db_name"]),
                          str(data["db_user"]), _int(data, "db_queue_rows", 100, 10_000_000, problems))
    return settings, problems


def _number(data: Mapping[str, Any], name: str, low: float, high: float, problems: list[str]) -> float:
    value = data[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        problems.append(f"{name}: {value!r} is out of range; set a number from {low:g} to {high:g}")
        return low
    return float(value)


def load_monitor(name: str, data: Mapping[str, Any]) -> tuple[MonitorSettings | None, list[str]]:
    problems = _missing(data, MONITOR_KNOBS, "monitor")
    if problems:
        return None, problems
    bind = data["monitor_bind_address"]
    problems += _bind_address_problems(bind, "monitor_bind_address", "monitoring")
    settings = MonitorSettings(
        name, _int(data, "monitor_port", 1, 65535, problems), bind,
        _int(data, "monitor_retention_days", 1, 3650, problems),
        _int(data, "monitor_scrape_interval", 1, 300, problems),
        *(_int(data, knob, 1, 65535, problems) for knob in EXPORTER_PORTS),
        _int(data, "alert_for_seconds", 0, 86400, problems), _number(data, "alert_5xx_ratio", 0.0001, 1, problems),
        _number(data, "alert_429_per_second", 0.001, 1e6, problems),
        _number(data, "alert_p99_seconds", 0.01, 86400, problems),
        _int(data, "alert_certificate_days", 1, 365, problems), data["monitor_private_users"] is not False)
    if not isinstance(data["monitor_private_users"], bool):
        problems.append(f"monitor_private_users: {data['monitor_private_users']!r} must be True or False")
    ports: dict[int, list[str]] = {}
    for knob in EXPORTER_PORTS:
        ports.setdefault(getattr(settings, knob), []).append(knob)
    for port, knobs in ports.items():
        if len(knobs) > 1:
            problems.append(f"{' and '.join(knobs)}: all {port}; one host may run them all, so give each its own port")
    return settings, problems


def load_lb(name: str, data: Mapping[str, Any]) -> tuple[LbSettings | None, list[str]]:
    problems = _missing(data, LB_KNOBS, "lb")
    if problems:
        return None, problems
    problems += [p.replace("bind_host", "lb_bind_host", 1) for p in _bind_host_problems(data["lb_bind_host"])]
    port = _int(data, "lb_port", 1, 65535, problems)
    serves_tls = tls_knobs_set(data)  # with an `lb` group, HTTPS is served here, not by the gateways
    url = data["lb_url"] or f"{'https' if serves_tls else 'http'}://{host_part(name)}:{port}"
    problems += _problems_for_url(url, "lb_url")
    problems += tls_problems(data, url, "lb_url", serves_tls)
    settings = LbSettings(name, str(data["lb_bind_host"]), port, str(url).rstrip("/"),
                          _int(data, "lb_check_interval", 1, 60, problems),
                          _int(data, "lb_idle_timeout", 5, 86400, problems),
                          serves_tls, data.get("ca_bundle") or None,
                          tls_min_days_left=_int(data, "tls_min_days_left", 1, 365, problems)
                          if "tls_min_days_left" in data else 14)
    return settings, problems


def fleet_problems(redis_hosts: Sequence[str], lb_hosts: Sequence[str], gateway_hosts: Sequence[str],
                   gateways: Mapping[str, Settings], lbs: Sequence[LbSettings], db_hosts: Sequence[str] = (),
                   monitor_hosts: Sequence[str] = (), monitor: MonitorSettings | None = None) -> list[str]:
    """The rules that span groups (`gateways`: the gateways whose own settings are valid)."""
    problems = []
    if len(monitor_hosts) > 1:
        problems.append(f"monitor: {len(monitor_hosts)} hosts ({', '.join(monitor_hosts)}); the deploy runs one "
                        f"Prometheus for the whole service: keep one host in the `monitor` group")
    if monitor_hosts and not gateway_hosts:
        problems.append("monitor: no gateways to watch; add hosts to the `litellm` group or remove the `monitor` group")
    for lb in lbs if monitor else ():
        if lb.lb_port == monitor.haproxy_exporter_port:
            problems.append(f"{lb.host}: haproxy_exporter_port {lb.lb_port} is the balancer's lb_port too; give it a "
                            f"port of its own in group_data/monitor.py")
    for name, settings in gateways.items() if monitor else ():
        taken = {settings.bind_port: "bind_port"}
        for knob in ("gateway_metrics_port", "node_exporter_port"):
            port = getattr(monitor, knob)
            if port in taken:
                problems.append(f"{name}: {knob} {port} is the gateway's {taken[port]} too; give it a port of its own "
                                f"in group_data/monitor.py")
    if len(db_hosts) > 1:
        problems.append(f"db: {len(db_hosts)} hosts ({', '.join(db_hosts)}); the gateways record usage in one "
                        f"database: keep one host in the `db` group")
    if db_hosts and not gateway_hosts:
        problems.append("db: no gateways record into it; add hosts to the `litellm` group or remove the `db` group")
    if len(redis_hosts) > 1:
        problems.append(f"redis: {len(redis_hosts)} hosts ({', '.join(redis_hosts)}); the deploy runs one Redis "
                        f"for the whole service: keep one host in the `redis` group")
    if redis_hosts and not gateway_hosts:
        problems.append("redis: no gateways use it; add hosts to the `litellm` group or remove the `redis` group")
    for name, settings in gateways.items() if not redis_hosts else ():
        for alias in settings.cached_aliases:
            problems.append(f"{name}: model_aliases[{alias!r}].cache_ttl needs a `redis` host to keep the cache "
                            f"in; add one to the inventory, or set cache_ttl to None")
    if lb_hosts and not gateway_hosts:
        problems.append("lb: no gateways to balance; add hosts to the `litellm` group or remove the `lb` group")
    for name, settings in gateways.items() if lb_hosts else ():
        address = urlsplit(settings.gateway_url).hostname or ""
        if ipaddress.ip_address(settings.bind_host).is_loopback or address in ("localhost", "127.0.0.1", "::1"):
            problems.append(f"{name}: bind_host {settings.bind_host} / gateway_url {settings.gateway_url} is "
                            f"loopback, which a balancer on another host cannot reach; bind the gateway to "
                            f"an address the `lb` hosts reach (e.g. 0.0.0.0) and name it in gateway_url")
    for lb in lbs:
        for name, settings in gateways.items():
            longest = settings.request_timeout * (settings.num_retries + 1)
            if lb.lb_idle_timeout < longest:
                problems.append(f"{lb.host}: lb_idle_timeout {lb.lb_idle_timeout} s is shorter than a request "
                                f"{name} may take (request_timeout x (num_retries + 1) = {longest} s); HAProxy would "
                                f"cut it: set lb_idle_timeout to at least {longest}")
    return problems
