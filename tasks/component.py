"""What the components around the gateway share: read a host in one round trip (refusing a host
pyinfra cannot read), and restart a unit only when a file it reads changed, then prove it is back."""

from __future__ import annotations

import ipaddress
import shlex

from pyinfra import host
from pyinfra.facts.server import Which
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from hx_gateway.model.fleet import MonitorSettings, host_part
from hx_gateway.model.refusal import Refusal
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import ComponentHost, FileStates
from hx_gateway.pyinfra_ext.operations import file_states_arguments, restart_service, stale_reason
from hx_gateway.pyinfra_ext.render import ManagedDirectory, ManagedFile


class ComponentPreflightError(Refusal):
    pass


def read_component_host(component: str, name: str, unit: str, package: str, files: list[ManagedFile],
                        directories: tuple[ManagedDirectory, ...] = (), reloads: bool = False,
                        unread: tuple[ManagedFile, ...] = ()) -> dict:
    """The host's addresses, what `name` resolves to there, the unit (with those of `files` it reads,
    all but `unread`, changed after it last read them; `reloads`: it reloads by starting new workers)
    and the package; the managed files' states (`files`) are kept for the operations planned after
    (one round trip)."""
    if not host.get_fact(Which, command="python3"):
        raise ComponentPreflightError(f"preflight failed on {host.name} ({component}); nothing was changed:\n"
                                      f"  - python3 is missing: the deploy reads hosts with it; install it once "
                                      f"(apt-get install python3-minimal) and run again")
    facts, states = read_together((ComponentHost, {"host_name": name, "units": (unit,), "packages": (package,),
                                                   "directories": tuple(d.path for d in directories),
                                                   "reads": tuple(f.path for f in files if f not in unread),
                                                   "reloads": reloads}),
                                  (FileStates, file_states_arguments(files)))
    return {**facts, "files": states}


def bind_address(wanted: str | None, knob: str, inventory_name: str, facts: dict) -> tuple[str, list[str]]:
    """The address a component listens on besides loopback: the knob (`wanted`), or else the address
    the host's inventory name resolves to on it (`facts`: read_component_host's); it must be the
    host's own and not loopback (its clients are elsewhere). Returns it, or the problems."""
    candidates = [wanted] if wanted else [a for a in facts["resolves"] if not ipaddress.ip_address(a).is_loopback]
    owned = [a for a in candidates if a in facts["addresses"]]
    if owned:
        return owned[0], []
    if wanted:
        return "", [f"{knob}: {wanted} is not an address of this host (it has {', '.join(facts['addresses'])}); "
                    f"name one of them"]
    resolves = ", ".join(facts["resolves"]) or "nothing"
    return "", [f"{knob}: None, and {host_part(inventory_name)} resolves here to {resolves}, not to one of this "
                f"host's addresses ({', '.join(facts['addresses'])}); set {knob} to the private address the "
                f"gateways reach"]


def port_taken_problems(listeners: list[dict], user: str, prefix: str, port: int, knob: str, why: str = ""
                        ) -> list[str]:
    """The port a service is to listen on, held by another user's process (`listeners`: its holders,
    as the host facts read them); `prefix` names the problem, `why` says what the service would do."""
    problems = []
    for listener in listeners:
        if user not in listener["users"]:
            owner = ", ".join(listener["processes"] + listener["users"]) or "an unknown process"
            problems.append(f"{prefix}: {port} is already taken by {owner} on {listener['address']}; stop it or "
                            f"choose another {knob}{why}")
    return problems


def monitor_addresses(monitor: MonitorSettings, resolves: dict[str, list[str]]) -> list[str]:
    """The monitoring host's addresses as this host sees them: the only peers its exporters answer."""
    found = resolves.get(monitor.address, [])
    if not found:
        raise ComponentPreflightError(
            f"preflight failed on {host.name} (monitoring); nothing was changed:\n  - the monitoring host "
            f"{monitor.address} does not resolve here, so its exporters could not admit it; add it to DNS or to "
            f"/etc/hosts here, or set monitor_bind_address to its address")
    return sorted(found)


def reload_units(dropin: ManagedFile, op: object, unit_state: dict, what: str) -> None:
    """systemd re-reads the units after their hardening drop-in changed, in this run or in an earlier
    one that stopped before it did (the drop-in is among the files the unit reads: `stale`)."""
    if dropin.path in unit_state.get("stale", []):
        systemd.daemon_reload(name=f"systemd daemon-reload ({what} hardening changed in an earlier run)")
    elif op.will_change:  # type: ignore[attr-defined]
        systemd.daemon_reload(name=f"systemd daemon-reload ({what} hardening changed)",
                              _if=op.did_change)  # type: ignore[attr-defined]


def refuse(component: str, problems: list[str]) -> None:
    if problems:
        raise ComponentPreflightError(f"preflight failed on {host.name} ({component}); nothing was changed:\n"
                                      + "\n".join(f"  - {p}" for p in problems))


def answers(url: str, what: str, unit: str, tries: int = 50, pause: float = 0.2, crash_fails: bool = False) -> str:
    """A shell check for `activate`: `url` answers over HTTP (python3's standard library, on every host)
    within `tries` x `pause` seconds, else it fails with `what` and the unit's last journal lines.
    `crash_fails`: fail as soon as systemd restarted the unit after its process exited (NRestarts,
    reset by the start or restart that came before), instead of waiting out the tries."""
    fetch = "python3 -c 'import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)'"
    crashed = (f"[ \"$(systemctl show -p NRestarts --value {shlex.quote(unit)})\" = 0 ] || "
               f"{{ echo {shlex.quote(f'{what} exited, and systemd started it again')} >&2; break; }}; "
               if crash_fails else "")
    return (f"for i in $(seq 1 {tries}); do {fetch} {shlex.quote(url)} 2>/dev/null && exit 0; {crashed}"
            f"sleep {pause}; done; echo {shlex.quote(f'{what} does not answer on {url}')} >&2; "
            f"journalctl -u {shlex.quote(unit)} -n 20 --no-pager >&2; exit 1")


def activate(unit: str, state: dict, changed: list, reload: bool, check: str, check_name: str,
             installed_now: bool) -> None:
    """Running and enabled; after a change of what it reads, reloaded (`reload`) or restarted, then
    `check` (a shell command) must pass. Only what will run is planned (decided from the facts).
    `installed_now`: the package is installed in this run, and Debian starts it with its own
    configuration: restart it once ours is written."""
    if installed_now:
        restarted = systemd.service(name=f"{unit} enabled and restarted on its new configuration", service=unit,
                                    running=True, enabled=True, restarted=True)
        server.shell(name=check_name, commands=[check], _if=restarted.did_change)
        return
    active, enabled = bool(state.get("active")), bool(state.get("enabled"))
    if not (active and enabled):
        started = systemd.service(name=f"{unit} enabled and running", service=unit, running=True, enabled=True)
        server.shell(name=check_name, commands=[check], _if=started.did_change)
    verb = "Reload" if reload else "Restart"
    if active and state.get("stale"):  # the files are as declared, but the running unit never read them
        why = stale_reason(state["stale"], verb.lower())
        needed: list | object = []
    elif active and any(op.will_change for op in changed):
        why, needed = "its configuration changed", any_changed(*changed)
    else:
        return
    if reload:
        done = systemd.service(name=f"{verb} {unit} ({why})", service=unit, reloaded=True, _if=needed)
    else:
        done = restart_service(name=f"{verb} {unit} ({why})", service=unit, _if=needed)
    server.shell(name=check_name, commands=[check], _if=done.did_change)

