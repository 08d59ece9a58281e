"""The preview is the change (issue 21): for every host state the lab can make, the operations a dry
run reports as changing (with and without -y, as JSON and as the verdict line, and in the change
ticket and its JSON twin) are exactly the operations the deploy that follows changes, host by host.

Each case brings the gateway to its state, previews four ways, deploys, compares, and puts the
converged lab back in `finally`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import FRESH, PyinfraRun, pyinfra, random_key, ticket

from lab.lab import exec_in, wait_for_port, write_file

pytestmark = pytest.mark.lab
GATEWAY = "@docker/hx-api"
# Everything a dry run could touch, as checksums: files under the managed trees, users, units.
SNAPSHOT = ("find /etc /opt /var/lib /var/cache/hx-gateway -xdev -type f -newer /etc/hostname 2>/dev/null "
            "| sort | xargs -r sha256sum; getent passwd | sort; getent group | sort; "
            "systemctl list-unit-files --no-legend | sort; "
            "systemctl list-units --all --no-legend | awk '{print $1, $3, $4}' | sort")


def verdict_counts(verdict: str) -> dict[str, int]:
    """"Plan: h: 3 change(s) + 2 that follow them (...); ..." -> {h: 5}; "Plan: no changes (...)" -> {}."""
    if verdict.startswith("Plan: no changes"):
        return {}
    found = re.findall(r"(\S+): (\d+) change\(s\)(?: \+ (\d+) that follow them)?", verdict.removeprefix("Plan: "))
    assert found, verdict
    return {h: int(n) + int(m or 0) for h, n, m in found}


# --- host states -----------------------------------------------------------------------------------
# Each takes (secrets, tmp_path) and returns the secrets and group data the deploy then gets.
State = Callable[[dict, Path], tuple[dict, Path | None]]


def fresh_host(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    exec_in("hx-api", "sh", "-c", FRESH)
    return secrets, None


def converged_host(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    return secrets, None


def hand_edited_file(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    exec_in("hx-api", "sed", "-i", "s/num_retries: 2/num_retries: 7/", "/etc/litellm/config.yaml")
    return secrets, None


def rotated_master_key(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    return {**secrets, "HX_MASTER_KEY": random_key()}, None


def changed_knob(secrets: dict, tmp_path: Path) -> tuple[dict, Path | None]:
    (tmp_path / "gd").mkdir()
    (tmp_path / "gd" / "litellm.py").write_text("cooldown_time = 45\n")
    return secrets, tmp_path / "gd"


def venv_removed_by_hand(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    exec_in("hx-api", "sh", "-c", "rm -rf /opt/litellm/venvs/*")
    return secrets, None


SEED_UNIT = """\
[Unit]
Description=LiteLLM (installed by hand)
After=network-online.target

[Service]
Type=exec
User=litellm
Group=litellm
WorkingDirectory=/opt/litellm
EnvironmentFile=/etc/litellm/litellm.env
ExecStart=/opt/litellm/bin/litellm --config /etc/litellm/config.yaml
Restart=always
RestartSec=10
NoNewPrivileges=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""

# A venv directly at /opt/litellm (the deployed venv moved there, its scripts' shebangs rewritten, as
# if `python3 -m venv /opt/litellm && pip install 'litellm[proxy]'` had made it), its unit and its
# config with the master key inside: the seed documents' hand-made install.
MAKE_SEED_VENV = """set -e
systemctl stop litellm
mv "$(readlink -f /opt/litellm/current)" /opt/seed-venv
rm -rf /opt/litellm /etc/litellm /var/lib/hx-gateway /etc/systemd/system/litellm.service
mv /opt/seed-venv /opt/litellm && rm -f /opt/litellm/.hx-venv-id
find /opt/litellm/bin -type f -exec grep -Il '^#!.*python' {} + | xargs sed -i '1s|^#!.*|#!/opt/litellm/bin/python|'
mkdir -p /etc/litellm
"""


def seed_install(secrets: dict, _: Path) -> tuple[dict, Path | None]:
    exec_in("hx-api", "sh", "-c", MAKE_SEED_VENV)
    backends = ("http://hx-llm01:11434", "http://hx-llm02:11434")
    models = {"phi3-3.8b": "phi3:3.8b-mini-128k-instruct-q8_0", "llama3-8b": "llama3:8b-instruct-q8_0"}
    config = {
        "model_list": [{"model_name": alias, "litellm_params": {"model": f"ollama/{model}", "api_base": backend}}
                       for alias, model in models.items() for backend in backends],
        "general_settings": {"master_key": secrets["HX_MASTER_KEY"]},
    }
    write_file("hx-api", "/etc/litellm/config.yaml", yaml.safe_dump(config), mode="0640")
    write_file("hx-api", "/etc/litellm/litellm.env", "LITELLM_LOCAL_MODEL_COST_MAP=True\n", mode="0640")
    exec_in("hx-api", "chgrp", "litellm", "/etc/litellm/config.yaml", "/etc/litellm/litellm.env")
    write_file("hx-api", "/etc/systemd/system/litellm.service", SEED_UNIT)
    exec_in("hx-api", "sh", "-c", "systemctl daemon-reload && systemctl enable --now litellm")
    wait_for_port("hx-api", 4000, timeout=120)
    return secrets, None


