"""Proof after the deploy: checks pass on a healthy lab, and each fault is named with host and fix."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import gateway_url, host_state, pyinfra, run_verify

from hx_gateway.proof.checks import VALIDATION_PLAN
from lab.lab import configure_double, exec_in

pytestmark = pytest.mark.lab


def test_healthy_lab_passes_every_check_and_writes_the_bundle(converged, lab_secrets, tmp_path):
    result = run_verify(lab_secrets, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    (bundle,) = tmp_path.iterdir()
    summary, checks = (bundle / "summary.md").read_text(), json.loads((bundle / "checks.json").read_text())
    assert "ALL CHECKS PASSED" in summary and checks["passed"] is True
    names = {c["check"] for c in checks["checks"]}
    assert {"unauthenticated_gets_401", "wrong_key_gets_401", "streamed_chat_ends_with_done",
            "embedding[emb-premium]", "traffic_reaches_every_backend[phi3-3.8b]",
            "port_listening_as_service_user"} <= names
    assert {name.split("[")[0] for name in names} == set(VALIDATION_PLAN)  # the ticket promises what runs
    fan_out = next(c for c in checks["checks"] if c["check"].startswith("traffic_reaches"))
    assert all(v > 0 for v in fan_out["figures"]["backends_say"].values())
    for secret in lab_secrets.values():
        assert secret not in summary and secret not in json.dumps(checks) and secret not in result.stdout
    assert "gateway_url" in result.stdout and "evidence" in result.stdout


def test_stopped_backend_is_named_and_the_gateway_still_answers(converged, lab_secrets, tmp_path):
    exec_in("hx-llm02", "systemctl", "stop", "ollama")
    try:
        result = run_verify(lab_secrets, tmp_path)
        assert result.returncode != 0
        failed = [line for line in result.stdout.splitlines() if "FAIL" in line]
        assert any("hx-llm02" in line and "ollama_port_listening" in line for line in failed), result.stdout
        answer = httpx.post(f"{gateway_url()}/v1/chat/completions", timeout=60,
                            headers={"Authorization": f"Bearer {lab_secrets['HX_MASTER_KEY']}"},
                            json={"model": "phi3-3.8b", "messages": [{"role": "user", "content": "still there?"}]})
        assert answer.status_code == 200 and "hx-llm01" in answer.text
    finally:
        exec_in("hx-llm02", "systemctl", "start", "ollama")


def test_missing_model_is_named_with_host_and_fix(converged, lab_secrets, tmp_path):
    configure_double("hx-llm01", {"models": ["phi3:3.8b-mini-128k-instruct-q8_0", "mxbai-embed-large"]})
    try:
        result = run_verify(lab_secrets, tmp_path)
        assert result.returncode != 0
        assert "FAIL  @docker/hx-llm01" in result.stdout
        assert "backend_has_model[llama3:8b-instruct-q8_0]" in result.stdout
        assert "ollama pull llama3:8b-instruct-q8_0" in result.stdout
    finally:
        configure_double("hx-llm01", {"models": ["phi3:3.8b-mini-128k-instruct-q8_0", "llama3:8b-instruct-q8_0",
                                                 "mxbai-embed-large"]})


def test_a_file_where_the_config_directory_goes_stops_preflight_naming_it(converged, lab_secrets):
    """Before: a NotADirectoryError traceback from the host's facts, then one from the deploy."""
    exec_in("hx-api", "sh", "-c", "mv /etc/litellm /etc/litellm.moved && echo by-hand > /etc/litellm")
    try:
        before = host_state()
        run = pyinfra(secrets_env=lab_secrets)
        assert run.returncode != 0 and "Traceback" not in run.output, run.output[-3000:]
        assert "/etc/litellm: exists but is not a directory" in run.output and "nothing was changed" in run.output
        assert host_state() == before
    finally:
        exec_in("hx-api", "sh", "-c", "rm -f /etc/litellm && mv /etc/litellm.moved /etc/litellm")
    assert exec_in("hx-api", "systemctl", "is-active", "litellm") == "active"  # it served throughout


def test_port_taken_by_another_process_stops_preflight_with_its_name(converged, lab_secrets):
    exec_in("hx-api", "systemctl", "stop", "litellm")
    exec_in("hx-api", "systemd-run", "--unit=squatter", "python3", "-m", "http.server", "4000")
    try:
        before = host_state()
        run = pyinfra(secrets_env=lab_secrets)
        assert run.returncode != 0
        assert "preflight failed" in run.output and "squatter" in run.output and "nothing was changed" in run.output
        assert host_state() == before
    finally:
        exec_in("hx-api", "systemctl", "stop", "squatter", check=False)
    again = pyinfra(secrets_env=lab_secrets)
    assert again.returncode == 0 and exec_in("hx-api", "systemctl", "is-active", "litellm") == "active"
