"""What one gateway host gets: validated settings, secrets, and the venv for its interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hx_gateway import lock
from hx_gateway.secrets import Secrets, load_secrets
from hx_gateway.settings import Settings, load_settings


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
