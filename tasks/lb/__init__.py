"""The balancer component (group `lb`, one or more hosts): HAProxy in front of every gateway.

preflight (facts only) -> install (the OS package) -> configure (with TLS on: the operator's CA in
the trust store and the certificate with its key; haproxy.cfg rendered from the inventory, checked by
`haproxy -c` before it replaces the old one) -> activate (a reload, which keeps every connection, only
when something it reads changed; then every gateway must be listed). The rolling restart
of the gateways drains them here through the runtime API (hx_gateway/pyinfra_ext/roll.py).
Knobs: group_data/lb.py, typed in hx_gateway/model/fleet.py; template: templates/lb/.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt

from hx_gateway.host import haproxy as host_haproxy
from hx_gateway.model.fleet import Fleet, LbSettings, host_part, host_port
from hx_gateway.model.plan import LbPlan
from hx_gateway.pyinfra_ext.facts import Resolves, shell_command
from hx_gateway.pyinfra_ext.operations import certificate_change, managed_file, remove_if_present, trust_ca
from hx_gateway.pyinfra_ext.render import CA, ManagedFile, template_environment
from tasks.component import activate, monitor_addresses, read_component_host

PACKAGE = "haproxy"
UNIT = "haproxy.service"
BACKEND = "litellm_gateways"
SOCKET = "/run/haproxy/admin.sock"
CONFIG = ManagedFile("/etc/haproxy/haproxy.cfg", "root", "haproxy", "640")
# HTTPS: the chain, and its key beside it (HAProxy loads "<crt>.key" when the crt holds no key), read
# at start and at each reload before HAProxy drops root; the key is a secret (root only).
CERTIFICATE = ManagedFile("/etc/haproxy/hx-gateway.pem", "root", "root", "644")
KEY = ManagedFile("/etc/haproxy/hx-gateway.pem.key", "root", "root", "600", secret=True)
FILES = (CONFIG, CERTIFICATE, KEY, CA)  # read together, in one round trip
HOST_HAPROXY = Path(host_haproxy.__file__).read_text()


_env = template_environment("lb")
_env.filters["host_port"] = host_port


def render_config(settings: LbSettings, fleet: Fleet, monitor_addresses: list[str] | None = None) -> str:
    """`monitor_addresses`: the monitoring host's addresses as this host resolves them (with a `monitor`
    host: HAProxy's exporter answers them and loopback only)."""
    metrics = {"bind": f":{fleet.monitor.haproxy_exporter_port}", "monitor": fleet.monitor.address,
               "allowed": monitor_addresses or []} if fleet.monitor else None
    return _env.get_template("haproxy.cfg.j2").render(
        lb=settings, members=fleet.gateways, backend=BACKEND, socket=SOCKET,
        bind=host_port(settings.lb_bind_host, settings.lb_port), tls=settings.serves_tls,
        certificate=CERTIFICATE.path, metrics=metrics)


def runtime_command(command: str, *args: object) -> str:
    """A runtime API call on the balancer host (hx_gateway/host/haproxy.py), as a shell command."""
    return shell_command((HOST_HAPROXY, [command, json.dumps([SOCKET, BACKEND, *args])]))


def serves_every_gateway(fleet: Fleet) -> str:
    """A shell check: the running HAProxy lists every gateway. Not "every gateway UP": pyinfra runs each
    host's operations in order but interleaves the hosts, so a gateway may start later in this run
    (verify proves them UP; the rolling restart waits for UP)."""
    return runtime_command("listed", [m.name for m in fleet.gateways])


@deploy("Load balancer")
def lb(plan: LbPlan) -> None:
    facts = read_component_host("lb", host_part(plan.settings.host), UNIT, PACKAGE, list(FILES), reloads=True,
                                unread=(CA,))  # HAProxy never reads the CA: no reload for it
    monitor = plan.fleet.monitor
    allowed = monitor_addresses(monitor, host.get_fact(Resolves, names=(monitor.address,))) if monitor else None
    if not facts["versions"][PACKAGE]:
        apt.packages(name="Install haproxy (OS package)", packages=[PACKAGE], update=True)
    trust_ca(plan.ca_pem, facts["files"], FILES)
    changed = []
    if plan.tls:  # before the configuration, whose check loads them
        changed += [managed_file(name=f"HAProxy TLS certificate ({plan.tls.certificate.describe()}) {CERTIFICATE.path}",
                                 file=CERTIFICATE, content=plan.tls.chain_pem, batch=FILES,
                                 about=certificate_change(CERTIFICATE, plan.tls, FILES)),
                    managed_file(name=f"HAProxy TLS private key {KEY.path} (contents hidden)", file=KEY,
                                 content=plan.tls.key, batch=FILES)]
    changed.append(managed_file(name=f"HAProxy {CONFIG.path}", file=CONFIG,
                                content=render_config(plan.settings, plan.fleet, allowed), batch=FILES,
                                check="haproxy -c -q -f {}"))
    if not plan.tls:  # after the configuration that no longer reads them
        changed += remove_if_present([CERTIFICATE, KEY], facts["files"], "TLS no longer declared").values()
    activate(UNIT, facts["units"][UNIT], changed, reload=True, check=serves_every_gateway(plan.fleet),
             check_name="HAProxy runs the new configuration (every gateway listed)",
             installed_now=not facts["versions"][PACKAGE])
