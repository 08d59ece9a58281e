"""Validation names the field and the fix; bad data never reaches a host."""

from __future__ import annotations

import copy
import os
import stat

import pytest
from conftest import REPO, random_key

from hx_gateway.secrets import DOCUMENTATION_KEY, load_secrets
from hx_gateway.settings import SettingsError, load_settings


def defaults() -> dict:
    data: dict = {}
    for name in ("all", "litellm", "llm"):
        exec((REPO / "group_data" / f"{name}.py").read_text(), {}, data)
    return data


def test_defaults_are_valid_and_spread_every_alias_over_both_backends():
    s = load_settings(defaults(), "hx-api-server.dev-test.hana-x.ai")
    assert s.bind_port == 4000 and s.bind_host == "0.0.0.0"
    assert s.routing_strategy == "least-busy" and s.request_timeout == 30
    assert {a.name for a in s.model_aliases} == {"phi3-3.8b", "llama3-8b", "emb-premium"}
    assert all(a.backends == s.backends for a in s.model_aliases) and len(s.backends) == 2
    assert s.gateway_url == "http://hx-api-server.dev-test.hana-x.ai:4000"


BAD_CASES = {
    "duplicate alias": (lambda d: d["model_aliases"].append(dict(d["model_aliases"][0])), "duplicate alias"),
    "alias with no backend": (lambda d: d["model_aliases"][0].update(backends=["http://other:11434"]),
                              "is not in `backends`"),
    "malformed backend url": (lambda d: d.update(backends=["hx-llm01:11434/x", "http://ok:11434"]), "malformed"),
    "port out of range": (lambda d: d.update(bind_port=70000), "bind_port"),
    "unknown kind": (lambda d: d["model_aliases"][0].update(kind="vision"), "unknown kind"),
    "group names unknown alias": (lambda d: d.update(model_groups={"hx-chat": ["nope"]}), "unknown alias 'nope'"),
    "no backends": (lambda d: d.update(backends=[]), "backends: empty"),
    "unknown server": (lambda d: d.update(server="hypercorn"), "server: 'hypercorn' is unknown"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_names_field_and_fix(case):
    data = copy.deepcopy(defaults())
    mutate, expected = BAD_CASES[case]
    mutate(data)
    with pytest.raises(SettingsError) as err:
        load_settings(data, "hx-api")
    assert expected in str(err.value)


def settings(environment="production"):
    data = defaults()
    data["environment"] = environment
    return load_settings(data, "hx-api")


@pytest.mark.parametrize("value, expected", [
    ("", "missing"),
    (DOCUMENTATION_KEY, "documentation placeholder"),
    ("sk-short", "at least 32"),
])
def test_weak_master_keys_are_refused_outside_the_lab(value, expected):
    env = {"HX_MASTER_KEY": value, "HX_CLIENT_KEY_OPEN_WEBUI": random_key(), "HX_SECRETS_FILE": "/nonexistent"}
    with pytest.raises(SettingsError) as err:
        load_secrets(settings(), env)
    assert expected in str(err.value) and (not value or value not in str(err.value))


def test_short_keys_are_fine_in_the_lab_but_the_placeholder_never_is():
    env = {"HX_MASTER_KEY": "sk-lab", "HX_CLIENT_KEY_OPEN_WEBUI": "sk-lab2", "HX_SECRETS_FILE": "/nonexistent"}
    assert load_secrets(settings("lab"), env).master_key == "sk-lab"
    with pytest.raises(SettingsError):
        load_secrets(settings("lab"), {**env, "HX_MASTER_KEY": DOCUMENTATION_KEY})


def test_secrets_file_must_be_private_and_outside_the_repo(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text(f"HX_MASTER_KEY={random_key()}\nHX_CLIENT_KEY_OPEN_WEBUI={random_key()}\n")
    os.chmod(path, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_secrets(settings(), {"HX_SECRETS_FILE": str(path)})
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert len(load_secrets(settings(), {"HX_SECRETS_FILE": str(path)}).master_key) > 32


def test_secrets_repr_never_shows_values():
    key = random_key()
    secrets = load_secrets(settings(), {"HX_MASTER_KEY": key, "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
                                        "HX_SECRETS_FILE": "/nonexistent"})
    assert key not in repr(secrets) and key not in str(secrets)
