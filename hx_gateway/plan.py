"""What one gateway host gets: validated settings, secrets, and the lock for its interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hx_gateway import lock
from hx_gateway.secrets import Secrets, load_secrets
from hx_gateway.settings import Settings, load_settings


@dataclass(frozen=True)
class GatewayPlan:
    settings: Settings
    secrets: Secrets

    @staticmethod
    def target_of(facts: Mapping[str, Any]) -> lock.TargetPython:
        return lock.TargetPython(facts["python"], facts["arch"], facts["glibc"])

    def lock_text(self, target: lock.TargetPython) -> str:
        return lock.lock_for(target).read_text()

    def lock_digest(self, target: lock.TargetPython) -> str:
        return lock.digest(self.lock_text(target).encode())

    def litellm_version(self, target: lock.TargetPython) -> str:
        return lock.check_lock(self.lock_text(target))

    def wheelhouse_for(self, facts: Mapping[str, Any]) -> tuple[lock.TargetPython, Path | None]:
        """The lock for this host's Python and the archive to upload (built once, cached);
        None when the host already runs this lock."""
        target = self.target_of(facts)
        lock_path = lock.lock_for(target)
        if facts.get("installed_lock") == lock.digest(lock_path.read_bytes()):
            return target, None
        return target, lock.build_wheelhouse(target, lock_path)


def gateway_plan(data: Mapping[str, Any], inventory_name: str) -> GatewayPlan:
    """Validate everything before any host is touched (raises SettingsError)."""
    settings = load_settings(data, inventory_name)
    return GatewayPlan(settings, load_secrets(settings))
