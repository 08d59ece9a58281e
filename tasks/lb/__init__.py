"""The balancer component (group `lb`, one or more hosts): HAProxy in front of every gateway.

preflight (facts only) -> install (the OS package) -> configure (haproxy.cfg rendered from the
inventory, checked by `haproxy -c` before it replaces the old one) -> activate (a reload, which
keeps every connection, only when it changed; then every gateway must be UP). The rolling restart
of the gateways drains them here through the runtime API (hx_gateway/pyinfra_ext/roll.py).
Knobs: group_data/lb.py, typed in hx_gateway/model/fleet.py; template: templates/lb/.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import apt

from hx_gateway.host import haproxy as host_haproxy
from hx_gateway.model.fleet import Fleet, LbSettings, host_part
from hx_gateway.model.plan import LbPlan
from hx_gateway.pyinfra_ext.facts import shell_command
from hx_gateway.pyinfra_ext.operations import managed_file
from hx_gateway.pyinfra_ext.render import ManagedFile, template_environment
from tasks.component import activate, read_component_host

PACKAGE = "haproxy"
UNIT = "haproxy.service"
BACKEND = "litellm_gateways"
SOCKET = "/run/haproxy/admin.sock"
CONFIG = ManagedFile("/etc/haproxy/haproxy.cfg", "root", "haproxy", "640")
HOST_HAPROXY = Path(host_haproxy.__file__).read_text()


def host_port(address: str, port: int) -> str:
    try:
        return f"[{address}]:{port}" if ipaddress.ip_address(address).version == 6 else f"{address}:{port}"
    except ValueError:  # a name
        return f"{address}:{port}"


_env = template_environment("lb")
_env.filters["host_port"] = host_port


def render_config(settings: LbSettings, fleet: Fleet) -> str:
    return _env.get_template("haproxy.cfg.j2").render(
        lb=settings, members=fleet.gateways, backend=BACKEND, socket=SOCKET,
        bind=host_port(settings.lb_bind_host, settings.lb_port))


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
    facts = read_component_host("lb", host_part(plan.settings.host), UNIT, PACKAGE, [CONFIG], reloads=True)
    if not facts["versions"][PACKAGE]:
        apt.packages(name="Install haproxy (OS package)", packages=[PACKAGE], update=True)
    config = managed_file(name=f"HAProxy {CONFIG.path}", file=CONFIG, content=render_config(plan.settings, plan.fleet),
                          batch=(CONFIG,), check="haproxy -c -q -f {}")
    activate(UNIT, facts["units"][UNIT], [config], reload=True, check=serves_every_gateway(plan.fleet),
             check_name="HAProxy runs the new configuration (every gateway listed)",
             installed_now=not facts["versions"][PACKAGE])
