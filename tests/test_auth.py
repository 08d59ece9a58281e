"""Auth without a database: 401/403/429 as documented, limits shared by all workers, hashes only on disk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import gateway_url, pyinfra, random_key

from lab.lab import DOUBLE_DELAY_MS, configure_double, exec_in

pytestmark = pytest.mark.lab

CLIENT_KEYS = """client_keys = [
    {"name": "open-webui", "models": [], "rpm": 600, "max_concurrent": 10, "expires": None},
    {"name": "embed-only", "models": ["emb-premium"], "rpm": 600, "max_concurrent": 10, "expires": None},
    {"name": "expired", "models": [], "rpm": 600, "max_concurrent": 10, "expires": "2020-01-01"},
    {"name": "slow-lane", "models": [], "rpm": 5, "max_concurrent": 10, "expires": None},
    {"name": "narrow", "models": [], "rpm": 600, "max_concurrent": 2, "expires": None},
]
"""
NAMES = ("OPEN_WEBUI", "EMBED_ONLY", "EXPIRED", "SLOW_LANE", "NARROW")


@pytest.fixture(scope="module")
def keys(lab, lab_secrets, tmp_path_factory):
    lab.up()
    data = tmp_path_factory.mktemp("auth-data")
    (data / "all.py").write_text(CLIENT_KEYS)
    env = {**lab_secrets, **{f"HX_CLIENT_KEY_{n}": random_key() for n in NAMES}}
    run = pyinfra(secrets_env=env, group_data=data)
    assert run.returncode == 0, run.output[-3000:]
    for value in env.values():
        assert value not in run.output
    yield {n.lower().replace("_", "-"): env[f"HX_CLIENT_KEY_{n}"] for n in NAMES} | {"master": env["HX_MASTER_KEY"]}
    assert pyinfra(secrets_env=lab_secrets).returncode == 0  # back to the default keys


def call(endpoint: str, key: str | None, model: str = "phi3-3.8b") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = f"{gateway_url()}{endpoint}"
    if endpoint == "/v1/chat/completions":
        return httpx.post(url, headers=headers, timeout=60,
                          json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    if endpoint == "/v1/embeddings":
        return httpx.post(url, headers=headers, timeout=60, json={"model": "emb-premium", "input": "hi"})
    return httpx.get(url, headers=headers, timeout=60)


ENDPOINTS = ("/v1/models", "/v1/chat/completions", "/v1/embeddings", "/health")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_wrong_and_expired_keys_get_401(keys, endpoint):
    for key in (None, "sk-" + "x" * 40, keys["expired"]):
        response = call(endpoint, key)
        assert response.status_code == 401, (endpoint, response.text)
        assert response.json()["error"]["type"] == "authentication_error"


def test_key_for_another_model_gets_403_and_sees_only_its_models(keys):
    assert call("/v1/chat/completions", keys["embed-only"]).status_code == 403
    assert call("/v1/embeddings", keys["embed-only"]).status_code == 200
    listed = {m["id"] for m in call("/v1/models", keys["embed-only"]).json()["data"]}
    assert listed == {"emb-premium"}


@pytest.mark.parametrize("endpoint", ("/v1/models", "/v1/chat/completions", "/v1/embeddings"))
def test_master_and_client_keys_succeed(keys, endpoint):
    assert call(endpoint, keys["master"]).status_code == 200
    assert call(endpoint, keys["open-webui"]).status_code == 200


def test_health_probes_stay_open():
    for path in ("/health/liveliness", "/health/readiness"):
        assert httpx.get(f"{gateway_url()}{path}", timeout=30).status_code == 200


def test_rpm_limit_gives_exactly_rpm_successes_then_429_with_retry_after(keys):
    statuses = [call("/v1/chat/completions", keys["slow-lane"]) for _ in range(8)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429] * 3
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60


def test_third_concurrent_request_is_refused_while_two_are_in_flight(keys):
    for backend in ("hx-llm01", "hx-llm02"):
        configure_double(backend, {"delay_ms": 3000})
    try:
        with ThreadPoolExecutor(3) as pool:
            statuses = sorted(r.status_code for r in pool.map(lambda _: call("/v1/chat/completions", keys["narrow"]),
                                                              range(3)))
    finally:
        for backend in ("hx-llm01", "hx-llm02"):
            configure_double(backend, {"delay_ms": DOUBLE_DELAY_MS})
    assert statuses == [200, 200, 429]
    assert call("/v1/chat/completions", keys["narrow"]).status_code == 200  # leases were released


def test_key_file_holds_digests_not_keys(keys):
    on_disk = exec_in("hx-api", "cat", "/etc/litellm/client_keys.json", "/etc/litellm/config.yaml")
    for value in keys.values():
        assert value not in on_disk
    assert exec_in("hx-api", "stat", "-c", "%a %U %G", "/etc/litellm/client_keys.json") == "640 root litellm"
