"""What every host the deploy manages exports to the `monitor` host, answering the monitoring host and
loopback only: the OS packages' node exporter (with the expiry of the certificates the host serves, in
its textfile collector), their Redis and PostgreSQL exporters on the `redis` and `db` hosts and, on a
gateway, LiteLLM's own metrics process beside the service (HAProxy exports by itself: tasks/lb/).

preflight (what the monitoring host's name resolves to here) -> install (the package, without its
recommends) -> configure (the command line, an access and hardening drop-in, the certificates file)
-> activate (restart only when the command line or drop-in changed; then it must answer).
Knobs: group_data/monitor.py; templates: templates/monitor/.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server, systemd
from pyinfra.operations.util import any_changed

from hx_gateway.host.postgres import MONITOR_ROLE
from hx_gateway.model.fleet import MonitorSettings, host_part
from hx_gateway.model.plan import NodePlan
from hx_gateway.model.secrets import SecretText
from hx_gateway.model.settings import Settings
from hx_gateway.model.tls import CertificateSummary
from hx_gateway.pyinfra_ext import render
from hx_gateway.pyinfra_ext.fact_cache import cached_fact, read_together
from hx_gateway.pyinfra_ext.facts import ComponentHost, FileStates, Resolves
from hx_gateway.pyinfra_ext.operations import (
    ensure_directory,
    file_states_arguments,
    managed_file,
    remove_if_present,
    restart_service,
)
from hx_gateway.pyinfra_ext.render import ManagedDirectory, ManagedFile, template_environment
from tasks.component import activate, answers, monitor_addresses, reload_units
from tasks.redis import EXPORTER_USER, exporter_password

TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's, made by the package
CERTIFICATES = ManagedFile(f"{TEXTFILE_DIR}/hx_tls.prom", "root", "root", "644")


@dataclass(frozen=True)
class Exporter:
    """An exporter from the OS packages: its unit reads /etc/default/<package> (rendered from
    templates/monitor/<package>.default.j2) and gets the deploy's access drop-in; it restarts when
    either changed."""

    what: str
    package: str
    port_knob: str  # its MonitorSettings field
    secret: bool = False  # its settings hold a password

    @property
    def unit(self) -> str:
        return f"{self.package}.service"

    @property
    def dropin(self) -> ManagedDirectory:
        return ManagedDirectory(f"/etc/systemd/system/{self.unit}.d", "root", "root", "755")

    @property
    def defaults(self) -> ManagedFile:
        return ManagedFile(f"/etc/default/{self.package}", "root", "root", "600" if self.secret else "644",
                           secret=self.secret, dotenv=self.secret)

    @property
    def access(self) -> ManagedFile:
        return ManagedFile(f"{self.dropin.path}/hx-access.conf", "root", "root", "644")


NODE = Exporter("The node exporter", "prometheus-node-exporter", "node_exporter_port")
REDIS = Exporter("The Redis exporter", "prometheus-redis-exporter", "redis_exporter_port", secret=True)
POSTGRES = Exporter("The PostgreSQL exporter", "prometheus-postgres-exporter", "postgres_exporter_port")
EXPORTERS = (NODE, REDIS, POSTGRES)

_env = template_environment("monitor")


def metrics_unit(settings: Settings) -> str:
    return f"{settings.service_name}-metrics.service"


def metrics_file(settings: Settings) -> ManagedFile:
    return ManagedFile(f"/etc/systemd/system/{metrics_unit(settings)}", "root", "root", "644")


def certificates_text(certificates: tuple[CertificateSummary, ...]) -> str:
    """When each certificate the host serves expires, for the node exporter's textfile collector."""
    return _env.get_template("tls.prom.j2").render(certificates=certificates)


def exporters_of(plan: NodePlan) -> list[Exporter]:
    return [NODE, *([REDIS] if plan.redis else []), *([POSTGRES] if plan.db else [])]


def defaults_text(exporter: Exporter, plan: NodePlan) -> str | SecretText:
    template = _env.get_template(f"{exporter.package}.default.j2")
    if exporter is REDIS and plan.redis and plan.redis_password:
        return SecretText(template.render(m=plan.monitor, redis=plan.redis, user=EXPORTER_USER,
                                          password=exporter_password(plan.redis_password).reveal()))
    return template.render(m=plan.monitor, textfile_dir=TEXTFILE_DIR, db=plan.db, role=MONITOR_ROLE)


