"""The rendered files contain only what LiteLLM honours, and never a secret where it must not be."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from conftest import defaults, random_key

from hx_gateway.model.secrets import Secrets, key_digest
from hx_gateway.model.settings import SettingsError, load_settings
from hx_gateway.pyinfra_ext import render


def config() -> dict:
    return yaml.safe_load(render.render_config(load_settings(defaults(), "hx-api"), "1.106.2"))


def test_each_alias_once_per_backend_and_groups_over_members():
    entries = config()["model_list"]
    by_name: dict[str, list] = {}
    for e in entries:
        by_name.setdefault(e["model_name"], []).append(e["litellm_params"]["api_base"])
    assert sorted(by_name["phi3-3.8b"]) == sorted(defaults()["backends"])
    assert len(by_name["hx-chat"]) == 4  # two chat aliases x two backends


def test_routes_and_mode_where_litellm_reads_them():
    for entry in config()["model_list"]:
        params = entry["litellm_params"]
        assert "mode" not in params  # forwarded to Ollama as an option if put here
        assert entry["model_info"]["mode"] in ("chat", "embedding")
        expected = "ollama_chat/" if entry["model_info"]["mode"] == "chat" else "ollama/"
        assert params["model"].startswith(expected) and "api_key" not in params


def test_openai_route_goes_to_ollamas_v1_with_a_placeholder_key():
    data = defaults()
    data["chat_route"] = "openai"
    entries = yaml.safe_load(render.render_config(load_settings(data, "hx-api"), "1.106.2"))["model_list"]
    chat = [e["litellm_params"] for e in entries if e["model_info"]["mode"] == "chat"]
    assert all(p["model"].startswith("openai/") and p["api_base"].endswith(":11434/v1") for p in chat)
    assert all(p["api_key"] == "ollama" for p in chat)
    embedding = [e["litellm_params"] for e in entries if e["model_info"]["mode"] == "embedding"]
    assert all(p["model"].startswith("ollama/") and "api_key" not in p for p in embedding)


def test_no_key_litellm_ignores_or_chokes_on():
    cfg = config()
    assert "health_check_interval" not in cfg["router_settings"]  # makes the proxy refuse to start
    assert "retry_policy" not in cfg["router_settings"]
    assert "telemetry" not in cfg["general_settings"] and "cache" not in cfg["general_settings"]
    assert "allow_requests_on_db_unavailable" not in json.dumps(cfg)  # any wrong key would succeed
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert cfg["general_settings"]["custom_auth"] == "hx_auth.user_api_key_auth"
    assert cfg["litellm_settings"]["disable_hf_tokenizer_download"] is True


def test_secrets_only_in_the_env_file_and_keys_only_as_digests():
    settings = load_settings(defaults(), "hx-api")
    master, client = random_key(), random_key()
    secrets = Secrets(master, {"open-webui": client})
    assert master in render.render_env(secrets)
    unit = render.render_unit(settings, 2, ["10.0.0.1"])
    keys = render.render_client_keys(settings, secrets)
    for text in (render.render_config(settings, "x"), unit, keys):
        assert master not in text and client not in text
    assert key_digest(client) in keys
    assert "LITELLM_LOCAL_MODEL_COST_MAP=True" in unit and "LITELLM_MODE=PRODUCTION" in unit
    assert "--num_workers 2 --run_gunicorn" in unit and "User=litellm" in unit
    data = defaults()
    data["server"] = "uvicorn"
    assert "--num_workers 2\n" in render.render_unit(load_settings(data, "hx-api"), 2, [])


def test_ip_allow_lists_are_off_by_default_and_cover_backends_when_on():
    data = defaults()
    assert "IPAddressAllow" not in render.render_unit(load_settings(data, "h"), 1, ["10.0.0.7"])
    data["allowed_client_networks"] = ["192.168.10.0/24"]
    unit = render.render_unit(load_settings(data, "h"), 1, ["10.0.0.7"])
    assert "IPAddressDeny=any" in unit and "IPAddressAllow=localhost 192.168.10.0/24 10.0.0.7" in unit


def unit(**knobs) -> str:
    return render.render_unit(load_settings({**defaults(), **knobs}, "hx-api"), 2, [])


def test_the_drain_is_one_knob_for_litellm_and_systemd():
    """Issue 31: LiteLLM drains for drain_timeout, systemd waits 15 s more before it kills anything."""
    text = unit(drain_timeout=50)
    assert "Environment=GRACEFUL_SHUTDOWN_TIMEOUT=50\n" in text and "TimeoutStopSec=65\n" in text
    assert "TimeoutStopSec=20" not in text
    derived = unit(request_timeout=60)  # the default follows request_timeout
    assert "Environment=GRACEFUL_SHUTDOWN_TIMEOUT=75\n" in derived and "TimeoutStopSec=90\n" in derived


def test_under_gunicorn_the_workers_drain_before_the_master_is_stopped():
    assert "ExecStop=/bin/sh -c 'w=$$(pgrep -P $MAINPID); [ -z \"$$w\" ] || kill -TERM $$w;" in unit()
    assert "ExecStop=" not in unit(server="uvicorn")


def test_a_drain_no_longer_than_request_timeout_is_refused():
    with pytest.raises(SettingsError, match=r"drain_timeout: 30 s is not longer than request_timeout \(30 s\)"):
        load_settings({**defaults(), "drain_timeout": 30}, "hx-api")


def test_gunicorn_gets_an_ipv6_bind_host_in_brackets_and_uvicorn_bare():
    assert "--host [::] --port 4000" in unit(bind_host="::")
    assert "--host :: --port 4000" in unit(bind_host="::", server="uvicorn")
    assert "--host 0.0.0.0 --port 4000" in unit()


@pytest.mark.parametrize("bind_host, url", [("0.0.0.0", "http://127.0.0.1:4000"), ("::", "http://[::1]:4000"),
                                            ("10.1.2.3", "http://10.1.2.3:4000"), ("fd00::7", "http://[fd00::7]:4000")])
def test_the_host_reaches_its_gateway_where_it_listens(bind_host, url):
    assert load_settings({**defaults(), "bind_host": bind_host}, "hx-api").local_url == url


def test_the_settings_the_deploy_owns_win_over_pass_through_ones():
    """Breakage guarded: extra_router_settings / extra_litellm_settings overriding what the deploy sets
    (issue 32). Validation refuses them (test_settings); the rendering holds even without it."""
    settings = replace(load_settings(defaults(), "hx-api"),
                       extra_router_settings={"num_retries": 9, "routing_strategy": "simple-shuffle", "x": 1},
                       extra_litellm_settings={"callbacks": [], "request_timeout": 999, "y": 2})
    rendered = yaml.safe_load(render.render_config(settings, "1.106.2"))
    assert rendered["router_settings"]["num_retries"] == 2 and rendered["router_settings"]["x"] == 1
    assert rendered["router_settings"]["routing_strategy"] == "least-busy"
    assert rendered["litellm_settings"]["callbacks"] == ["hx_auth.limits", "hx_auth.failover"]
    assert rendered["litellm_settings"]["request_timeout"] == 30 and rendered["litellm_settings"]["y"] == 2


def test_only_the_aliases_with_a_cache_ttl_are_cached_and_only_with_a_redis_host():
    """Breakage guarded: a LiteLLM-wide cache (every alias, every client's say) where the operator
    opted one alias in, or a cache switched on with nowhere shared to keep it (issue 23)."""
    from hx_gateway.model.fleet import RedisSettings

    data = defaults()
    data["model_aliases"] = [{**data["model_aliases"][0], "cache_ttl": 300}, *data["model_aliases"][1:]]
    settings = load_settings(data, "hx-api")
    redis = RedisSettings("hx-redis", 6379, None, "hx-gateway", 256, True)
    litellm_settings = yaml.safe_load(render.render_config(settings, "1.106.2", redis))["litellm_settings"]
    assert litellm_settings["cache"] is True
    assert litellm_settings["cache_params"]["mode"] == "default_off"  # only what hx_auth.caching opts in
    assert litellm_settings["cache_params"]["type"] == "redis" and "password" not in litellm_settings["cache_params"]
    assert litellm_settings["callbacks"] == ["hx_auth.limits", "hx_auth.failover", "hx_auth.caching"]
    assert render.service_environment(settings, "litellm")["HX_CACHE_TTLS"] == "phi3-3.8b=300"
    unit = render.render_unit(settings, 2, [])
    assert "Environment=HX_CACHE_TTLS=phi3-3.8b=300\n" in unit
    plain = load_settings(defaults(), "hx-api")
    assert "cache" not in yaml.safe_load(render.render_config(plain, "1.106.2", redis))["litellm_settings"]
    assert "HX_CACHE_TTLS" not in render.service_environment(plain, "litellm")


def test_with_tls_the_unit_and_the_canary_serve_https_from_files_only_the_service_reads(tmp_path):
    from hx_gateway.pyinfra_ext.health import canary_command
    from lab.tls import ensure_lab_tls

    lab = ensure_lab_tls(tmp_path / "tls", ["hx-api"])
    settings = load_settings({**defaults(), **lab.knobs()}, "hx-api")
    files = render.managed_files(settings)
    chain, key, ca = files["tls_chain"], files["tls_key"], files["ca"]
    assert (chain.path, chain.user, chain.group, chain.mode, chain.secret) == (
        "/etc/litellm/tls-chain.pem", "root", "litellm", "640", False)
    assert (key.path, key.user, key.group, key.mode, key.secret, key.dotenv) == (
        "/etc/litellm/tls-key.pem", "root", "litellm", "640", True, False)
    assert (ca.path, ca.mode) == ("/usr/local/share/ca-certificates/hx-gateway-ca.crt", "644")
    tls = " --ssl_certfile_path /etc/litellm/tls-chain.pem --ssl_keyfile_path /etc/litellm/tls-key.pem"
    assert f"--num_workers 2 --run_gunicorn{tls}\n" in render.render_unit(settings, 2, [])
    assert canary_command(settings, "canary", 4100).endswith(f"--num_workers 1{tls}")
    plain = load_settings(defaults(), "hx-api")
    assert not set(render.managed_files(plain)) & {"tls_chain", "tls_key", "ca"}
    assert "--ssl" not in render.render_unit(plain, 2, []) + canary_command(plain, "canary", 4100)
    without_ca = load_settings({**defaults(), **lab.knobs(), "ca_bundle": None}, "hx-api")
    assert "ca" not in render.managed_files(without_ca)
