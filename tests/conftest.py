"""Fixtures: the Docker lab (once per session, always torn down), random secrets, pyinfra runs."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.lab import Lab, exec_in  # noqa: E402

LAB_INVENTORY = "lab/inventory.py"
# The gateway host as if nothing had ever been deployed there.
FRESH = ("systemctl disable --now litellm 2>/dev/null; rm -rf /opt/litellm /etc/litellm /var/lib/hx-gateway "
         "/var/cache/hx-gateway /etc/systemd/system/litellm.service; userdel litellm 2>/dev/null; "
         "groupdel litellm 2>/dev/null; systemctl daemon-reload")


def defaults() -> dict:
    """Every knob at its default, as the repository's group_data files declare them."""
    data: dict = {}
    for name in ("all", "litellm", "llm", "redis", "lb"):
        exec((REPO / "group_data" / f"{name}.py").read_text(), {}, data)
    return data


def random_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


@dataclass
class PyinfraRun:
    returncode: int
    output: str  # stdout + stderr
    stdout: str = ""

    def _rows(self, header: str) -> list[list[str]]:
        section = self.output.split(header, 1)[1]
        rows = []
        for line in section.splitlines()[1:]:  # the table's header row first
            if not line.startswith("    ") or not line.strip():
                break
            rows.append(re.split(r"\s{2,}", line.strip()))
        return rows

    def changed_ops(self) -> list[str]:
        """Operations that changed (a run) or will change (a --dry run's 'Change' column). Fails when
        pyinfra printed neither table: "no changes" must never be what a parse failure looks like."""
        if "--> Detected changes:" in self.output:
            rows = self._rows("--> Detected changes:")
            assert rows and rows[0][:2] == ["Operation", "Change"], f"not pyinfra's table:\n{self.output[-3000:]}"
            return [r[0] for r in rows[1:] if len(r) >= 2 and r[1] != "-"]
        assert "--> Results:" in self.output, f"no results table:\n{self.output[-3000:]}"
        rows = self._rows("--> Results:")
        assert rows and rows[0][:3] == ["Operation", "Hosts", "Success"], f"not pyinfra's table:\n{self.output[-3000:]}"
        return [r[0] for r in rows[1:] if len(r) >= 3 and r[2] != "-" and r[0] != "Grand total"]

    def verdict(self) -> str:
        (line,) = [line for line in self.output.splitlines() if line.startswith("--> Plan: ")]
        return line.removeprefix("--> ")

    def json_changes(self) -> dict[str, set[str]]:
        """From `--json`: per host, the operations a dry run plans to change (with those that follow
        them) or a real run changed."""
        data = json.loads(self.stdout)
        found: dict[str, set[str]] = {}
        if data["results"] is None:
            for op in data["plan"]:
                for host in op["hosts_with_change"] + op["hosts_with_conditional_change"]:
                    found.setdefault(host, set()).add(op["name"])
        else:
            assert data["results"]["operations"], "a real run with no operations"
            for op in data["results"]["operations"]:
                for host in op["success"]:
                    found.setdefault(host, set()).add(op["name"])
        return found


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
            extra_env: dict[str, str] | None = None, inventory: str = LAB_INVENTORY,
            yes: bool | None = None) -> PyinfraRun:
    """A pyinfra run; `yes` defaults to -y for a real run and none for a --dry one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HX_CLIENT_KEY_") and k != "HX_MASTER_KEY"}
    env.update(secrets_env)
    env["HX_SECRETS_FILE"] = "/nonexistent"
    env.update(extra_env or {})
    extra = ["--group-data", str(group_data)] if group_data else []
    if yes is None:
        yes = "--dry" not in args
    confirm = ["-y"] if yes else []
    result = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), *confirm, *extra, inventory, "deploy.py",
                             *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return PyinfraRun(result.returncode, result.stdout + result.stderr, result.stdout)


@pytest.fixture
def converged(lab: Lab, lab_secrets: dict[str, str]) -> PyinfraRun:
    """Every lab test starts from the converged lab, whatever ran before it and in whatever order: the
    containers up (a test may have taken them down) and a deploy with the session's keys (a no-op of
    about a second when the test before left the lab as it found it)."""
    lab.up()
    run = pyinfra(secrets_env=lab_secrets)
    assert run.returncode == 0, run.output[-5000:]
    return run


def main_pid(container: str = "hx-api") -> str:
    return exec_in(container, "systemctl", "show", "-p", "MainPID", "--value", "litellm")


def gateway_url() -> str:
    from lab.lab import address_of

    return f"http://{address_of('hx-api')}:4000"


def ticket(secrets_env: dict[str, str], out: Path, group_data: Path | None = None,
           extra_env: dict[str, str] | None = None) -> tuple[str, dict, str]:
    """The change ticket for the lab (markdown, its JSON twin, the command's output)."""
    env = {**os.environ, **secrets_env, "HX_SECRETS_FILE": "/nonexistent", **(extra_env or {})}
    extra = ["--group-data", str(group_data)] if group_data else []
    result = subprocess.run([sys.executable, "-m", "hx_gateway.ticket", LAB_INVENTORY, "--out", str(out), *extra],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out.read_text(), json.loads(out.with_suffix(".json").read_text()), result.stdout + result.stderr


def preview_ticket_deploy(deploy: Callable[..., PyinfraRun], secrets_env: dict[str, str], ticket_out: Path,
                          group_data: Path | None = None, extra_env: dict[str, str] | None = None
                          ) -> tuple[PyinfraRun, str]:
    """A component's first converge, as an operator makes it: the preview, the change ticket, then the
    deploy (`deploy`: its module's pyinfra run). Returns the preview and the ticket."""
    preview = deploy("--dry")
    assert preview.returncode == 0, preview.output[-4000:]
    text = ticket(secrets_env, ticket_out, group_data=group_data, extra_env=extra_env)[0]
    run = deploy()
    assert run.returncode == 0, run.output[-6000:]
    return preview, text


def settings_problems(hosts: list) -> list[str]:
    """The problems `fleet_plans` refuses these (name, data, groups) hosts with."""
    from hx_gateway.model.plan import fleet_plans
    from hx_gateway.model.settings import SettingsError

    with pytest.raises(SettingsError) as err:
        fleet_plans(hosts)
    return err.value.problems


def run_verify(secrets_env: dict[str, str], evidence_dir: Path, inventory: str = LAB_INVENTORY,
               extra_env: dict[str, str] | None = None, group_data: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **secrets_env, "HX_SECRETS_FILE": "/nonexistent", **(extra_env or {})}
    options = ["--group-data", str(group_data)] if group_data else []
    return subprocess.run([sys.executable, "-m", "hx_gateway.verify", inventory, "--evidence-dir", str(evidence_dir),
                           *options], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


# What a refused run must leave exactly as it was on the gateway: managed files, units, the service's PID.
STATE_CMD = ("find /etc/litellm /etc/systemd/system /opt/litellm -maxdepth 1 -type f -exec sha256sum {} + "
             "2>/dev/null | sort; ls -la /opt/litellm; systemctl list-unit-files --no-legend | sort; "
             "systemctl show -p MainPID --value litellm")


def host_state(container: str = "hx-api") -> str:
    return exec_in(container, "sh", "-c", STATE_CMD, check=False)
