"""Open WebUI in the lab (issue 25): hx-webui runs the real Open WebUI 0.12.4, installed from the
control node's wheelhouse. Converge, idempotence (no change, no restart), verify from outside; its key
rotated reaches it at the next deploy while the old key gets 401; bad inputs refused before any host
changes. hx-webui is removed at the end, so the tests after this module find their lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from conftest import LAB_INVENTORY, REPO, gateway_url, pyinfra, random_key, run_verify

from hx_gateway import lock, venv_artifacts
from hx_gateway.model.plan import venv_plan
from hx_gateway.proof.webui import WEBUI_VALIDATION_PLAN
from hx_gateway.webui_api import signin
from lab.lab import address_of, docker, exec_in

pytestmark = [pytest.mark.lab, pytest.mark.webui]

WEBUI_ENV = {"HX_LAB_WEBUI": "1"}
# hx-webui as if Open WebUI had never been deployed there (a kept lab may hold an earlier run's).
FRESH_WEBUI = ("systemctl disable --now open-webui 2>/dev/null; rm -rf /opt/open-webui /etc/open-webui "
               "/var/lib/open-webui /etc/systemd/system/open-webui.service; userdel open-webui 2>/dev/null; "
               "groupdel open-webui 2>/dev/null; systemctl daemon-reload")
STATE = ("sha256sum /etc/open-webui/* /etc/systemd/system/open-webui.service; "
         "systemctl show -p MainPID --value open-webui; readlink /opt/open-webui/current")


class Webui:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets

    def deploy(self, *args: str, group_data=None, **changes: str):
        return pyinfra(*args, secrets_env={**self.secrets, **changes}, extra_env=WEBUI_ENV, group_data=group_data)

    @staticmethod
    def pid() -> str:
        return exec_in("hx-webui", "systemctl", "show", "-p", "MainPID", "--value", "open-webui").strip()

    @staticmethod
    def state() -> str:
        return exec_in("hx-webui", "sh", "-c", STATE, check=False)


def venv_artifact() -> venv_artifacts.Artifact:
    """The artifact of hx-webui's venv in the control node's cache."""
    (target,) = lock.committed_targets(lock.OPEN_WEBUI)
    facts = {"python": target.version, "arch": target.arch, "glibc": target.glibc}
    venv_id = venv_plan(facts, lock.OPEN_WEBUI).venv_id
    return venv_artifacts.Artifact(venv_id, target.key, f"/opt/open-webui/venvs/{venv_id[:16]}")


@pytest.fixture(scope="module")
def webui(lab, lab_secrets):
    secrets = {**lab_secrets, "HX_WEBUI_SECRET_KEY": random_key(), "HX_WEBUI_ADMIN_PASSWORD": random_key()}
    type(lab)(webui=True).up()
    exec_in("hx-webui", "sh", "-c", FRESH_WEBUI, check=False)
    venv_artifacts.forget(venv_artifact())  # the first converge builds (and packs); the last test receives
    the_webui = Webui(secrets)
    the_webui.first = the_webui.deploy()
    try:
        yield the_webui
    finally:
        docker("rm", "-f", "-v", "hx-webui", check=False)


def verified(secrets: dict[str, str], tmp_path) -> dict[str, dict]:
    result = run_verify(secrets, tmp_path, extra_env=WEBUI_ENV)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    (bundle,) = tmp_path.glob("*/checks.json")
    text = bundle.read_text()
    for value in secrets.values():
        assert value not in result.stdout + result.stderr + text  # no secret in the output or the evidence
    return {c["check"]: c for c in json.loads(text)["checks"]}


def test_a_fresh_host_converges_then_a_second_run_changes_and_restarts_nothing_and_verify_passes(webui, tmp_path):
    first = webui.first
    assert first.returncode == 0, first.output[-6000:]
    assert "built from the control node's wheelhouse (uv), packed into its cache" in first.output, first.output[-3000:]
    assert "Open WebUI answers /health" in first.output
    assert venv_artifacts.usable(venv_artifact())  # kept, with its digest, for the next host of this platform
    assert exec_in("hx-webui", "stat", "-c", "%U %a", "/etc/open-webui/secrets.env").strip() == "root 600"
    assert exec_in("hx-webui", "stat", "-c", "%U %a", "/var/lib/open-webui").strip() == "open-webui 700"
    pid = webui.pid()
    preview = webui.deploy("--dry")
    assert preview.returncode == 0 and preview.verdict().startswith("Plan: no changes"), preview.output[-3000:]
    again = webui.deploy()
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-3000:]
    assert webui.pid() == pid != "0"
    for value in webui.secrets.values():
        assert value not in first.output + preview.output + again.output
    checks = verified(webui.secrets, tmp_path)
    assert {name.split("[")[0] for name in checks if name.startswith("webui_")} == set(WEBUI_VALIDATION_PLAN)


def test_its_rotated_key_reaches_it_at_the_next_deploy_and_the_old_key_gets_401(webui, tmp_path):
    old, new = webui.secrets["HX_CLIENT_KEY_OPEN_WEBUI"], random_key()
    pid = webui.pid()
    preview = webui.deploy("--dry", HX_CLIENT_KEY_OPEN_WEBUI=new)
    assert preview.returncode == 0, preview.output[-3000:]
    assert "Open WebUI /etc/open-webui/secrets.env (contents hidden)" in preview.output
    run = webui.deploy(HX_CLIENT_KEY_OPEN_WEBUI=new)
    assert run.returncode == 0, run.output[-6000:]
    assert new not in run.output + preview.output and old not in run.output
    webui.secrets["HX_CLIENT_KEY_OPEN_WEBUI"] = new
    assert webui.pid() != pid  # restarted on the new key
    verified(webui.secrets, tmp_path)  # a chat through Open WebUI (its API) answers, on the new key
    refused = httpx.get(f"{gateway_url()}/v1/models", headers={"Authorization": f"Bearer {old}"}, timeout=30)
    assert refused.status_code == 401


def test_a_hand_change_in_its_admin_panel_shows_in_the_preview_and_the_deploy_puts_it_back(webui):
    with httpx.Client(base_url=f"http://{address_of('hx-webui')}:8080", timeout=30) as http:
        _, token = signin(http, "admin@localhost", webui.secrets["HX_WEBUI_ADMIN_PASSWORD"])
        auth = {"Authorization": f"Bearer {token}"}
        config = http.get("/openai/config", headers=auth).json()
        config["OPENAI_API_BASE_URLS"] = ["http://127.0.0.1:9/v1"]  # by hand, in its admin panel
        http.post("/openai/config/update", headers=auth, json=config).raise_for_status()
        preview = webui.deploy("--dry")
        assert preview.returncode == 0, preview.output[-3000:]
        assert ("Restart open-webui.service (its admin panel changed OPENAI_API_BASE_URLS, which the deploy owns"
                in preview.output), preview.output[-3000:]
        run = webui.deploy()
        assert run.returncode == 0, run.output[-4000:]
        _, token = signin(http, "admin@localhost", webui.secrets["HX_WEBUI_ADMIN_PASSWORD"])
        back = http.get("/openai/config", headers={"Authorization": f"Bearer {token}"}).json()
    assert back["OPENAI_API_BASE_URLS"] == [f"{gateway_url()}/v1"]
    assert webui.deploy("--dry").verdict().startswith("Plan: no changes")


def test_a_new_state_that_does_not_start_is_rolled_back_and_the_previous_one_serves(webui, tmp_path):
    address = address_of("hx-webui")
    (tmp_path / "webui.py").write_text("webui_port = 8081\n")
    # A listener of its own user on the new port: preflight takes it for Open WebUI's, the start cannot bind it.
    exec_in("hx-webui", "systemd-run", "--unit", "hx-squat", "-p", "User=open-webui", "python3", "-m", "http.server",
            "8081", "--bind", address)
    try:
        before = webui.state()
        run = webui.deploy(group_data=tmp_path)
        assert run.returncode != 0, run.output[-4000:]
        assert "did not come up on the new state; rolled back to generation" in run.output, run.output[-4000:]
        assert "the previous generation is serving again" in run.output
    finally:
        exec_in("hx-webui", "systemctl", "stop", "hx-squat", check=False)
    assert httpx.get(f"http://{address}:8080/health", timeout=10).status_code == 200
    after = webui.state()
    assert after.splitlines()[:3] == before.splitlines()[:3]  # the files as they were; a new PID
    assert webui.deploy("--dry").verdict().startswith("Plan: no changes")


def test_the_rollback_command_puts_its_previous_generation_back_and_verify_proves_it(webui, tmp_path):
    address = address_of("hx-webui")
    (tmp_path / "webui.py").write_text("webui_port = 8082\n")
    moved = webui.deploy(group_data=tmp_path)
    assert moved.returncode == 0, moved.output[-4000:]
    assert httpx.get(f"http://{address}:8082/health", timeout=10).status_code == 200
    rollback = [sys.executable, "-m", "hx_gateway.rollback", LAB_INVENTORY, "--component", "webui"]
    env = {**os.environ, **webui.secrets, **WEBUI_ENV, "HX_SECRETS_FILE": "/nonexistent"}
    listed = subprocess.run([*rollback, "--list"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "deployed  <- deployed" in listed.stdout and listed.stdout.startswith("@docker/hx-webui  "), listed.stdout
    evidence = tmp_path / "evidence"
    back = subprocess.run([*rollback, "--evidence-dir", str(evidence)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert back.returncode == 0, back.stdout[-4000:] + back.stderr[-2000:]
    (bundle,) = evidence.glob("*/checks.json")
    checks = {c["check"]: c for c in json.loads(bundle.read_text())["checks"]}
    assert checks["webui_rollback_restored_a_generation"]["ok"]
    assert any(name.startswith("webui_chat_answers") for name in checks)  # then verified through it
    assert httpx.get(f"http://{address}:8080/health", timeout=10).status_code == 200
    for value in webui.secrets.values():
        assert value not in back.stdout + back.stderr + bundle.read_text() + listed.stdout
    assert webui.deploy("--dry").verdict().startswith("Plan: no changes")  # the declared state is back


@pytest.mark.parametrize("changes, expected", [
    ({"HX_WEBUI_ADMIN_PASSWORD": ""}, "HX_WEBUI_ADMIN_PASSWORD (Open WebUI's first admin password): missing"),
    ({"HX_WEBUI_SECRET_KEY": ""}, "HX_WEBUI_SECRET_KEY (Open WebUI's session signing key): missing"),
    ({"HX_CLIENT_KEY_OPEN_WEBUI": "master"}, "HX_CLIENT_KEY_OPEN_WEBUI: equals the master key"),
])
def test_bad_inputs_are_refused_before_any_host_changes(webui, changes, expected):
    before = webui.state()
    changes = {k: webui.secrets["HX_MASTER_KEY"] if v == "master" else v for k, v in changes.items()}
    run = webui.deploy(**changes)
    assert run.returncode != 0 and expected in run.output and "Traceback" not in run.output, run.output[-3000:]
    assert webui.state() == before


def test_destroy_takes_open_webui_off_its_host_and_proves_it_clean(webui, tmp_path):
    """Late in this module: the host is left as a fresh one (the next test re-creates it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HX_")} | WEBUI_ENV  # destroy needs no secret
    command = [sys.executable, "-m", "hx_gateway.destroy", LAB_INVENTORY, "--limit", "hx-webui"]
    dry = subprocess.run([*command, "--dry"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0 and "remove tree: /var/lib/open-webui" in dry.stdout, dry.stdout + dry.stderr
    assert "hx-api" not in dry.stdout  # --limit: the gateway stays
    done = subprocess.run([*command, "-y", "--evidence-dir", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    left = exec_in("hx-webui", "sh", "-c", "ls -d /opt/open-webui /etc/open-webui /var/lib/open-webui "
                   "/var/lib/hx-gateway /etc/systemd/system/open-webui.service 2>/dev/null; id open-webui 2>&1",
                   check=False)
    assert left.strip() == "id: 'open-webui': no such user", left
    assert httpx.get(f"{gateway_url()}/health/liveliness", timeout=10).status_code == 200


def test_a_re_created_host_receives_its_venv_from_the_control_nodes_cache_and_serves(webui):
    """After destroy the host is as a rebuilt one: its venv comes unpacked from the artifact the first
    converge packed (digest checked), not built again."""
    preview = webui.deploy("--dry")
    assert "received from the control node's cache" in preview.output, preview.output[-3000:]
    run = webui.deploy()
    assert run.returncode == 0, run.output[-4000:]
    assert "venv received (venv-" in run.output and "venv built here" not in run.output, run.output[-4000:]
    artifact = venv_artifact()
    assert exec_in("hx-webui", "cat", "/opt/open-webui/current/.hx-venv-id").strip() == artifact.venv_id
    assert httpx.get(f"http://{address_of('hx-webui')}:8080/health", timeout=10).status_code == 200
