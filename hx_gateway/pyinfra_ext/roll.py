"""A rolling restart of the gateways behind the `lb` hosts: one gateway at a time.

For each gateway, in the announced order (one turn per gateway: tasks/gateway/service.py): drain it in
every balancer (runtime API: no new requests), wait (bounded by its drain_timeout) for the requests
in flight, start the new state as a canary, restart, check health and smoke, put it back and wait
until every balancer sees it UP; only then the next. A gateway that fails stops the roll: it is
rolled back as a single gateway is (and put back if the old state serves), the gateways after it are
not restarted and their files go back to the previous generation, and the run fails naming it.
"""

from __future__ import annotations

import json

from pyinfra import host, logger, state

from hx_gateway.model.fleet import Fleet
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext.health import (
    ServiceUnhealthy,
    healthy_or_rolled_back,
    new_state_starts_or_restored,
    reported,
    restart_service,
    restore_files,
)
from hx_gateway.pyinfra_ext.remote import run_as_root

# Seconds a gateway put back may take to pass the balancers' health checks (`rise` checks).
READY_TIMEOUT = 60


def balancer_call(lb_name: str, command: str, *args: object) -> dict:
    """hx_gateway/host/haproxy.py on a balancer host; its JSON answer (or the error)."""
    from tasks.lb import runtime_command  # the balancer component owns its socket and backend names

    lb_host = state.inventory.get_host(lb_name)
    ok, output = run_as_root(runtime_command(command, *args), on=lb_host)
    try:
        return json.loads("\n".join(output.stdout_lines) or "{}")
    except ValueError:
        return {"error": output.stderr[-300:] or "no answer"}


def _set_everywhere(fleet: Fleet, command: str, server: str, timeout: float) -> list[str]:
    """drain or ready on every balancer; the problems, by balancer. A balancer that does not know the
    gateway yet (its configuration comes later in this run, or HAProxy is not installed yet) is
    skipped with a warning: it sends the gateway nothing until its own health checks pass."""
    problems = []
    for lb in fleet.lbs:
        answer = balancer_call(lb.host, command, server, timeout)
        if "error" in answer:
            host.log(f"{lb.host} cannot {command} {server} ({answer['error']}): skipped", logger.warning)
        elif answer.get("waited") is False:
            what = ("requests still in flight" if command == "drain" else f"status {answer.get('status')}")
            problems.append(f"{lb.host}: after {timeout:.0f} s, {what}")
    return problems


def _stop_if_an_earlier_gateway_failed(settings: Settings) -> None:
    stopped_at = getattr(state, "hx_roll_stopped_at", None)
    if stopped_at is None:
        return
    raise ServiceUnhealthy(f"{host.name}: not restarted: the rolling restart stopped at {stopped_at}. It still "
                           f"serves the previous state; {restore_files(settings)}.")


@reported
def rolled_restart(settings: Settings, fleet: Fleet) -> None:
    """One gateway's turn in the roll (see the module's docstring)."""
    _stop_if_an_earlier_gateway_failed(settings)
    member = fleet.member(host.name)
    if member is None:
        raise ServiceUnhealthy(f"{host.name}: not among the balancers' gateways; this is a bug in the plan")
    try:
        new_state_starts_or_restored.__wrapped__(settings)  # before draining: a bad state never costs capacity
        problems = _set_everywhere(fleet, "drain", member.name, member.drain_timeout)
        if problems:  # a request still in flight after the drain timeout is cut by the restart: say so
            host.log(f"draining {member.name}: {'; '.join(problems)}", logger.warning)
        restart_service(settings)
        healthy_or_rolled_back.__wrapped__(settings)
    except ServiceUnhealthy:
        state.hx_roll_stopped_at = host.name
        _set_everywhere(fleet, "ready", member.name, READY_TIMEOUT)  # if the rolled-back state serves, use it
        raise
    problems = _set_everywhere(fleet, "ready", member.name, READY_TIMEOUT)
    if problems:
        state.hx_roll_stopped_at = host.name
        raise ServiceUnhealthy(f"{host.name}: restarted and healthy, but not back in every balancer: "
                               f"{'; '.join(problems)}; the roll stops here")
    host.log(f"back in {len(fleet.lbs)} balancer(s), UP", logger.info)
