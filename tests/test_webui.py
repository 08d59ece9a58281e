"""Open WebUI's settings, secrets, files and lock (issue 25), without a host: every bad input is refused
by name before any host is read; what it is given offers exactly its key's chat models and never
holds the master key."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest
from conftest import REPO, defaults, random_key, settings_problems

import tasks.webui as webui_tasks
from hx_gateway import lock
from hx_gateway.model.plan import fleet_plans
from hx_gateway.proof.webui import WEBUI_VALIDATION_PLAN
from hx_gateway.ticket import validation_of
from tasks.webui import FILES, health_check, render_secrets, render_settings, render_unit, served_at

GATEWAY, WEBUI, LB = {"litellm"}, {"webui"}, {"lb"}
SECRETS = {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(), "HX_SECRETS_FILE": "/nonexistent",
           "HX_WEBUI_SECRET_KEY": random_key(), "HX_WEBUI_ADMIN_PASSWORD": random_key()}


def data(**changes) -> dict:
    found = defaults()
    exec((REPO / "group_data" / "webui.py").read_text(), {}, found)
    return {**found, "gateway_url": "http://10.0.0.1:4000", **changes}


@pytest.fixture(autouse=True)
def operator_secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def hosts(**changes) -> list:
    return [("gw1", data(**changes), GATEWAY), ("@docker/hx-webui", data(**changes), WEBUI)]


def test_the_webui_host_gets_the_key_its_chat_models_and_the_gateway_url():
    plans = fleet_plans(hosts())
    webui = plans["@docker/hx-webui"].webui
    assert webui and not plans["@docker/hx-webui"].gateway and not plans["gw1"].webui
    assert webui.client.gateway_url == "http://10.0.0.1:4000"
    assert webui.client.chat_models == ("phi3-3.8b", "llama3-8b", "hx-chat")  # never the embedding alias
    assert webui.client.embedding_model == "emb-premium"
    assert webui.settings.webui_url == "http://hx-webui:8080"
    assert webui.secrets.client_key == SECRETS["HX_CLIENT_KEY_OPEN_WEBUI"]
    assert plans["gw1"].gateway.fleet.hosts == ("gw1", "@docker/hx-webui")  # monitored like every managed host
    assert set(WEBUI_VALIDATION_PLAN) <= set(validation_of(plans))
    assert not set(WEBUI_VALIDATION_PLAN) & set(validation_of(fleet_plans(hosts()[:1])))


def test_behind_balancers_open_webui_uses_their_url():
    plans = fleet_plans([*hosts(), ("lb1", data(), LB), ("gw2", data(gateway_url="http://10.0.0.2:4000"), GATEWAY)])
    assert plans["@docker/hx-webui"].webui.client.gateway_url == "http://lb1:4000"


def test_a_key_limited_to_some_models_offers_only_its_chat_models():
    keys = [{"name": "open-webui", "models": ["llama3-8b", "emb-premium"], "rpm": 60, "max_concurrent": 10,
             "expires": None}]
    webui = fleet_plans(hosts(client_keys=keys))["@docker/hx-webui"].webui
    assert webui.client.chat_models == ("llama3-8b",)


@pytest.mark.parametrize("change, expected", [
    ({"client_keys": [{"name": "open-webui", "models": ["emb-premium"], "rpm": 60, "max_concurrent": 10,
                       "expires": None}]},
     "webui_client_key: client key 'open-webui' may use no chat alias or group (emb-premium), so Open WebUI would "
     "offer nothing; add chat aliases to its models"),
    ({"client_keys": [{"name": "open-webui", "models": ["phi3-3.8b"], "rpm": 60, "max_concurrent": 10,
                       "expires": None}]},
     "webui_client_key: client key 'open-webui' may use no embedding alias; Open WebUI embeds documents through "
     "the gateway (it fetches no model itself): add one to its models"),
    ({"webui_client_key": "chat-ui"},
     "webui_client_key: 'chat-ui' is not in client_keys (it has open-webui); declare a key for Open WebUI there "
     "(group_data/all.py) and name it here"),
    ({"webui_admin_email": "admin"},
     "webui_admin_email: 'admin' is not an e-mail address Open WebUI accepts; write e.g. admin@example.org (or "
     "admin@localhost)"),
    ({"webui_bind_address": "0.0.0.0"},
     "webui_bind_address: '0.0.0.0' would listen on every address; name one private address of the Open WebUI "
     "host, or None for the address its inventory name resolves to"),
    ({"webui_data_dir": "/var/lib"}, "webui_data_dir: '/var/lib' must be an absolute path of its own"),
    ({"webui_port": 0}, "webui_port: 0 is out of range"),
    ({"webui_url": "webui:8080"}, "webui_url: 'webui:8080' is malformed; write it as http://webui-host:8080"),
])
def test_bad_webui_settings_are_refused_naming_the_knob_and_the_fix(change, expected):
    found = settings_problems(hosts(**change))
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize("name, value, expected", [
    ("HX_WEBUI_ADMIN_PASSWORD", "", "HX_WEBUI_ADMIN_PASSWORD (Open WebUI's first admin password): missing; export "
                                    "HX_WEBUI_ADMIN_PASSWORD=... or put it in the secrets file"),
    ("HX_WEBUI_SECRET_KEY", "", "HX_WEBUI_SECRET_KEY (Open WebUI's session signing key): missing"),
    ("HX_WEBUI_SECRET_KEY", "short", "HX_WEBUI_SECRET_KEY (Open WebUI's session signing key): only 5 characters; "
                                     "use at least 32"),
    ("HX_WEBUI_ADMIN_PASSWORD", "changeme" * 5, "looks like a placeholder; generate one"),
    ("HX_WEBUI_ADMIN_PASSWORD", SECRETS["HX_MASTER_KEY"], "equals another key or password; give Open WebUI its own"),
    ("HX_CLIENT_KEY_OPEN_WEBUI", SECRETS["HX_MASTER_KEY"],
     "HX_CLIENT_KEY_OPEN_WEBUI: equals the master key; give each client its own key"),
])
def test_missing_weak_or_shared_webui_secrets_are_refused(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    found = settings_problems(hosts())
    assert any(expected in problem for problem in found), found
    assert not any(value and value in problem for problem in found)  # a refusal never prints a secret


def test_one_webui_host_and_only_with_a_gateway():
    assert settings_problems([*hosts(), ("webui2", data(), WEBUI)])[0].startswith(
        "webui: 2 hosts (@docker/hx-webui, webui2); each Open WebUI keeps its own accounts and chats")
    assert "webui: no valid gateway to use" in settings_problems(hosts()[1:])[0]


def test_unknown_webui_knobs_are_refused_with_the_closest_name():
    found = settings_problems([("gw1", data(), GATEWAY), ("@docker/hx-webui", {**data(), "webui_prot": 1}, WEBUI)])
    assert any("webui_prot: not a knob of this deploy (it would be ignored); did you mean `webui_port`?" in p
               for p in found), found


def test_its_files_offer_the_chat_models_and_hold_the_key_only_in_the_secret_file():
    webui = fleet_plans(hosts())["@docker/hx-webui"].webui
    settings = render_settings(webui)
    configs = json.loads(next(line.split("=", 1)[1] for line in settings.splitlines()
                              if line.startswith("OPENAI_API_CONFIGS=")).strip("'"))
    assert configs == {"0": {"enable": True, "model_ids": ["phi3-3.8b", "llama3-8b", "hx-chat"]}}
    for line in ("ENABLE_PERSISTENT_CONFIG=False", "OPENAI_API_BASE_URL=http://10.0.0.1:4000/v1", "ENABLE_SIGNUP=False",
                 "RAG_EMBEDDING_MODEL=emb-premium", "CORS_ALLOW_ORIGIN=http://hx-webui:8080", "OFFLINE_MODE=True"):
        assert line in settings.splitlines()
    secret_text = render_secrets(webui).reveal()
    for value in webui.secrets.all_values():
        assert value not in settings and value in secret_text
    assert SECRETS["HX_MASTER_KEY"] not in settings + secret_text
    assert "hidden" in repr(render_secrets(webui)) and "hidden" in repr(webui.secrets)
    assert FILES["secrets"].mode == "600" and FILES["secrets"].secret
    unit = render_unit(webui, "10.0.0.9")
    assert "open-webui serve --host 10.0.0.9 --port 8080" in unit and "ReadWritePaths=/var/lib/open-webui" in unit


def test_the_committed_open_webui_lock_pins_it_with_a_cpu_only_torch_and_hashes():
    (target,) = lock.committed_targets(lock.OPEN_WEBUI)
    text = lock.OPEN_WEBUI.lock_path(target).read_text()
    assert lock.check_lock(text, lock.OPEN_WEBUI) == "0.12.4"
    pinned = lock.pins(text)
    assert pinned["torch"].endswith("+cpu") and not [p for p in pinned if p.startswith(("nvidia-", "triton"))]
    assert {t.key for t in lock.committed_targets()} == {"py3.11.2-x86_64-glibc2.36", "py3.13.5-x86_64-glibc2.41"}


def test_a_lock_that_cannot_be_resolved_is_refused_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path)
    (tmp_path / "open-webui.in").write_text("open-webui==0.0.0.404\n")
    with pytest.raises(lock.LockError, match=r"open-webui.in cannot be resolved for py3.11.2-x86_64-glibc2.36"):
        lock.lock_for(lock.TargetPython("3.11.2", "x86_64", "2.36"), lock.OPEN_WEBUI)
    assert not list(tmp_path.glob("open-webui-py*.txt"))


def test_where_a_unit_of_ours_serves_is_read_back_from_it():
    webui = fleet_plans(hosts())["@docker/hx-webui"].webui
    assert served_at(render_unit(webui, "10.0.0.9")) == ("10.0.0.9", 8080)
    assert served_at("[Service]\nExecStart=/bin/true\n") is None


def test_its_health_check_is_valid_shell_and_gives_up_when_systemd_restarted_it():
    check = health_check("10.0.0.9", 8080)
    assert subprocess.run(["bash", "-n", "-c", check], capture_output=True).returncode == 0
    assert "NRestarts" in check and "http://10.0.0.9:8080/health" in check


def test_a_python_open_webui_does_not_support_is_refused_naming_its_requires_python(monkeypatch, tmp_path):
    """Debian 13's Python 3.13: Open WebUI 0.12.4 declares Requires-Python <3.13, which uv's resolution
    ignores; pip's index says so, and the host is refused before anything is resolved or installed."""
    debian_13 = lock.TargetPython("3.13.5", "x86_64", "2.41")
    assert lock.offered_for("open-webui", "0.12.4", debian_13) is False
    assert lock.offered_for("open-webui", "0.12.4", lock.TargetPython("3.11.2", "x86_64", "2.36")) is True
    monkeypatch.setattr(webui_tasks, "host", SimpleNamespace(name="@docker/hx-webui"))
    monkeypatch.setattr(lock, "LOCK_DIR", tmp_path)
    (tmp_path / "open-webui.in").write_text((REPO / "locks" / "open-webui.in").read_text())
    with pytest.raises(lock.LockError) as refused:
        webui_tasks.venv_for({"python": "3.13.5", "arch": "x86_64", "glibc": "2.41"})
    assert ("Open WebUI cannot be locked for this host's Python 3.13.5 (x86_64, glibc 2.41): open-webui 0.12.4 does "
            "not support Python 3.13.5: its Requires-Python excludes it") in str(refused.value)
    assert "Debian 12's Python 3.11" in str(refused.value) and not list(tmp_path.glob("open-webui-py*.txt"))