def assert_full_install_ticket(markdown: str, data: dict, secrets: dict) -> None:
    """A fresh host's ticket lists the whole install, with diffs, restart and rollback, and no secret."""
    api = data["hosts"][GATEWAY]
    ops = " | ".join(api["operations"])
    for expected in ("Service group litellm", "Service user litellm", "Install LiteLLM 1.106.2: ",
                     "config.yaml", "hx_auth.py", "client_keys.json", "litellm.env", "Unit /etc/systemd/system"):
        assert expected in ops, (expected, api["operations"])
    details = {d["subject"]: d for d in api["details"]}
    assert details["/opt/litellm/current"]["summary"].startswith("no venv -> LiteLLM 1.106.2")
    # the only gateway: it builds its venv, or receives it from the control node's cache
    assert api["venv"].endswith(("built here from the wheelhouse (the run's only gateway: not packed)",
                                 "received from the control node's cache")), api["venv"]
    assert "+model_list:" in details["/etc/litellm/config.yaml"]["diff"]
    assert "+ExecStart=" in details["/etc/systemd/system/litellm.service"]["diff"]
    env_file = details["/etc/litellm/litellm.env"]
    assert env_file["diff"] == "" and "hidden" in env_file["summary"]
    assert api["restart"].startswith("start") and "Nothing is deployed yet" in api["rollback"]
    assert "## Rollback plan" in markdown and "## Validation plan" in markdown and "```diff" in markdown
    assert all(v not in markdown + json.dumps(data) for v in secrets.values())


STATES: dict[str, State] = {
    "fresh host": fresh_host,
    "converged host": converged_host,
    "managed file edited by hand": hand_edited_file,
    "rotated master key": rotated_master_key,
    "changed knob": changed_knob,
    "venv removed by hand": venv_removed_by_hand,
    "seed-style install by hand": seed_install,
}


@pytest.mark.parametrize("case", list(STATES))
def test_the_preview_is_the_change(converged, lab_secrets, tmp_path, case):
    """Fails on the code before issue 21: with -y the fresh host's preview said `Plan: no changes`."""
    deployed_cleanly = False
    try:
        secrets, group_data = STATES[case](lab_secrets, tmp_path)
        before = exec_in("hx-api", "sh", "-c", SNAPSHOT) if case == "fresh host" else None

        def preview(yes: bool, *options: str) -> PyinfraRun:
            run = pyinfra("--dry", *options, secrets_env=secrets, group_data=group_data, yes=yes)
            assert run.returncode == 0, run.output[-4000:]
            return run

        previews = {f"--dry --json{' -y' if yes else ''}": preview(yes, "--json").json_changes()
                    for yes in (False, True)}
        verdicts = {f"--dry --diff{' -y' if yes else ''}": preview(yes, "--diff").verdict() for yes in (False, True)}
        markdown, data, _ = ticket(secrets, tmp_path / "ticket.md", group_data=group_data)
        if before is not None:  # four dry runs and a ticket left the host byte-identical: files, users, units
            assert exec_in("hx-api", "sh", "-c", SNAPSHOT) == before
            assert_full_install_ticket(markdown, data, secrets)
        previews["ticket"] = {h: set(p["operations"] + p["follow_up_operations"])
                              for h, p in data["hosts"].items() if p["operations"] + p["follow_up_operations"]}
        verdicts["ticket"] = data["verdict"]

        run = pyinfra("--json", secrets_env=secrets, group_data=group_data)
        assert run.returncode == 0, run.output[-4000:]
        deployed = run.json_changes()
        deployed_cleanly = True

        if case == "converged host":
            assert deployed == {}
        else:
            assert deployed.get(GATEWAY), f"{case}: the deploy changed nothing"
        for how, planned in previews.items():
            assert planned == deployed, (how, planned, deployed)
        expected_counts = {h: len(ops) for h, ops in deployed.items()}
        for how, verdict in verdicts.items():
            assert verdict_counts(verdict) == expected_counts, (how, verdict)
    finally:
        if case == "seed-style install by hand":
            # The deploy keeps the hand-made venv's files beside its own venvs (it removes only what it
            # wrote); take them away. A failed deploy may have left anything: start from nothing then.
            exec_in("hx-api", "sh", "-c", "find /opt/litellm -mindepth 1 -maxdepth 1 ! -name venvs ! -name current "
                    "-exec rm -rf {} +" if deployed_cleanly else FRESH + "; rm -rf /opt/litellm")
        back = pyinfra(secrets_env=lab_secrets)
        assert back.returncode == 0, back.output[-4000:]
