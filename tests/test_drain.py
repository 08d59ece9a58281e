"""No request cut at a restart (issue 31): a streamed request that takes longer than the old 20 s stop
timeout, and longer than gunicorn's own 30 s, started before a restarting change, completes."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from conftest import gateway_url, main_pid, pyinfra

from lab.lab import DOUBLE_DELAY_MS, configure_double

pytestmark = pytest.mark.lab
BACKENDS = ("hx-llm01", "hx-llm02")
MODEL_SECONDS = 36  # what the double takes to answer: more than 20 s (the old stop) and 30 s (gunicorn's)


def stream(key: str, outcome: dict) -> None:
    started = time.monotonic()
    try:
        with httpx.stream("POST", f"{gateway_url()}/v1/chat/completions", timeout=120,
                          headers={"Authorization": f"Bearer {key}"},
                          json={"model": "phi3-3.8b", "stream": True,
                                "messages": [{"role": "user", "content": "take your time"}]}) as response:
            outcome["status"] = response.status_code
            outcome["lines"] = [line for line in response.iter_lines() if line.strip()]
    except httpx.HTTPError as error:
        outcome["error"] = f"{type(error).__name__}: {error}"
    outcome["seconds"] = time.monotonic() - started


def test_a_long_stream_started_before_a_restart_completes(converged, lab_secrets, tmp_path):
    (tmp_path / "litellm.py").write_text("request_timeout = 60\n")  # the backend may take 45 s
    slow = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
    assert slow.returncode == 0, slow.output[-3000:]
    try:
        for backend in BACKENDS:
            configure_double(backend, {"delay_ms": MODEL_SECONDS * 1000})
        outcome: dict = {}
        client = threading.Thread(target=stream, args=(lab_secrets["HX_MASTER_KEY"], outcome))
        client.start()
        time.sleep(2)  # in flight at the gateway, waiting for the backend
        pid = main_pid()
        (tmp_path / "litellm.py").write_text("request_timeout = 60\ncooldown_time = 31\n")
        restarted = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
        client.join(timeout=150)
        assert restarted.returncode == 0, restarted.output[-3000:]
        assert any("Restart litellm" in op for op in restarted.changed_ops()) and main_pid() != pid
        assert "error" not in outcome, outcome
        assert outcome["status"] == 200 and outcome["lines"][-1] == "data: [DONE]", outcome
        assert outcome["seconds"] >= MODEL_SECONDS
    finally:
        for backend in BACKENDS:
            configure_double(backend, {"delay_ms": DOUBLE_DELAY_MS})
        back = pyinfra(secrets_env=lab_secrets)
        assert back.returncode == 0, back.output[-3000:]
