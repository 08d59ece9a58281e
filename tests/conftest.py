"""Fixtures: the Docker lab (once per session, always torn down), random secrets, pyinfra runs."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.lab import Lab, exec_in  # noqa: E402

LAB_INVENTORY = "lab/inventory.py"


def random_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


@dataclass
class PyinfraRun:
    returncode: int
    output: str

    def _rows(self, header: str) -> list[list[str]]:
        section = self.output.split(header, 1)[1] if header in self.output else ""
        rows = []
        for line in section.splitlines()[2:]:
            if not line.startswith("    ") or not line.strip():
                break
            rows.append(re.split(r"\s{2,}", line.strip()))
        return rows

    def changed_ops(self) -> list[str]:
        """Operations that changed (a run) or will change (a --dry run's 'Change' column)."""
        if "--> Detected changes:" in self.output:
            return [r[0] for r in self._rows("--> Detected changes:") if len(r) >= 2 and r[1] != "-"]
        assert "--> Results:" in self.output, f"no results table:\n{self.output[-3000:]}"
        return [r[0] for r in self._rows("--> Results:") if len(r) >= 3 and r[2] != "-" and r[0] != "Grand total"]


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    the_lab = Lab()
    # Turn SIGTERM into KeyboardInterrupt so an interrupted run still tears the lab down.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        the_lab.up()
        yield the_lab
    finally:
        if os.environ.get("HX_KEEP_LAB") != "1":
            the_lab.down()


@pytest.fixture(scope="session")
def lab_secrets() -> dict[str, str]:
    return {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key()}


def pyinfra(*args: str, secrets_env: dict[str, str], group_data: Path | None = None,
            extra_env: dict[str, str] | None = None, inventory: str = LAB_INVENTORY) -> PyinfraRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HX_CLIENT_KEY_") and k != "HX_MASTER_KEY"}
    env.update(secrets_env)
    env["HX_SECRETS_FILE"] = "/nonexistent"
    env.update(extra_env or {})
    extra = ["--group-data", str(group_data)] if group_data else []
    confirm = [] if "--dry" in args else ["-y"]  # -y would skip a dry run's change detection
    result = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), *confirm, *extra, inventory, "deploy.py",
                             *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return PyinfraRun(result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def converged(lab: Lab, lab_secrets: dict[str, str]) -> PyinfraRun:
    run = pyinfra(secrets_env=lab_secrets)
    assert run.returncode == 0, run.output[-5000:]
    return run


def main_pid(container: str = "hx-api") -> str:
    return exec_in(container, "systemctl", "show", "-p", "MainPID", "--value", "litellm")


def gateway_url() -> str:
    from lab.lab import address_of

    return f"http://{address_of('hx-api')}:4000"
