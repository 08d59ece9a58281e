"""What one gateway host gets: validated settings, secrets, and the venv for its interpreter."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pyinfra.api.connectors import get_all_connectors

from hx_gateway import lock
from hx_gateway.model.fleet import (
    DbSettings,
    Fleet,
    LbSettings,
    Member,
    MonitorSettings,
    RedisSettings,
    fleet_problems,
    load_db,
    load_lb,
    load_monitor,
    load_redis,
)
from hx_gateway.model.secrets import Secrets, SecretText, load_secrets, service_password_problems
from hx_gateway.model.settings import Settings, SettingsError, load_settings, unknown_knob_problems
from hx_gateway.model.tls import CertificateSummary, TlsMaterial, load_ca, load_tls
from hx_gateway.model.webui import (
    WebuiClient,
    WebuiSecrets,
    WebuiSettings,
    load_webui,
    load_webui_secrets,
    webui_client,
)

# The inventory groups the deploy provisions (`llm`, the backends, it only reads).
COMPONENT_GROUPS = ("litellm", "redis", "lb", "db", "monitor", "webui")


@dataclass(frozen=True)
class VenvPlan:
    """The venv a host should run: its lock (for the host's Python) and how it is built."""

    target: lock.TargetPython
    lock_text: str
    version: str  # of the product the lock pins (LiteLLM's, Open WebUI's)
    venv_id: str  # names the venv directory and its marker: a new lock or build option, a new venv
    installed: bool  # the host runs this venv already
    product: lock.Product = lock.LITELLM

    def wheelhouse(self) -> Path:
        """The archive to upload (downloaded and packed once on the control node, then cached)."""
        return lock.build_wheelhouse(self.target, self.product.lock_path(self.target), self.product)


@dataclass(frozen=True)
class GatewayPlan:
    settings: Settings
    secrets: Secrets
    fleet: Fleet = Fleet()
    tls: TlsMaterial | None = None  # the gateway serves HTTPS with it
    warnings: tuple[str, ...] = ()  # said before the host's changes, refusing nothing
    ca_pem: str = ""  # the operator's CA (ca_bundle), for the host's trust store

    def venv_for(self, facts: Mapping[str, Any]) -> VenvPlan:
        return venv_plan(facts, lock.LITELLM)


def venv_plan(facts: Mapping[str, Any], product: lock.Product) -> VenvPlan:
    """The venv of `product` for the host's interpreter (`facts`: its python, arch, glibc and the
    venv id it runs)."""
    target = lock.TargetPython(facts["python"], facts["arch"], facts["glibc"])
    lock_text = lock.lock_for(target, product).read_text()
    version = lock.check_lock(lock_text, product)
    venv_id = lock.digest(f"{lock_text}\n# {lock.VENV_BUILD}\n".encode())
    return VenvPlan(target, lock_text, version, venv_id, facts.get("installed_venv_id") == venv_id, product)


@dataclass(frozen=True)
class RedisPlan:
    settings: RedisSettings
    password: SecretText
    fleet: Fleet


@dataclass(frozen=True)
class DbPlan:
    settings: DbSettings
    password: SecretText
    fleet: Fleet


@dataclass(frozen=True)
class MonitorPlan:
    settings: MonitorSettings
    fleet: Fleet


@dataclass(frozen=True)
class NodePlan:
    """What every managed host exports to the `monitor` host: the node exporter, and the expiry of the
    certificates it serves (its textfile collector)."""

    monitor: MonitorSettings
    certificates: tuple[CertificateSummary, ...] = ()
    # The exporters of the parts this host runs: HAProxy's own, Redis's (it logs in as its own ACL user,
    # whose password is derived from the gateways': tasks/monitor/exporters.py), PostgreSQL's.
    lb: bool = False
    redis: RedisSettings | None = None
    redis_password: SecretText | None = None
    db: DbSettings | None = None


@dataclass(frozen=True)
class WebuiPlan:
    settings: WebuiSettings
    client: WebuiClient
    secrets: WebuiSecrets
    ca_pem: str = ""  # the operator's CA (ca_bundle), for the host's trust store


@dataclass(frozen=True)
class LbPlan:
    settings: LbSettings
    fleet: Fleet
    tls: TlsMaterial | None = None  # HAProxy serves HTTPS with it
    ca_pem: str = ""  # the operator's CA (ca_bundle), for the host's trust store
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostPlan:
    """What one host runs: any of the components, by its groups."""

    gateway: GatewayPlan | None = None
    redis: RedisPlan | None = None
    lb: LbPlan | None = None
    db: DbPlan | None = None
    monitor: MonitorPlan | None = None
    node: NodePlan | None = None  # with a `monitor` host
    webui: WebuiPlan | None = None

    @property
    def components(self) -> bool:
        """The host is in one of the component groups (the deploy manages it)."""
        return any((self.gateway, self.redis, self.lb, self.db, self.monitor, self.webui))

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the deploy says before changing this host, refusing nothing."""
        return (*(self.gateway.warnings if self.gateway else ()), *(self.lb.warnings if self.lb else ()))


def gateway_plan(data: Mapping[str, Any], inventory_name: str, with_redis: bool = False,
                 behind_balancers: bool = False, with_db: bool = False) -> GatewayPlan:
    """Validate everything before any host is touched (raises SettingsError listing every problem)."""
    settings = load_settings(data, inventory_name, behind_balancers)
    problems: list[str] = []
    try:
        secrets = load_secrets(settings, with_redis=with_redis, with_db=with_db)
    except SettingsError as error:
        problems += error.problems
    tls, ca_pem, warnings, trouble = host_tls(settings.tls_certificate, settings.tls_key, settings.ca_bundle,
                                              settings.gateway_url, settings.tls_min_days_left)
    problems += trouble
    if problems:
        raise SettingsError(problems)
    return GatewayPlan(settings, secrets, tls=tls, warnings=warnings, ca_pem=ca_pem)


def host_tls(certificate: str | None, key: str | None, ca_bundle: str | None, url: str, min_days_left: int
             ) -> tuple[TlsMaterial | None, str, tuple[str, ...], list[str]]:
    """What a host serving `url` gets of the operator's TLS files, checked: the certificate and key when
    it serves HTTPS (both set), the CA text for its trust store; then the warnings and the problems."""
    if certificate and key:
        checked = load_tls(str(certificate), str(key), ca_bundle, urlsplit(url).hostname or "", min_days_left)
        ca_pem = checked.material.ca_pem if checked.material else ""
        return checked.material, ca_pem, tuple(checked.warnings), checked.problems
    if ca_bundle:
        ca_pem, problems = load_ca(ca_bundle)
        return None, ca_pem, (), problems
    return None, "", (), []


class _Problems:
    """Problems by host: listed once, prefixed with the hosts they apply to unless all of them."""

    def __init__(self) -> None:
        self.hosts: dict[str, list[str]] = {}
        self.checked = 0

    def add(self, host: str | None, found: list[str]) -> None:
        for problem in found:
            names = self.hosts.setdefault(problem, [])
            if host is not None:
                names.append(host)

    def raise_any(self) -> None:
        if self.hosts:
            raise SettingsError([f"{', '.join(names)}: {problem}" if names and len(names) < self.checked else problem
                                 for problem, names in self.hosts.items()])


def fleet_plans(hosts: Iterable[tuple[str, Mapping[str, Any], Collection[str]]], foreign: Iterable[str] = ()
                ) -> dict[str, HostPlan]:
    """Every host's plan, or one SettingsError listing the problems of every host (name, data, its
    groups): unknown knob names anywhere, each component's settings, the gateways' secrets, and the
    rules that span groups (fleet.py)."""
    problems = _Problems()
    members = list(hosts)
    in_group = {group: [name for name, _, groups in members if group in groups] for group in COMPONENT_GROUPS}
    with_redis, with_db = bool(in_group["redis"]), bool(in_group["db"])
    gateways: dict[str, GatewayPlan] = {}
    redis: dict[str, RedisSettings] = {}
    lbs: dict[str, LbSettings] = {}
    dbs: dict[str, DbSettings] = {}
    monitors: dict[str, MonitorSettings] = {}
    webuis: dict[str, WebuiSettings] = {}
    for name, data, groups in members:
        problems.checked += 1
        problems.add(name, unknown_knob_problems(data, foreign))
        if "litellm" in groups:
            try:
                gateways[name] = gateway_plan(data, name, with_redis, behind_balancers=bool(in_group["lb"]),
                                              with_db=with_db)
            except SettingsError as error:
                problems.add(name, error.problems)
        for group, loader, found in (("redis", load_redis, redis), ("lb", load_lb, lbs), ("db", load_db, dbs),
                                     ("monitor", load_monitor, monitors), ("webui", load_webui, webuis)):
            if group in groups:
                settings, trouble = loader(name, data)
                problems.add(name, trouble)
                if settings is not None:
                    found[name] = settings  # type: ignore[assignment]
    lb_tls = {}
    data_of = {name: data for name, data, _ in members}
    for name, settings in list(lbs.items()):
        served = (data_of[name]["tls_certificate"], data_of[name]["tls_key"]) if settings.serves_tls else (None, None)
        material, ca_pem, warnings, trouble = host_tls(*served, settings.ca_bundle, settings.lb_url,
                                                       settings.tls_min_days_left)
        problems.add(name, trouble)
        lb_tls[name] = (material, ca_pem, warnings)
        lbs[name] = replace(settings, certificate=material.certificate if material else None)
    monitor = next(iter(monitors.values()), None)
    problems.add(None, fleet_problems(in_group["redis"], in_group["lb"], in_group["litellm"],
                                      {n: p.settings for n, p in gateways.items()}, list(lbs.values()), in_group["db"],
                                      in_group["monitor"], monitor))
    first = next(iter(gateways.values()), None)
    for group in ("redis", "db") if first else ():  # one password each for the whole service: checked once
        if in_group[group]:
            problems.add(None, service_password_problems(first.secrets, group))
    webui_plans = _webui_plans(webuis, first, tuple(lbs.values()), problems)
    problems.raise_any()
    fleet = Fleet(next(iter(redis.values()), None), tuple(lbs.values()),
                  tuple(Member.of(name, plan.settings) for name, plan in gateways.items()),
                  next(iter(dbs.values()), None), monitor,
                  tuple(name for name, _, groups in members if set(groups) & set(COMPONENT_GROUPS)))
    password = SecretText(first.secrets.redis_password) if first and with_redis else None
    db_password = SecretText(first.secrets.db_password) if first and with_db else None
    plans: dict[str, HostPlan] = {}
    for name, _, _ in members:
        gateway = gateways.get(name)
        plans[name] = HostPlan(
            gateway=GatewayPlan(gateway.settings, gateway.secrets, fleet, gateway.tls, gateway.warnings, gateway.ca_pem)
            if gateway else None,
            redis=RedisPlan(redis[name], password, fleet) if name in redis and password else None,
            lb=LbPlan(lbs[name], fleet, *lb_tls[name]) if name in lbs else None,
            db=DbPlan(dbs[name], db_password, fleet) if name in dbs and db_password else None,
            monitor=MonitorPlan(monitors[name], fleet) if name in monitors else None,
            node=NodePlan(monitor, served_certificates(gateway, lb_tls.get(name, (None,))[0]), lb=name in lbs,
                          redis=redis.get(name), redis_password=password if name in redis else None, db=dbs.get(name))
            if monitor and name in fleet.hosts else None,
            webui=webui_plans.get(name))
    return plans


def _webui_plans(webuis: Mapping[str, WebuiSettings], gateway: GatewayPlan | None, lbs: tuple[LbSettings, ...],
                 problems: _Problems) -> dict[str, WebuiPlan]:
    """Open WebUI's host: one, with a gateway to use (the first gateway's settings and secrets say
    which models its key may use and hold the key's value)."""
    if len(webuis) > 1:
        problems.add(None, [f"webui: {len(webuis)} hosts ({', '.join(webuis)}); each Open WebUI keeps its own "
                            f"accounts and chats: keep one host in the `webui` group"])
    if webuis and gateway is None:
        problems.add(None, ["webui: no valid gateway to use; add hosts to the `litellm` group (or fix theirs) or "
                            "remove the `webui` group"])
        return {}
    plans = {}
    for name, settings in webuis.items():
        client, trouble = webui_client(settings, gateway.settings, lbs)
        secrets, more = load_webui_secrets(gateway.settings, gateway.secrets, settings.webui_client_key)
        problems.add(name, trouble + more)
        if client and secrets and not trouble:
            plans[name] = WebuiPlan(settings, client, secrets, gateway.ca_pem)
    return plans


def served_certificates(gateway: GatewayPlan | None, lb_material: TlsMaterial | None) -> tuple[CertificateSummary, ...]:
    """The certificates a host serves to clients: its gateway's, its HAProxy's."""
    return tuple(m.certificate for m in (gateway.tls if gateway else None, lb_material) if m)


def connector_data_names() -> set[str]:
    """Host data names pyinfra's connectors read (ssh_user, docker_platform...): not our knobs."""
    return {name for connector in get_all_connectors().values() for name in getattr(connector, "data_meta", {})}


def run_plans(state: Any) -> dict[str, HostPlan]:
    """fleet_plans for this pyinfra run's inventory, once per run (deploy.py runs once per host)."""
    if not hasattr(state, "hx_plans"):
        state.hx_plans = fleet_plans(((h.name, h.data.dict(), host_groups(state.inventory, h.name))
                                      for h in state.inventory), connector_data_names())
    return state.hx_plans


def host_groups(inventory: Any, name: str) -> frozenset[str]:
    """The component groups a host is in."""
    return frozenset(g for g in COMPONENT_GROUPS if name in {h.name for h in inventory.get_group(g, [])})
