"""The monitoring component (group `monitor`, one host): Prometheus from the OS packages, scraping every
host the deploy manages, with the project's alert rules.

preflight (facts only: the address to bind, what every target's name resolves to there, the package)
-> install (the OS package, without its recommends) -> configure (the rules, then the scrape config,
each checked by promtool before it replaces the old one; the command line; a hardening drop-in)
-> activate (restart when the command line or the hardening changed, else reload when the config or
rules did; then Prometheus must answer). Every other host gets its exporters from tasks/monitor/node.py.
Knobs: group_data/monitor.py, typed in hx_gateway/model/fleet.py; templates: templates/monitor/.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import deploy
from pyinfra.operations import apt

from hx_gateway.model.fleet import Fleet, MonitorSettings, host_part, host_port
from hx_gateway.model.plan import MonitorPlan
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import Resolves
from hx_gateway.pyinfra_ext.operations import ensure_directory, managed_file
from hx_gateway.pyinfra_ext.render import ManagedDirectory, ManagedFile, template_environment
from tasks.component import activate, answers, bind_address, read_component_host, refuse, reload_units

PACKAGE = "prometheus"
UNIT = "prometheus.service"
DROPIN = ManagedDirectory(f"/etc/systemd/system/{UNIT}.d", "root", "root", "755")
RULES_PATH = "/etc/prometheus/hx-gateway.rules.yml"
FILES = {
    "rules": ManagedFile(RULES_PATH, "root", "prometheus", "640"),
    "config": ManagedFile("/etc/prometheus/prometheus.yml", "root", "prometheus", "640"),
    "args": ManagedFile("/etc/default/prometheus", "root", "root", "644"),
    "hardening": ManagedFile(f"{DROPIN.path}/hx-hardening.conf", "root", "root", "644"),
}
# The config is checked with the rules it names, which are written first.
CHECKS = {"rules": "promtool check rules {}", "config": "promtool check config {}"}

_env = template_environment("monitor")


@dataclass(frozen=True)
class Target:
    name: str  # the host part of its inventory name, or the gateway's address: what Prometheus connects to
    port: int
    labels: dict[str, str]  # `host` on every target; `gateway` too on a gateway's (what its alerts group by)

    @property
    def address(self) -> str:
        return host_port(self.name, self.port)


def targets(fleet: Fleet, monitor: MonitorSettings) -> dict[str, list[Target]]:
    """What Prometheus scrapes, by job, from the inventory: each managed host's node exporter, each
    gateway's metrics process, and the exporters of the parts that exist (tasks/monitor/node.py, and
    HAProxy's own: tasks/lb/)."""
    def at(name: str, port: int) -> Target:
        return Target(host_part(name), port, {"host": host_part(name)})

    return {
        "node": [at(name, monitor.node_exporter_port) for name in fleet.hosts],
        "litellm": [Target(m.address, monitor.gateway_metrics_port, {"host": m.name, "gateway": m.name})
                    for m in fleet.gateways],
        "haproxy": [at(lb.host, monitor.haproxy_exporter_port) for lb in fleet.lbs],
        "redis": [at(fleet.redis.host, monitor.redis_exporter_port)] if fleet.redis else [],
        "postgres": [at(fleet.db.host, monitor.postgres_exporter_port)] if fleet.db else [],
    }


def render_config(plan: MonitorPlan, address: str, rules_path: str = RULES_PATH) -> str:
    m, jobs = plan.settings, targets(plan.fleet, plan.settings)
    return _env.get_template("prometheus.yml.j2").render(
        m=m, rules_path=rules_path, self_target=host_port(address, m.monitor_port), monitor_host=host_part(m.host),
        jobs=jobs)


def render_rules(plan: MonitorPlan) -> str:
    """The alert rules for the parts this service has: certificates where a host serves HTTPS, Redis
    and PostgreSQL where their groups exist."""
    fleet = plan.fleet
    certificates = any(m.serves_tls for m in fleet.gateways) or any(lb.serves_tls for lb in fleet.lbs)
    return rules_text(plan.settings, certificates=certificates, redis=fleet.redis is not None, db=fleet.db is not None)


def rules_text(m: MonitorSettings, certificates: bool, redis: bool, db: bool) -> str:
    return _env.get_template("rules.yml.j2").render(m=m, certificates=certificates, redis=redis, db=db)


def target_names(plan: MonitorPlan) -> list[str]:
    return sorted({t.name for jobs in targets(plan.fleet, plan.settings).values() for t in jobs})


def unresolved(names: list[str], resolves: dict[str, list[str]]) -> list[str]:
    """Targets whose names the monitoring host cannot resolve: Prometheus would never reach them."""
    return [f"target {name} does not resolve on this host, so Prometheus could not scrape it; add it to DNS or "
            f"to /etc/hosts here" for name in names if not resolves.get(name)]


@deploy("Prometheus")
def monitor(plan: MonitorPlan) -> None:
    m = plan.settings
    facts = read_component_host("monitor", host_part(m.host), UNIT, PACKAGE, list(FILES.values()), (DROPIN,),
                                unread=(FILES["rules"], FILES["config"]))  # re-read on reload, which no start records
    names = target_names(plan)
    (resolves,) = read_together((Resolves, {"names": tuple(names)}))
    address, problems = bind_address(m.monitor_bind_address, "monitor_bind_address", m.host, facts)
    refuse("monitor", problems + unresolved(names, resolves))
    installed_now = not facts["versions"][PACKAGE]
    if installed_now:
        apt.packages(name="Install Prometheus (OS package, without its recommends)", packages=[PACKAGE],
                     no_recommends=True, update=True)
    listen = host_port(address, m.monitor_port)
    contents = {"rules": render_rules(plan), "config": render_config(plan, address),
                "args": _env.get_template("prometheus.default.j2").render(m=m, listen=listen),
                "hardening": _env.get_template("hardening.conf.j2").render(m=m)}
    batch = tuple(FILES.values())
    ensure_directory(DROPIN, facts["directories"])
    ops = {key: managed_file(name=f"Prometheus {file.path}", file=file, content=contents[key], batch=batch,
                             check=CHECKS.get(key)) for key, file in FILES.items()}
    reload_units(FILES["hardening"], ops["hardening"], facts["units"][UNIT], "Prometheus")
    restart = ops["args"].will_change or ops["hardening"].will_change
    activate(UNIT, facts["units"][UNIT], list(ops.values()), reload=not restart,
             check=answers(f"http://{listen}/-/ready", "Prometheus", UNIT, tries=100, pause=0.3),
             check_name=f"Prometheus is ready on {listen}",
             installed_now=installed_now)
