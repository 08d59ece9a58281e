"""What one gateway host gets: validated settings, secrets, and the venv for its interpreter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinfra.api.connectors import get_all_connectors

from hx_gateway import lock
from hx_gateway.model.secrets import Secrets, load_secrets
from hx_gateway.model.settings import Settings, SettingsError, load_settings, unknown_knob_problems


@dataclass(frozen=True)
class VenvPlan:
    """The venv a host should run: its lock (for the host's Python) and how it is built."""

    target: lock.TargetPython
    lock_text: str
    litellm_version: str
    venv_id: str  # names the venv directory and its marker: a new lock or build option, a new venv
    installed: bool  # the host runs this venv already

    def wheelhouse(self) -> Path:
        """The archive to upload (downloaded and packed once on the control node, then cached)."""
        return lock.build_wheelhouse(self.target, self.target.lock_path)


@dataclass(frozen=True)
class GatewayPlan:
    settings: Settings
    secrets: Secrets

    def venv_for(self, facts: Mapping[str, Any]) -> VenvPlan:
        target = lock.TargetPython(facts["python"], facts["arch"], facts["glibc"])
        lock_text = lock.lock_for(target).read_text()
        version = lock.check_lock(lock_text)
        venv_id = lock.digest(f"{lock_text}\n# {lock.VENV_BUILD}\n".encode())
        return VenvPlan(target, lock_text, version, venv_id, facts.get("installed_venv_id") == venv_id)


def gateway_plan(data: Mapping[str, Any], inventory_name: str) -> GatewayPlan:
    """Validate everything before any host is touched (raises SettingsError)."""
    settings = load_settings(data, inventory_name)
    return GatewayPlan(settings, load_secrets(settings))


def fleet_plans(hosts: Iterable[tuple[str, Mapping[str, Any], bool]], foreign: Iterable[str] = ()
                ) -> dict[str, GatewayPlan]:
    """Every gateway's plan, or one SettingsError listing the problems of every host (name, data, is
    it a gateway): unknown knob names anywhere, and each gateway's settings and secrets. A problem is
    listed once, prefixed with the hosts it applies to unless it applies to all of them."""
    plans: dict[str, GatewayPlan] = {}
    problems: dict[str, list[str]] = {}
    checked = 0
    for name, data, is_gateway in hosts:
        checked += 1
        found = unknown_knob_problems(data, foreign)
        if is_gateway:
            try:
                plan = gateway_plan(data, name)
                if not found:
                    plans[name] = plan
            except SettingsError as error:
                found += error.problems
        for problem in found:
            problems.setdefault(problem, []).append(name)
    if problems:
        raise SettingsError([problem if len(names) == checked else f"{', '.join(names)}: {problem}"
                             for problem, names in problems.items()])
    return plans


def connector_data_names() -> set[str]:
    """Host data names pyinfra's connectors read (ssh_user, docker_platform...): not our knobs."""
    return {name for connector in get_all_connectors().values() for name in getattr(connector, "data_meta", {})}


def run_plans(state: Any) -> dict[str, GatewayPlan]:
    """fleet_plans for this pyinfra run's inventory, once per run (deploy.py runs once per host)."""
    if not hasattr(state, "hx_plans"):
        gateways = {h.name for h in state.inventory.get_group("litellm", [])}
        state.hx_plans = fleet_plans(((h.name, h.data.dict(), h.name in gateways) for h in state.inventory),
                                     connector_data_names())
    return state.hx_plans
