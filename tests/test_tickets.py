"""Change tickets from dry runs: exact for one knob, drift shows, keys never do (the fresh host's complete
ticket is checked in test_preview_truth.py, in the same dry runs as its preview)."""

from __future__ import annotations

import json

import pytest
from conftest import pyinfra, random_key, ticket

from lab.lab import exec_in

pytestmark = pytest.mark.lab

def test_a_knob_change_ticket_shows_exactly_that_change_and_its_restart(converged, lab_secrets, tmp_path):
    (tmp_path / "gd").mkdir()
    (tmp_path / "gd" / "litellm.py").write_text("cooldown_time = 45\n")
    markdown, data, _ = ticket(lab_secrets, tmp_path / "ticket.md", group_data=tmp_path / "gd")
    api = data["hosts"]["@docker/hx-api"]
    assert api["operations"] == ["Configure | Render /etc/litellm/config.yaml"]
    (detail,) = api["details"]
    changed = [line for line in detail["diff"].splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed and all("cooldown_time: 30" in line or "cooldown_time: 45" in line for line in changed), changed
    assert "one restart" in api["restart"] and "config.yaml" in api["restart"]
    assert data["hosts"]["@docker/hx-llm01"]["operations"] == [] and not data["no_changes"]
    assert "generation `" in api["rollback"]


def test_hand_edits_on_the_host_show_as_drift(converged, lab_secrets, tmp_path):
    exec_in("hx-api", "sh", "-c", "sed -i 's/num_retries: 2/num_retries: 9/' /etc/litellm/config.yaml && "
                                  "sed -i 's/^RestartSec=3/RestartSec=30/' /etc/systemd/system/litellm.service && "
                                  "chmod 644 /etc/litellm/client_keys.json")
    dry = pyinfra("--dry", "--diff", secrets_env=lab_secrets)
    assert dry.returncode == 0
    assert "-  num_retries: 9" in dry.output and "+  num_retries: 2" in dry.output
    assert "-RestartSec=30" in dry.output and "+RestartSec=3" in dry.output
    assert "mode 644 -> 640" in dry.output  # owner/mode drift, too (client_keys.json)
    _, data, _ = ticket(lab_secrets, tmp_path / "ticket.md")
    ops = data["hosts"]["@docker/hx-api"]["operations"]
    assert any("config.yaml" in op for op in ops) and any(op.startswith("Service | Unit") for op in ops)
    assert any(op.startswith("Keep the deployed state") for op in ops)  # the hand edit is kept before reverting
    assert pyinfra(secrets_env=lab_secrets).returncode == 0
    assert "num_retries: 2" in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")


def test_account_directory_and_unit_drift_shows_and_converges(converged, lab_secrets, tmp_path):
    """These are read by the one GatewayHost fact (not by each operation's own facts): drift must still
    show in the dry run and be put right by the next run."""
    exec_in("hx-api", "sh", "-c", "chmod 700 /etc/litellm && usermod -s /bin/bash litellm && "
                                  "systemctl disable litellm 2>/dev/null")
    _, data, _ = ticket(lab_secrets, tmp_path / "ticket.md")
    ops = data["hosts"]["@docker/hx-api"]["operations"]
    for expected in ("Service user litellm", "Directory /etc/litellm", "litellm enabled and running"):
        assert any(expected in op for op in ops), (expected, ops)
    assert not any("Restart" in op for op in ops)  # none of these needs a restart
    assert pyinfra(secrets_env=lab_secrets).returncode == 0
    assert exec_in("hx-api", "sh", "-c", "stat -c %a /etc/litellm; getent passwd litellm | cut -d: -f7; "
                                         "systemctl is-enabled litellm").split() == ["750", "/usr/sbin/nologin",
                                                                                    "enabled"]
    assert pyinfra(secrets_env=lab_secrets).changed_ops() == []


def test_master_key_rotation_ticket_names_the_change_never_the_keys(converged, lab_secrets, tmp_path):
    rotated = {**lab_secrets, "HX_MASTER_KEY": random_key()}
    markdown, data, output = ticket(rotated, tmp_path / "ticket.md")
    api = data["hosts"]["@docker/hx-api"]
    env = next(d for d in api["details"] if d["subject"] == "/etc/litellm/litellm.env")
    assert env["summary"] == "contents changed (hidden); names changed: LITELLM_MASTER_KEY"
    assert "litellm.env" in api["restart"]
    dry = pyinfra("--dry", "--diff", "-v", secrets_env=rotated)
    everything = markdown + json.dumps(data) + output + dry.output
    for key in (lab_secrets["HX_MASTER_KEY"], rotated["HX_MASTER_KEY"]):
        assert key not in everything
