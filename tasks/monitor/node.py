"""What every host the deploy manages exports to the `monitor` host: the OS package's node exporter
(answering the monitoring host and loopback only), the expiry of the certificates the host serves (its
textfile collector) and, on a gateway, LiteLLM's own metrics process beside the service.

preflight (what the monitoring host's name resolves to here) -> install (the package, without its
recommends) -> configure (the command line, an access and hardening drop-in, the certificates file)
-> activate (restart only when the command line or drop-in changed; then it must answer).
Knobs: group_data/monitor.py; templates: templates/monitor/.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server, systemd
from pyinfra.operations.util import any_changed

from hx_gateway.model.fleet import MonitorSettings, host_part
from hx_gateway.model.plan import NodePlan
from hx_gateway.model.settings import Settings
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
from tasks.component import ComponentPreflightError, activate, reload_units

PACKAGE = "prometheus-node-exporter"
UNIT = "prometheus-node-exporter.service"
DROPIN = ManagedDirectory(f"/etc/systemd/system/{UNIT}.d", "root", "root", "755")
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's, made by the package
FILES = {
    "args": ManagedFile("/etc/default/prometheus-node-exporter", "root", "root", "644"),
    "access": ManagedFile(f"{DROPIN.path}/hx-access.conf", "root", "root", "644"),
}
CERTIFICATES = ManagedFile(f"{TEXTFILE_DIR}/hx_tls.prom", "root", "root", "644")
ANSWERS = ("for i in $(seq 1 50); do python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], "
           "timeout=2)' {url} 2>/dev/null && exit 0; sleep 0.2; done; echo \"{what} does not answer on {url}\" >&2; "
           "journalctl -u {unit} -n 20 --no-pager >&2; exit 1")

_env = template_environment("monitor")


def metrics_unit(settings: Settings) -> str:
    return f"{settings.service_name}-metrics.service"


def metrics_file(settings: Settings) -> ManagedFile:
    return ManagedFile(f"/etc/systemd/system/{metrics_unit(settings)}", "root", "root", "644")


def monitor_addresses(monitor: MonitorSettings, resolves: dict[str, list[str]]) -> list[str]:
    """The monitoring host's addresses as this host sees them: the only peers its exporters answer."""
    found = resolves.get(monitor.address, [])
    if not found:
        raise ComponentPreflightError(
            f"preflight failed on {host.name} (monitoring); nothing was changed:\n  - the monitoring host "
            f"{monitor.address} does not resolve here, so its exporters could not admit it; add it to DNS or to "
            f"/etc/hosts here, or set monitor_bind_address to its address")
    return sorted(found)


@deploy("Exporters for Prometheus")
def node(plan: NodePlan, gateway: Settings | None) -> None:
    m = plan.monitor
    files = [*FILES.values(), CERTIFICATES, *([metrics_file(gateway)] if gateway else [])]
    units = (UNIT, *([metrics_unit(gateway)] if gateway else []))
    facts, states, resolves = read_together(
        (ComponentHost, {"host_name": host_part(host.name), "units": units, "packages": (PACKAGE,),
                         "directories": (DROPIN.path,), "reads": tuple(f.path for f in FILES.values()),
                         "reloads": False}),
        (FileStates, file_states_arguments(files)), (Resolves, {"names": (m.address,)}))
    allowed = monitor_addresses(m, resolves)
    installed_now = not facts["versions"][PACKAGE]
    if installed_now:
        apt.packages(name="Install the node exporter (OS package, without its recommends)", packages=[PACKAGE],
                     no_recommends=True, update=True)
    contents = {"args": _env.get_template("node-exporter.default.j2").render(m=m, textfile_dir=TEXTFILE_DIR),
                "access": _env.get_template("access.conf.j2").render(monitor=m.address, allowed=allowed)}
    batch = tuple(files)
    ensure_directory(DROPIN, facts["directories"])
    ops = {key: managed_file(name=f"Node exporter {file.path}", file=file, content=contents[key], batch=batch)
           for key, file in FILES.items()}
    if plan.certificates:
        managed_file(name=f"Certificate expiry for Prometheus {CERTIFICATES.path}", file=CERTIFICATES,
                     content=_env.get_template("tls.prom.j2").render(certificates=plan.certificates), batch=batch)
    else:
        remove_if_present([CERTIFICATES], states, "this host serves no certificate")
    reload_units(FILES["access"], ops["access"], facts["units"][UNIT], "node exporter")
    url = f"http://127.0.0.1:{m.node_exporter_port}/metrics"
    activate(UNIT, facts["units"][UNIT], list(ops.values()), reload=False,
             check=ANSWERS.format(url=url, what="The node exporter", unit=UNIT),
             check_name=f"The node exporter answers on port {m.node_exporter_port}", installed_now=installed_now)
    if gateway:
        gateway_metrics(gateway, m, allowed, facts["units"][metrics_unit(gateway)], batch)


@deploy("Exporters for Prometheus (no `monitor` host)")
def node_removed(gateway: Settings | None) -> None:
    """Without a `monitor` host, what `node` set up goes: the gateway's metrics unit, and the node
    exporter (stopped and disabled; the OS package stays) with the files the deploy wrote for it."""
    # A unit is ours to stop when the file the deploy wrote for it is there (the node exporter's drop-in).
    ours = [(UNIT, FILES["access"]), *([(metrics_unit(gateway), metrics_file(gateway))] if gateway else [])]
    states = cached_fact(FileStates, **file_states_arguments([*FILES.values(), CERTIFICATES, *(f for _, f in ours)]))
    found = [(unit, file) for unit, file in ours if states.get(file.path, {}).get("exists")]
    if not found:
        return
    for unit, _ in found:
        systemd.service(name=f"Stop and disable {unit} (no `monitor` host)", service=unit, running=False, enabled=False)
    removed = remove_if_present([*(f for _, f in ours), CERTIFICATES], states, "no `monitor` host")
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
    check = ANSWERS.format(url=url, what="The gateway's metrics process", unit=unit)
    if op.will_change:
        systemd.daemon_reload(name="systemd daemon-reload (gateway metrics unit changed)", _if=op.did_change)
    if not (unit_state.get("active") and unit_state.get("enabled")):
        started = systemd.service(name=f"{unit} enabled and running", service=unit, running=True, enabled=True)
        server.shell(name="The gateway's metrics process answers", commands=[check], _if=started.did_change)
    elif op.will_change:
        done = restart_service(name=f"Restart {unit} (its unit changed)", service=unit, _if=op.did_change)
        server.shell(name="The gateway's metrics process answers", commands=[check], _if=done.did_change)
