"""Announce the preview's verdict at the end of a dry run (hx_gateway/pyinfra_ext/summary.py says it).

With `-y` pyinfra skips change detection: it plans every operation without asking whether it would
change anything, so a dry run counted nothing and said "no changes" before a full install. The
deploy therefore always detects changes (`-y` then only skips the confirmation prompt), and where
pyinfra left its table out the verdict lists the planned operations itself.
"""

from __future__ import annotations

from pyinfra import logger
from pyinfra.api import Host, State
from pyinfra.api.state import BaseStateCallback, StateStage
from pyinfra_cli.prints import build_plan_json

from hx_gateway.model.refusal import was_refused
from hx_gateway.pyinfra_ext.summary import plan_listing, plan_verdict, roll_summary

DEGRADED_ATTRIBUTE = "hx_degraded"
ROLL_ATTRIBUTE = "hx_roll"
VENV_SOURCES_ATTRIBUTE = "hx_venv_sources"  # a venv_artifacts.RunSources: who builds, receives, keeps


def note_degraded(state: State, host: str, down: list[str]) -> None:
    """Preflight let this host's run go ahead with these backends down: the verdict says so."""
    if not hasattr(state, DEGRADED_ATTRIBUTE):
        setattr(state, DEGRADED_ATTRIBUTE, {})
    getattr(state, DEGRADED_ATTRIBUTE)[host] = down


def note_roll(state: State, gateway: str, order: list[str], balancers: int) -> None:
    """This gateway restarts in a roll over `order` (every gateway behind the balancers): the preview
    says in which order, and what serves meanwhile."""
    roll = getattr(state, ROLL_ATTRIBUTE, None) or {"order": order, "balancers": balancers, "restarting": set()}
    roll["restarting"].add(gateway)
    setattr(state, ROLL_ATTRIBUTE, roll)


def roll_line(state: State) -> str | None:
    roll = getattr(state, ROLL_ATTRIBUTE, None)
    if not roll:
        return None
    return roll_summary(roll["order"], roll["restarting"], roll["balancers"])


class PlanSummary(BaseStateCallback):
    def __init__(self, table_skipped: bool) -> None:
        self.disconnected: set[str] = set()
        self.table_skipped = table_skipped

    def host_disconnect(self, state: State, host: Host) -> None:  # type: ignore[override]
        self.disconnected.add(host.name)
        hosts = sorted(h.name for h in state.activated_hosts)
        # Only for a run that stopped after planning (--dry): an executed run has its results table.
        # A run that failed gets no verdict at all: its plan is not what a deploy would do.
        if self.disconnected < set(hosts) or state.current_stage != StateStage.Prepare:
            return
        if state.failed_hosts or was_refused(state):
            return
        plan = build_plan_json(state)
        if self.table_skipped:
            listing = plan_listing(plan, hosts)
            if listing:
                logger.info("--> Planned changes (pyinfra prints no table with -y; these are detected all the same):")
                for line in listing:
                    logger.info(line)
        roll = roll_line(state)
        if roll:
            logger.info(f"--> {roll}")
        sources = getattr(state, VENV_SOURCES_ATTRIBUTE, None)
        for line in sources.lines() if sources else []:
            logger.info(f"--> {line}")
        logger.info(f"--> {plan_verdict(plan, hosts, getattr(state, DEGRADED_ATTRIBUTE, None))}")


def announce_plan_verdict(state: State) -> None:
    """Register once per run (deploy.py runs once per host), and make sure changes are detected."""
    if any(isinstance(h, PlanSummary) for h in state.callback_handlers):
        return
    table_skipped = not state.check_for_changes
    # -y must never turn the preview blind: with change detection off every operation counts as
    # "no change" (see the module docstring). A real run executes the same operations either way.
    state.check_for_changes = True
    state.add_callback_handler(PlanSummary(table_skipped))