@deploy("Exporters for Prometheus")
def node(plan: NodePlan, gateway: Settings | None) -> None:
    m, exporters = plan.monitor, exporters_of(plan)
    files = [*(f for e in exporters for f in (e.defaults, e.access)), CERTIFICATES,
             *([metrics_file(gateway)] if gateway else [])]
    units = (*(e.unit for e in exporters), *([metrics_unit(gateway)] if gateway else []))
    facts, states, resolves = read_together(
        (ComponentHost, {"host_name": host_part(host.name), "units": units,
                         "packages": tuple(e.package for e in exporters), "directories": tuple(e.dropin.path
                                                                                       for e in exporters),
                         "reads": tuple(f.path for e in exporters for f in (e.defaults, e.access)), "reloads": False}),
        (FileStates, file_states_arguments(files)), (Resolves, {"names": (m.address,)}))
    allowed = monitor_addresses(m, resolves)
    missing = [e.package for e in exporters if not facts["versions"][e.package]]
    if missing:
        apt.packages(name=f"Install {', '.join(missing)} (OS packages, without their recommends)", packages=missing,
                     no_recommends=True, update=True)
    batch = tuple(files)
    access = _env.get_template("access.conf.j2").render(monitor=m.address, allowed=allowed)
    for exporter in exporters:
        ensure_directory(exporter.dropin, facts["directories"])
        hidden = " (contents hidden)" if exporter.secret else ""
        ops = [managed_file(name=f"{exporter.what}: {exporter.defaults.path}{hidden}", file=exporter.defaults,
                            content=defaults_text(exporter, plan), batch=batch),
               managed_file(name=f"{exporter.what}: {exporter.access.path}", file=exporter.access, content=access,
                            batch=batch)]
        # One reading for every unit names all exporters' files: a unit is stale only for its own.
        own = (exporter.defaults.path, exporter.access.path)
        unit_state = {**facts["units"][exporter.unit],
                      "stale": [p for p in facts["units"][exporter.unit].get("stale", []) if p in own]}
        reload_units(exporter.access, ops[1], unit_state, exporter.what)
        port = getattr(m, exporter.port_knob)
        url = f"http://127.0.0.1:{port}/metrics"
        activate(exporter.unit, unit_state, ops, reload=False,
                 check=answers(url, exporter.what, exporter.unit),
                 check_name=f"{exporter.what} answers on port {port}", installed_now=exporter.package in missing)
    if plan.certificates:
        managed_file(name=f"Certificate expiry for Prometheus {CERTIFICATES.path}", file=CERTIFICATES,
                     content=certificates_text(plan.certificates), batch=batch)
    else:
        remove_if_present([CERTIFICATES], states, "this host serves no certificate")
    if gateway:
        gateway_metrics(gateway, m, allowed, facts["units"][metrics_unit(gateway)], batch)


def _units_ours(gateway: Settings | None) -> list[tuple[str, ManagedFile]]:
    """A unit is ours to stop when the file the deploy wrote for it is there (an exporter's access drop-in)."""
    return [*((e.unit, e.access) for e in EXPORTERS), *([(metrics_unit(gateway), metrics_file(gateway))]
                                                         if gateway else [])]


def removal_reads(gateway: Settings | None) -> list[tuple[type[FileStates], dict]]:
    """What `node_removed` reads (for fact_cache.read_later: the component's own reading brings it)."""
    written = [*(f for e in EXPORTERS for f in (e.defaults, e.access)), CERTIFICATES,
               *(f for _, f in _units_ours(gateway))]
    return [(FileStates, file_states_arguments(written))]


@deploy("Exporters for Prometheus (no `monitor` host)")
def node_removed(gateway: Settings | None) -> None:
    """Without a `monitor` host, what `node` set up goes: the gateway's metrics unit, and the node
    exporter (stopped and disabled; the OS package stays) with the files the deploy wrote for it."""
    ours = _units_ours(gateway)
    (fact, arguments), = removal_reads(gateway)
    states = cached_fact(fact, **arguments)
    found = [(unit, file) for unit, file in ours if states.get(file.path, {}).get("exists")]
    if not found:
        return
    for unit, _ in found:
        systemd.service(name=f"Stop and disable {unit} (no `monitor` host)", service=unit, running=False, enabled=False)
    secrets = [e.defaults for e in EXPORTERS if e.secret]  # a password stays on no host that no longer needs it
    removed = remove_if_present([*(f for _, f in ours), CERTIFICATES, *secrets], states, "no `monitor` host")
    systemd.daemon_reload(name="systemd daemon-reload (exporter units removed)", _if=any_changed(*removed.values()))


def gateway_metrics(settings: Settings, m: MonitorSettings, allowed: list[str], unit_state: dict,
                    batch: tuple[ManagedFile, ...]) -> None:
    """LiteLLM's metrics process (its documented sidecar mode) as a unit of its own, so that systemd's
    IP allow-list admits the monitoring host to it and nobody new to the gateway. It runs and stops
    with the gateway (BindsTo, PartOf, WantedBy)."""
    unit = metrics_unit(settings)
    text = _env.get_template("gateway-metrics.service.j2").render(
        s=settings, host="0.0.0.0", port=m.gateway_metrics_port, multiproc_dir=render.metrics_directory(settings),
        monitor=m.address, allowed=allowed)
    op = managed_file(name=f"Gateway metrics unit {metrics_file(settings).path}", file=metrics_file(settings),
                      content=text, batch=batch)
    url = f"http://127.0.0.1:{m.gateway_metrics_port}/metrics"
    check = answers(url, "The gateway's metrics process", unit)
    if op.will_change:
        systemd.daemon_reload(name="systemd daemon-reload (gateway metrics unit changed)", _if=op.did_change)
    if not (unit_state.get("active") and unit_state.get("enabled")):
        started = systemd.service(name=f"{unit} enabled and running", service=unit, running=True, enabled=True)
        server.shell(name="The gateway's metrics process answers", commands=[check], _if=started.did_change)
    elif op.will_change:
        done = restart_service(name=f"Restart {unit} (its unit changed)", service=unit, _if=op.did_change)
        server.shell(name="The gateway's metrics process answers", commands=[check], _if=done.did_change)
