"""The monitoring, proven from the monitoring host: Prometheus scrapes every target the inventory says
it should (each managed host's node exporter, each gateway's metrics process, itself), and each is up."""

from __future__ import annotations

import time
from collections.abc import Callable

from hx_gateway.model.fleet import Fleet, MonitorSettings, host_part
from hx_gateway.proof.checks import Check

MONITOR_VALIDATION_PLAN: dict[str, str] = {
    "prometheus_targets_up": "Prometheus on the `monitor` host scrapes every target the inventory names (node "
                             "exporters, gateway metrics, itself) and each is up",
}


def expected_targets(fleet: Fleet, monitor: MonitorSettings) -> set[tuple[str, str]]:
    """(job, host label) of every target the scrape config names (tasks/monitor/)."""
    from tasks.monitor import targets  # the component owns its scrape targets

    wanted = {(job, t.labels["host"]) for job, found in targets(fleet, monitor).items() for t in found}
    return wanted | {("prometheus", host_part(monitor.host))}


def targets_check(fleet: Fleet, monitor: MonitorSettings, read: Callable[[], list[dict[str, str]]],
                  wait: float | None = None) -> Check:
    """Wait (up to two scrape intervals and 10 s) for every expected target to be up; `read`: the
    monitoring host's PrometheusTargets."""
    wanted = expected_targets(fleet, monitor)
    deadline = time.monotonic() + (wait if wait is not None else 2 * monitor.monitor_scrape_interval + 10)
    while True:
        found = read()
        health = {(t.get("job", ""), t.get("host", "")): t for t in found if "error" not in t}
        missing = sorted(wanted - set(health))
        down = sorted(key for key in wanted & set(health) if health[key]["health"] != "up")
        if (not missing and not down) or time.monotonic() > deadline:
            break
        time.sleep(1)
    errors = [t["error"] for t in found if "error" in t]
    seen = "; ".join([*errors, *(f"{job} {name}: not scraped" for job, name in missing),
                      *(f"{job} {name}: {health[(job, name)]['health']} ({health[(job, name)]['last_error'] or '-'})"
                        for job, name in down)]) or f"{len(wanted)} targets up"
    fix = (f"on {host_part(monitor.host)}: journalctl -u prometheus; on a target that is down, is its exporter "
           f"running (prometheus-node-exporter, <service>-metrics) and does it admit the monitoring host "
           f"(its unit's IPAddressAllow=)?")
    return Check(monitor.host, "prometheus_targets_up", not errors and not missing and not down,
                 f"{len(wanted)} targets up", seen, fix)
