"""Service: the hardened unit, enabled and running; restarted only when something it reads changed;
healthy afterwards, or rolled back to the previous generation."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import python, systemd
from pyinfra.operations.util import any_changed

from hx_gateway.model.fleet import Fleet
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import changes, render
from hx_gateway.pyinfra_ext.announce import note_roll
from hx_gateway.pyinfra_ext.generations import keep_generation, spec_of
from hx_gateway.pyinfra_ext.health import healthy_or_rolled_back, new_state_starts_or_restored
from hx_gateway.pyinfra_ext.operations import managed_file, restart_service, stale_reason
from hx_gateway.pyinfra_ext.roll import rolled_restart


def reloads_for(settings: Settings, causes: dict[str, object]) -> bool:
    """Only the certificate or its key change, and gunicorn serves: a reload (HUP) starts new workers,
    which read the new files, while the old ones finish their requests. The listening socket stays
    open throughout, so no connection is refused (measured: 2,565 requests at c=8, none failed; in one
    CI run 4 of 1,775 hit a keep-alive connection a stopping worker closed, which clients that resend,
    as the OpenAI SDKs do, never see). The TLS policy is read at the master's start, so its change
    still restarts."""
    if settings.server != "gunicorn" or not settings.tls:
        return False
    files = render.tls_files(settings)
    changed = {label for label, op in causes.items() if op.will_change}
    return bool(changed) and changed <= {files["tls_chain"].name, files["tls_key"].name}


def _record_restart(settings: Settings, starts: bool, causes: dict[str, object], fleet: Fleet,
                    stale: list[str], reloads: bool) -> None:
    """For the change ticket: will this run start, restart or reload the service, and why."""
    if starts:
        changes.record("restart", settings.service_name, "start (not running yet): no clients are served before")
        return
    if reloads:
        changes.record("restart", settings.service_name, "reload: new workers on the new certificate while the old "
                       "ones finish their requests (no connection dropped)")
        return
    why = [label for label, op in causes.items() if op.will_change]
    why += [f"({stale_reason(stale)})"] if stale else []
    member = fleet.member(host.name)
    if why and fleet.lbs and member:
        order = [m.name for m in fleet.gateways]
        total, position = len(order), order.index(member.name) + 1
        note_roll(host.state, member.name, order, len(fleet.lbs))
        changes.record("restart", settings.service_name,
                       f"rolling restart, gateway {position} of {total} (order: {', '.join(order)}): "
                       f"drained in {len(fleet.lbs)} balancer(s) first; while it restarts {total - 1} of {total} "
                       f"gateways serve; because {', '.join(why)} change",
                       roll_member=member.name, roll_order=order, balancers=len(fleet.lbs))
    elif why:
        changes.record("restart", settings.service_name,
                       f"one restart (a gap of about 10 s on this host, measured in the lab) because "
                       f"{', '.join(why)} change")


def _plan_roll_turn(settings: Settings, fleet: Fleet, restart_needed: object) -> None:
    """Behind balancers one gateway restarts at a time, in the order --dry and the ticket announce
    (`fleet.gateways`). Every gateway plans the same loop of turns (`host.loop`: one operation per
    position) and takes only its own; pyinfra runs the turns in the loop's order, since they all
    follow the same operation (the unit file, which every gateway plans). A single `_serial`
    operation would run in pyinfra's order of active hosts, which is a set's."""
    me = fleet.member(host.name)
    total = len(fleet.gateways)
    for position, turn in enumerate(host.loop(fleet.gateways), start=1):
        if turn == me:
            python.call(name=f"Rolling restart of {settings.service_name}, turn {position} of {total}: drain in "
                             f"{len(fleet.lbs)} balancer(s), canary, restart, health, back in rotation",
                        function=rolled_restart, settings=settings, fleet=fleet, _if=restart_needed)


@deploy("Service")
def service(settings: Settings, workers: int, backend_addresses: list[str],
            restart_triggers: dict[str, object], unit_state: dict, fleet: Fleet) -> None:
    managed = render.managed_files(settings)
    unit = managed_file(name=f"Unit {managed['unit'].path}", file=managed["unit"],
                        content=render.render_unit(settings, workers, backend_addresses, fleet.monitor is not None),
                        batch=tuple(render.files_read(settings)))
    triggers = {managed["unit"].path.rsplit("/", 1)[-1]: unit, **restart_triggers}
    active, enabled = bool(unit_state.get("active")), bool(unit_state.get("enabled"))
    # Files as declared but newer than the running service: an earlier run wrote them and stopped
    # before the restart. They count as a change, or the service would never read them.
    stale = unit_state.get("stale", []) if active else []
    restarts = active and (bool(stale) or any(op.will_change for op in triggers.values()))
    restart_needed = [] if stale else any_changed(*triggers.values())
    if active and enabled and not restarts:
        # Nothing the service reads changes (known now, from the plan's facts): every operation
        # below would be skipped by its _if, so none is planned and the preview lists none.
        return
    # Only what will run is planned (each decided from the plan's facts), so the preview's set of
    # changes is the deploy's: a fresh host starts the service and has nothing to canary or restart.
    # The `_if`s stay as a guard at run time: they skip a step whose cause did not change after all.
    reloads = restarts and not stale and reloads_for(settings, triggers)
    rolls = restarts and bool(fleet.lbs) and not reloads
    if rolls:
        _plan_roll_turn(settings, fleet, restart_needed)
    elif unit.will_change:  # (a roll's restart reloads systemd itself)
        systemd.daemon_reload(name="systemd daemon-reload (unit changed)", _if=unit.did_change)
    started = None
    if not (active and enabled):
        started = systemd.service(name=f"{settings.service_name} enabled and running", service=settings.service_name,
                                  running=True, enabled=True)
    _record_restart(settings, not active, triggers, fleet, stale, reloads)
    restarted = None
    if restarts and not rolls:
        python.call(name="Canary: the new state starts on a spare port before the restart (else restore)",
                    function=new_state_starts_or_restored, settings=settings, _if=restart_needed)
        why = stale_reason(stale) if stale else "unit, config, env or venv changed"
        if reloads:
            restarted = restart_service(name=f"Reload {settings.service_name} (a new certificate: new workers read "
                                             f"it, the old ones finish their requests)",
                                        service=settings.service_name, verb="reload", _if=restart_needed)
        else:
            restarted = restart_service(name=f"Restart {settings.service_name} ({why})",
                                        service=settings.service_name, _if=restart_needed)
    begun = restarted if restarts else started if not active else None  # enabling alone starts nothing
    if begun is not None:
        python.call(name=f"Wait for {settings.service_name} health and smoke check (else roll back)",
                    function=healthy_or_rolled_back, settings=settings, _if=begun.did_change)
    changed = [op for op in (started, *triggers.values()) if op is not None]
    keep_generation(name="Keep the state now serving as a generation", spec=spec_of(settings), reason="deployed",
                    after_change=True, _if=[] if stale else any_changed(*changed))
