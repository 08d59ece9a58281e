"""Changing the gateway while a backend is down for maintenance (issue 30): refused by default with the
way through named; with HX_ALLOW_BACKENDS_DOWN a key rotation goes ahead, says it is degraded in the
preview, the ticket, the deploy's output and verify's evidence, and clients see no errors."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import gateway_url, host_state, pyinfra, random_key, run_verify, ticket

from lab.lab import exec_in

pytestmark = pytest.mark.lab
DOWN = "http://hx-llm02:11434"
ALLOW = {"HX_ALLOW_BACKENDS_DOWN": "hx-llm02"}


@pytest.fixture
def llm02_stopped(converged, lab_secrets):
    exec_in("hx-llm02", "systemctl", "stop", "ollama")
    try:
        yield
    finally:
        exec_in("hx-llm02", "systemctl", "start", "ollama")
        exec_in("hx-llm01", "systemctl", "start", "ollama")
        back = pyinfra(secrets_env=lab_secrets)  # the lab's own key again, for the tests after this one
        assert back.returncode == 0, back.output[-3000:]


def chat(key: str, model: str) -> httpx.Response:
    return httpx.post(f"{gateway_url()}/v1/chat/completions", timeout=60, headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "who answers?"}]})


def test_a_key_rotation_with_llm02_down_is_refused_then_goes_ahead_degraded(llm02_stopped, lab_secrets, tmp_path):
    rotated = {**lab_secrets, "HX_MASTER_KEY": random_key()}
    before = host_state()
    refused = pyinfra(secrets_env=rotated)
    assert refused.returncode != 0
    assert f"backend: {DOWN} does not answer from this host" in refused.output
    assert "run again with HX_ALLOW_BACKENDS_DOWN=hx-llm02" in refused.output
    assert "Traceback" not in refused.output and "--> Plan:" not in refused.output
    assert host_state() == before

    dry = pyinfra("--dry", secrets_env=rotated, extra_env=ALLOW)
    assert dry.returncode == 0, dry.output[-3000:]
    assert f"DEGRADED run, backends down: @docker/hx-api without {DOWN}" in dry.verdict()
    markdown, data, _ = ticket(rotated, tmp_path / "ticket.md", extra_env=ALLOW)
    assert "DEGRADED" in data["verdict"] and "**DEGRADED**" in markdown and DOWN in markdown

    run = pyinfra(secrets_env=rotated, extra_env=ALLOW)
    assert run.returncode == 0, run.output[-3000:]
    assert f"DEGRADED run (HX_ALLOW_BACKENDS_DOWN): going ahead with {DOWN} down" in run.output
    assert any("Restart litellm" in op for op in run.changed_ops())
    answers = [chat(rotated["HX_MASTER_KEY"], model) for model in ("phi3-3.8b", "hx-chat", "llama3-8b") * 7]
    assert [a.status_code for a in answers] == [200] * 21
    assert all("hx-llm01" in a.text for a in answers)
    assert chat(lab_secrets["HX_MASTER_KEY"], "phi3-3.8b").status_code == 401  # the old key is gone

    verify = run_verify(rotated, tmp_path / "evidence")
    assert verify.returncode == 2, verify.stdout[-4000:]
    assert f"result      : DEGRADED (backends down: {DOWN})" in verify.stdout
    (bundle,) = (tmp_path / "evidence").iterdir()
    evidence = json.loads((bundle / "checks.json").read_text())
    assert evidence["result"] == f"DEGRADED (backends down: {DOWN})"
    passed = {c["check"] for c in evidence["checks"] if c["ok"]}
    assert {"chat_completion[phi3-3.8b]", "chat_completion[hx-chat]", "streamed_chat_ends_with_done",
            "unauthenticated_gets_401", "models_lists_exactly_the_aliases"} <= passed
    failed = [c for c in evidence["checks"] if not c["ok"]]
    assert failed and all(c["backends"] == [DOWN] and c["fix"] for c in failed)
    assert f"backend_reachable_from_gateway[{DOWN}]" in {c["check"] for c in failed}


def test_every_backend_down_is_refused_even_with_the_override(llm02_stopped, lab_secrets):
    exec_in("hx-llm01", "systemctl", "stop", "ollama")
    before = host_state()
    run = pyinfra(secrets_env={**lab_secrets, "HX_MASTER_KEY": random_key()},
                  extra_env={"HX_ALLOW_BACKENDS_DOWN": "hx-llm01,hx-llm02"})
    assert run.returncode != 0
    assert "no backend answers from this host" in run.output
    assert "refused even with HX_ALLOW_BACKENDS_DOWN" in run.output
    assert "Traceback" not in run.output and "--> Plan:" not in run.output
    assert host_state() == before
