"""The preview's verdict: one line at the end of a dry run, "no changes" or what will change where.

pyinfra prints a table of operations; with several hosts and conditional operations (restart, health
check) it takes reading. These functions read pyinfra's plan (`build_plan_json`) and say it in one
line, or as a listing; pyinfra_ext/announce.py prints them at the end of a dry run.
"""

from __future__ import annotations

from collections.abc import Collection


def plan_verdict(plan: list[dict], hosts: list[str], degraded: dict[str, list[str]] | None = None) -> str:
    """From pyinfra's own plan (build_plan_json): the verdict in one line; `degraded`: host -> the
    backends a degraded run goes ahead without (HX_ALLOW_BACKENDS_DOWN)."""
    changes = {h: sum(h in op["hosts_with_change"] for op in plan) for h in hosts}
    conditional = {h: sum(h in op["hosts_with_conditional_change"] for op in plan) for h in hosts}
    if not any(changes.values()) and not any(conditional.values()):
        verdict = f"Plan: no changes ({len(hosts)} host{'s' if len(hosts) != 1 else ''})"
    else:
        verdict = "Plan: " + "; ".join(
            f"{h}: {changes[h]} change(s)" + (f" + {conditional[h]} that follow them (restart, health check, "
                                              f"generation)" if conditional[h] else "")
            for h in hosts if changes[h] or conditional[h])
    if degraded:
        verdict += " | DEGRADED run, backends down: " + "; ".join(
            f"{h} without {', '.join(down)}" for h, down in sorted(degraded.items()))
    return verdict


def plan_listing(plan: list[dict], hosts: list[str]) -> list[str]:
    """The planned operations per host, for a run where pyinfra printed no table of its own (-y)."""
    lines = []
    for host in hosts:
        ops = [op["name"] for op in plan if host in op["hosts_with_change"]]
        follow = [op["name"] for op in plan if host in op["hosts_with_conditional_change"]]
        if ops or follow:
            lines.append(f"    {host}:")
            lines += [f"        {name}" for name in ops]
            lines += [f"        then: {name}" for name in follow]
    return lines


def roll_summary(order: list[str], restarting: Collection[str], balancers: int) -> str:
    """A rolling restart in one line: the gateways that restart, in the roll's order (`order`: every
    gateway behind the balancers), and the capacity left while each one restarts."""
    rolled = [name for name in order if name in restarting]
    return (f"Rolling restart: {' -> '.join(rolled)}, one gateway at a time, each drained in {balancers} "
            f"balancer(s) first; while one restarts {len(order) - 1} of {len(order)} gateways serve")
