"""One line at the end of a dry run: "no changes", or what will change where.

pyinfra prints a table of operations; with several hosts and conditional operations (restart, health
check) it takes reading. This prints the verdict, after the last host disconnects.
"""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import Host, State
from pyinfra.api.state import BaseStateCallback, StateStage
from pyinfra_cli.prints import build_plan_json


def plan_verdict(plan: list[dict], hosts: list[str]) -> str:
    """From pyinfra's own plan (build_plan_json): the verdict in one line."""
    changes = {h: sum(h in op["hosts_with_change"] for op in plan) for h in hosts}
    conditional = {h: sum(h in op["hosts_with_conditional_change"] for op in plan) for h in hosts}
    if not any(changes.values()):
        return f"Plan: no changes ({len(hosts)} host{'s' if len(hosts) != 1 else ''})"
    parts = [f"{h}: {changes[h]} change(s)" + (f" + {conditional[h]} that follow them (restart, health check, "
                                                  f"generation)" if conditional[h] else "")
             for h in hosts if changes[h]]
    return "Plan: " + "; ".join(parts)


class PlanSummary(BaseStateCallback):
    def __init__(self) -> None:
        self.disconnected: set[str] = set()

    def host_disconnect(self, state: State, host: Host) -> None:  # type: ignore[override]
        self.disconnected.add(host.name)
        hosts = sorted(h.name for h in state.activated_hosts)
        # Only for a run that stopped after planning (--dry): an executed run has its results table.
        if self.disconnected < set(hosts) or state.current_stage != StateStage.Prepare or state.failed_hosts:
            return
        logger.info(f"--> {plan_verdict(build_plan_json(state), hosts)}")


def announce_plan_verdict(state: State) -> None:
    """Register once per run (deploy.py runs once per host)."""
    if not any(isinstance(h, PlanSummary) for h in state.callback_handlers):
        state.add_callback_handler(PlanSummary())
