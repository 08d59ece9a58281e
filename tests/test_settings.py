"""Validation names the field and the fix; bad data never reaches a host."""

from __future__ import annotations

import copy
import os
import stat

import pytest
from conftest import REPO, defaults, random_key

from hx_gateway.model.secrets import DOCUMENTATION_KEY, load_secrets
from hx_gateway.model.settings import SettingsError, knob_names, load_settings, unknown_knob_problems


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
    "embedding alias in a chat group": (lambda d: d.update(model_groups={"hx-chat": ["phi3-3.8b", "emb-premium"]}),
                                        "'emb-premium' is an embedding alias; a group spreads chat requests"),
    "bind_host not an address": (lambda d: d.update(bind_host="localhost:4000"),
                                 "bind_host: 'localhost:4000' is not an IP address"),
    "bind_host a name": (lambda d: d.update(bind_host="hx-api"), "bind_host: 'hx-api' is not an IP address"),
    "client network malformed": (lambda d: d.update(allowed_client_networks=["10.0.0.0/33"]),
                                 "allowed_client_networks: '10.0.0.0/33' is not an address or network"),
    "client key with an unknown model": (lambda d: d["client_keys"][0].update(models=["gpt-4"]),
                                         "allows unknown model 'gpt-4'"),
    "extra setting overriding an owned one": (lambda d: d.update(extra_router_settings={"num_retries": 9}),
                                              "extra_router_settings.num_retries: set by its own variable"),
    "extra litellm setting overriding an owned one": (
        lambda d: d.update(extra_litellm_settings={"callbacks": ["x"]}),
        "extra_litellm_settings.callbacks: set by its own variable"),
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


def test_ipv6_and_specific_bind_hosts_are_accepted():
    for value in ("::", "127.0.0.1", "10.1.2.3", "fd00::7"):
        data = defaults()
        data["bind_host"] = value
        assert load_settings(data, "hx-api").bind_host == value


@pytest.mark.parametrize("misspelt, meant", [("request_timout", "request_timeout"), ("bind_prot", "bind_port"),
                                             ("model_alias", "model_aliases"), ("ollama_prot", "ollama_port"),
                                             ("client_key", "client_keys")])
def test_a_misspelt_knob_is_refused_naming_the_nearest_knob(misspelt, meant):
    """Breakage guarded: a misspelt knob silently ignored while its default applies (issue 22)."""
    problems = unknown_knob_problems({**defaults(), misspelt: 1})
    assert problems == [f"{misspelt}: not a knob of this deploy (it would be ignored); did you mean `{meant}`? "
                        f"Rename it"]


def test_unknown_knobs_ignore_pyinfra_names_and_every_declared_knob():
    assert unknown_knob_problems({**defaults(), "_sudo": True, "ssh_user": "admin"}, foreign={"ssh_user"}) == []
    assert unknown_knob_problems({"zzzz": 1}) == ["zzzz: not a knob of this deploy (it would be ignored); remove it, "
                                                  "or see the README's Variables table"]


def test_every_knob_in_group_data_and_the_readme_table_is_declared():
    declared = set(knob_names())
    assert set(defaults()) <= declared
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Variables", 1)[1].split("\n## ", 1)[0]
    for knob in declared:
        assert f"`{knob}`" in table, f"{knob} is missing from the README's Variables table"


def test_a_secrets_file_inside_the_repository_is_refused_even_when_private(tmp_path):
    """Breakage guarded: the secrets file may sit inside the repository (issue 32)."""
    inside = REPO / f"secrets-test-{os.getpid()}.env"
    inside.write_text(f"HX_MASTER_KEY={random_key()}\nHX_CLIENT_KEY_OPEN_WEBUI={random_key()}\n")
    try:
        os.chmod(inside, 0o600)
        with pytest.raises(SettingsError, match=r"lies inside the repository; move it out"):
            load_secrets(settings(), {"HX_SECRETS_FILE": str(inside)})
    finally:
        inside.unlink()


@pytest.mark.parametrize("value, expected", [
    ("sk-short", "only 8 characters; use at least 32 outside the lab"),
    ("x" * 31, "only 31 characters; use at least 32"),
    (DOCUMENTATION_KEY, "documentation placeholder"),
    ("sk-has a space-and-is-long-enough-1234567", "white space"),
])
def test_weak_client_keys_are_refused_outside_the_lab(value, expected):
    """Breakage guarded: client keys escaping the length/strength rule outside the lab (issue 32)."""
    env = {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": value, "HX_SECRETS_FILE": "/nonexistent"}
    with pytest.raises(SettingsError) as err:
        load_secrets(settings(), env)
    assert "HX_CLIENT_KEY_OPEN_WEBUI (client key 'open-webui'): " in str(err.value) and expected in str(err.value)
    assert value not in str(err.value) or value == DOCUMENTATION_KEY and "public" in str(err.value)


def test_a_32_character_client_key_is_enough_and_the_lab_takes_short_ones():
    env = {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": "k" * 32, "HX_SECRETS_FILE": "/nonexistent"}
    assert load_secrets(settings(), env).client_keys == {"open-webui": "k" * 32}
    short = {**env, "HX_CLIENT_KEY_OPEN_WEBUI": "sk-lab"}
    assert load_secrets(settings("lab"), short).client_keys == {"open-webui": "sk-lab"}


def test_a_client_key_equal_to_the_master_key_is_refused():
    key = random_key()
    with pytest.raises(SettingsError, match="equals the master key"):
        load_secrets(settings(), {"HX_MASTER_KEY": key, "HX_CLIENT_KEY_OPEN_WEBUI": key,
                                  "HX_SECRETS_FILE": "/nonexistent"})
