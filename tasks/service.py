"""Service: the hardened unit, enabled and running; restarted only when something it reads changed;
healthy afterwards, or rolled back to the previous generation."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.context import state
from pyinfra.operations import python, systemd
from pyinfra.operations.util import any_changed

from hx_gateway import changes, render
from hx_gateway.generations import keep_generation, spec_of
from hx_gateway.health import healthy_or_rolled_back, new_state_starts_or_restored
from hx_gateway.operations import managed_file, restart_service
from hx_gateway.settings import Settings


def _record_restart(settings: Settings, started, causes: dict[str, object]) -> None:
    """For the change ticket: will this run start or restart the service, and why."""
    if not state.should_check_for_changes():
        return
    if started.will_change:
        changes.record("restart", settings.service_name, "start (not running yet): no clients are served before")
        return
    why = [label for label, op in causes.items() if op.will_change]
    if why:
        changes.record("restart", settings.service_name,
                       f"one restart (a gap of about 10 s on this host, measured in the lab) because "
                       f"{', '.join(why)} change")


class AlreadyRunning:
    """In place of systemd.service when the GatewayHost fact saw the unit active and enabled: there
    is nothing to start, and systemd.service would spend two round trips on its own facts to say so."""

    will_change = False

    def did_change(self) -> bool:
        return False


@deploy("Service")
def service(settings: Settings, workers: int, backend_addresses: list[str],
            restart_triggers: dict[str, object], unit_state: dict) -> None:
    managed = render.managed_files(settings)
    unit = managed_file(name=f"Unit {managed['unit'].path}", file=managed["unit"],
                        content=render.render_unit(settings, workers, backend_addresses),
                        batch=tuple(managed.values()))
    triggers = {managed["unit"].path.rsplit("/", 1)[-1]: unit, **restart_triggers}
    running = unit_state == {"active": True, "enabled": True}
    if running and not any(op.will_change for op in triggers.values()):
        # Nothing the service reads changes (known now, from the plan's facts): every operation
        # below would be skipped by its _if, and each one planned costs the control node ~3 ms
        # per host (pyinfra reads the call stack for every operation).
        return
    systemd.daemon_reload(name="systemd daemon-reload (unit changed)", _if=unit.did_change)
    started = AlreadyRunning() if running else systemd.service(
        name=f"{settings.service_name} enabled and running", service=settings.service_name, running=True, enabled=True)
    _record_restart(settings, started, triggers)
    restart_needed = any_changed(*triggers.values())

    def restart_now() -> bool:  # evaluated when the run gets there: the triggers have run by then
        return restart_needed() and not started.did_change()

    python.call(name="Canary: the new state starts on a spare port before the restart (else restore)",
                function=new_state_starts_or_restored, settings=settings, _if=restart_now)
    restarted = restart_service(name=f"Restart {settings.service_name} (unit, config, env or venv changed)",
                                service=settings.service_name, _if=restart_now)
    python.call(name=f"Wait for {settings.service_name} health and smoke check (else roll back)",
                function=healthy_or_rolled_back, settings=settings, _if=any_changed(started, restarted))
    keep_generation(name="Keep the state now serving as a generation", spec=spec_of(settings), reason="deployed",
                    after_change=True, _if=any_changed(started, *triggers.values()))
