"""Validation names the field and the fix; bad data never reaches a host."""

from __future__ import annotations

import copy
import os
import stat

import pytest
from conftest import REPO, defaults, random_key

from hx_gateway.model.secrets import DOCUMENTATION_KEY, load_secrets, parse_dotenv
from hx_gateway.model.settings import GATEWAY_KNOBS, SettingsError, knob_names, load_settings, unknown_knob_problems


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
    "misspelt alias field": (lambda d: d["model_aliases"][0].update(cache_tll=60),
                             "model_aliases['phi3-3.8b']: unknown field 'cache_tll' (it would be ignored); did you "
                             "mean `cache_ttl`?"),
    "misspelt client key field": (lambda d: d["client_keys"][0].update(max_concurent=3),
                                  "unknown field 'max_concurent' (it would be ignored); did you mean "
                                  "`max_concurrent`?"),
    "cache_ttl not seconds": (lambda d: d["model_aliases"][0].update(cache_ttl="5m"),
                              "model_aliases['phi3-3.8b'].cache_ttl: '5m' is out of range; set seconds from 1"),
    "cache_ttl zero": (lambda d: d["model_aliases"][0].update(cache_ttl=0), ".cache_ttl: 0 is out of range"),
    "LiteLLM-wide cache": (lambda d: d.update(extra_litellm_settings={"cache": True}),
                           "extra_litellm_settings.cache: response caching is set per alias; give the alias a "
                           "`cache_ttl`"),
    "router-wide cache": (lambda d: d.update(extra_router_settings={"cache_responses": True}),
                          "extra_router_settings.cache_responses: response caching is set per alias"),
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


# Every knob's own problem, written out whole: the message a person reads names the knob and the fix.
KNOB_PROBLEMS = [  # (knob, value, the whole message; None: accepted)
    ("environment", "staging", "environment: 'staging' is unknown; use one of production, lab"),
    ("backends", [42], "backends[0]: 42 is not a URL; write it as http://host:11434"),
    ("backends", ["http://a:1", "http://a:1"], "backends: a URL is listed twice; list each backend once"),
    ("bind_port", 70000, "bind_port: 70000 is out of range; set an integer from 1 to 65535"),
    ("bind_port", True, "bind_port: True is out of range; set an integer from 1 to 65535"),
    ("routing_strategy", "round-robin", "routing_strategy: 'round-robin' is unknown; use one of least-busy, "
                                         "simple-shuffle, latency-based-routing, usage-based-routing-v2"),
    ("workers", 0, "workers: 0 is out of range; set None (one per core) or 1..64"),
    ("workers", 65, "workers: 65 is out of range; set None (one per core) or 1..64"),
    ("workers", "2", "workers: '2' is out of range; set None (one per core) or 1..64"),
    ("chat_route", "vllm", "chat_route: 'vllm' is unknown; use one of ollama_chat, ollama, openai"),
    ("server", "hypercorn", "server: 'hypercorn' is unknown; use one of gunicorn, uvicorn"),
    ("service_user", "bad name", "service_user: 'bad name' is not a valid name; use letters, digits, '.', '_' or '-'"),
    ("service_group", 7, "service_group: 7 is not a valid name; use letters, digits, '.', '_' or '-'"),
    ("service_name", "", "service_name: '' is not a valid name; use letters, digits, '.', '_' or '-'"),
    ("venv_root", "/opt", "venv_root: '/opt' must be an absolute path of its own, e.g. /opt/litellm"),
    ("venv_root", "opt/x", "venv_root: 'opt/x' must be an absolute path of its own, e.g. /opt/litellm"),
    ("config_dir", "/etc/", "config_dir: '/etc/' must be an absolute path of its own, e.g. /etc/litellm"),
    ("config_dir", "/usr", "config_dir: '/usr' must be an absolute path of its own, e.g. /etc/litellm"),
    ("config_dir", "/", "config_dir: '/' must be an absolute path of its own, e.g. /etc/litellm"),
    ("gateway_url", "ftp://x", "gateway_url: 'ftp://x' is malformed; write it as http://host:11434 (scheme, host, "
                                "port, no path)"),
    ("gateway_url", "http://x:99999", "gateway_url: 'http://x:99999' is malformed; write it as http://host:11434 "
                                       "(scheme, host, port, no path)"),
    ("gateway_url", "http://x:1/v1", "gateway_url: 'http://x:1/v1' is malformed; write it as http://host:11434 "
                                      "(scheme, host, port, no path)"),
    ("request_timeout", 0, "request_timeout: 0 is out of range; set an integer from 1 to 3600"),
    ("num_retries", 11, "num_retries: 11 is out of range; set an integer from 0 to 10"),
    ("allowed_fails", -1, "allowed_fails: -1 is out of range; set an integer from 0 to 100"),
    ("cooldown_time", 3601, "cooldown_time: 3601 is out of range; set an integer from 0 to 3600"),
    ("health_timeout", 4, "health_timeout: 4 is out of range; set an integer from 5 to 900"),
    ("health_timeout", 901, "health_timeout: 901 is out of range; set an integer from 5 to 900"),
    ("keep_generations", 0, "keep_generations: 0 is out of range; set an integer from 1 to 100"),
    ("keep_generations", 101, "keep_generations: 101 is out of range; set an integer from 1 to 100"),
    ("drain_timeout", 5000, "drain_timeout: 5000 is out of range; set an integer from 1 to 3600"),
    ("drain_timeout", 31, None),  # 31 > request_timeout 30: fine
    ("extra_router_settings", {"bad key": 1}, "extra_router_settings: {'bad key': 1} must be a dict of LiteLLM "
                                               "setting names to values"),
    ("extra_litellm_settings", [1], "extra_litellm_settings: [1] must be a dict of LiteLLM setting names to values"),
    ("extra_router_settings", {"timeout": 5}, "extra_router_settings.timeout: set by its own variable; use that "
                                               "instead"),
    ("allowed_client_networks", ["nope"], "allowed_client_networks: 'nope' is not an address or network; write "
                                           "e.g. 10.0.0.0/8 or 192.0.2.7"),
    ("model_groups", {"phi3-3.8b": ["llama3-8b"]}, "model_groups['phi3-3.8b']: clashes with an alias of the same "
                                                    "name; rename the group"),
    ("model_groups", {"g": []}, "model_groups['g']: empty; list the aliases it spreads over"),
]


@pytest.mark.parametrize("knob, value, expected", KNOB_PROBLEMS, ids=[f"{k}={v!r}" for k, v, _ in KNOB_PROBLEMS])
def test_each_knob_problem_reads_exactly_so(knob, value, expected):
    data = {**copy.deepcopy(defaults()), knob: value}
    if expected is None:
        assert getattr(load_settings(data, "hx-api"), knob) == value
        return
    with pytest.raises(SettingsError) as err:
        load_settings(data, "hx-api")
    assert err.value.problems == [expected]
    assert str(err.value) == f"invalid gateway settings:\n  - {expected}"


ENTRY_PROBLEMS = {
    "no alias": ({"model_aliases": [], "model_groups": {}}, "model_aliases: empty; declare at least one alias"),
    "alias not a dict": ({"model_aliases": ["phi3"], "model_groups": {}},
                         "model_aliases[0]: must be a dict with name, ollama_model, kind"),
    "alias bad name": ({"model_aliases": [{"name": "a b", "ollama_model": "m", "kind": "chat"}],
                        "model_groups": {}},
                       "model_aliases['a b']: name 'a b' is invalid; use letters, digits, '.', '_' or '-'"),
    "alias no model": ({"model_aliases": [{"name": "a", "kind": "chat"}], "model_groups": {}},
                       "model_aliases['a']: ollama_model is missing; name the model as `ollama list` shows it"),
    "alias duplicate": ({"model_aliases": [{"name": "a", "ollama_model": "m", "kind": "chat"}] * 2,
                         "model_groups": {}},
                        "model_aliases['a']: duplicate alias 'a'; each name must appear once"),
    "key bad name": ({"client_keys": [{"name": "", "models": []}]},
                     "client_keys[0]: name '' is invalid; use letters, digits, '.', '_' or '-'"),
    "key duplicate": ({"client_keys": [{"name": "k"}, {"name": "k"}]},
                      "client_keys['k']: duplicate client key name; each name must appear once"),
    "key rpm": ({"client_keys": [{"name": "k", "rpm": 0}]}, "client_keys['k']: rpm 0 must be a positive integer"),
    "key concurrency": ({"client_keys": [{"name": "k", "max_concurrent": "x"}]},
                        "client_keys['k']: max_concurrent 'x' must be a positive integer"),
    "key expiry": ({"client_keys": [{"name": "k", "expires": "soon"}]},
                   "client_keys['k'].expires: 'soon' is not a date; write YYYY-MM-DD or None"),
}


@pytest.mark.parametrize("case", list(ENTRY_PROBLEMS))
def test_each_entry_problem_reads_exactly_so(case):
    change, expected = ENTRY_PROBLEMS[case]
    with pytest.raises(SettingsError) as err:
        load_settings({**copy.deepcopy(defaults()), **change}, "hx-api")
    assert err.value.problems == [expected]


def test_a_client_key_gets_its_limits_defaults_and_its_expiry_as_a_date():
    import datetime as dt

    data = {**defaults(), "client_keys": [{"name": "k"}, {"name": "j", "models": ["hx-chat"], "rpm": 5,
                                                          "max_concurrent": 2, "expires": "2031-01-02"}]}
    k, j = load_settings(data, "hx-api").client_keys
    assert (k.models, k.rpm, k.max_concurrent, k.expires) == ((), 60, 10, None)
    assert (j.models, j.rpm, j.max_concurrent, j.expires) == (("hx-chat",), 5, 2, dt.date(2031, 1, 2))
    assert k.env_name == "HX_CLIENT_KEY_K" and load_settings(
        {**defaults(), "client_keys": [{"name": "open-webui.v2"}]}, "x").client_keys[0].env_name == \
        "HX_CLIENT_KEY_OPEN_WEBUI_V2"


def test_the_defaults_are_exactly_these():
    s = load_settings(defaults(), "hx-api-server.dev-test.hana-x.ai")
    assert (s.environment, s.bind_host, s.bind_port, s.gateway_url) == (
        "production", "0.0.0.0", 4000, "http://hx-api-server.dev-test.hana-x.ai:4000")
    assert (s.routing_strategy, s.request_timeout, s.num_retries, s.allowed_fails, s.cooldown_time) == (
        "least-busy", 30, 2, 1, 30)
    assert (s.workers, s.server, s.chat_route, s.drain_timeout) == (None, "gunicorn", "ollama_chat", 45)
    assert (s.venv_root, s.config_dir, s.service_name, s.service_user, s.service_group) == (
        "/opt/litellm", "/etc/litellm", "litellm", "litellm", "litellm")
    assert (s.health_timeout, s.keep_generations, s.expected_identity, s.allowed_client_networks) == (90, 5, (), ())
    assert (s.extra_router_settings, s.extra_litellm_settings) == ({}, {})
    assert s.secrets_file == "~/.config/hx-gateway/secrets.env" and s.is_lab is False
    assert s.model_groups == {"hx-chat": ("phi3-3.8b", "llama3-8b")}
    assert s.public_models == ("phi3-3.8b", "llama3-8b", "emb-premium", "hx-chat")
    assert [(a.name, a.kind, a.route("ollama_chat")) for a in s.model_aliases] == [
        ("phi3-3.8b", "chat", "ollama_chat/phi3:3.8b-mini-128k-instruct-q8_0"),
        ("llama3-8b", "chat", "ollama_chat/llama3:8b-instruct-q8_0"),
        ("emb-premium", "embedding", "ollama/mxbai-embed-large")]
    assert s.backend_models() == {b: ["phi3:3.8b-mini-128k-instruct-q8_0", "llama3:8b-instruct-q8_0",
                                      "mxbai-embed-large"] for b in s.backends}
    assert s.path("x.yaml") == "/etc/litellm/x.yaml"
    trailing = load_settings({**defaults(), "venv_root": "/srv/llm/", "gateway_url": "http://gw:80/"}, "x")
    assert (trailing.venv_root, trailing.gateway_url) == ("/srv/llm", "http://gw:80")


def test_a_knob_missing_from_the_host_data_is_named():
    data = {k: v for k, v in defaults().items() if k not in ("server", "bind_port")}
    with pytest.raises(SettingsError) as err:
        load_settings(data, "hx-api")
    assert err.value.problems == [f"{k}: missing from the host data; group_data/ declares every knob with its "
                                  f"default: run pyinfra from the repository (or pass its group_data/)"
                                  for k in ("bind_port", "server")]


def test_every_gateway_knob_has_its_default_in_group_data():
    assert set(GATEWAY_KNOBS) <= set(defaults())


def test_the_secrets_file_is_read_as_dotenv():
    text = ("# a comment\n\nHX_MASTER_KEY=sk-plain\nexport HX_CLIENT_KEY_A = 'sk-single quoted'\n"
            "HX_CLIENT_KEY_B=\"sk-double\"\nnot a pair\n  HX_SPACED  =  sk-spaced  \nHX_EQ=a=b\nHX_ONE='\n"
            "HX_MIXED='x\"\n")
    assert parse_dotenv(text) == {"HX_MASTER_KEY": "sk-plain", "HX_CLIENT_KEY_A": "sk-single quoted",
                                  "HX_CLIENT_KEY_B": "sk-double", "HX_SPACED": "sk-spaced", "HX_EQ": "a=b",
                                  "HX_ONE": "'", "HX_MIXED": "'x\""}


def test_the_environment_wins_over_the_secrets_file(tmp_path):
    path = tmp_path / "secrets.env"
    from_file, from_env = random_key(), random_key()
    path.write_text(f"HX_MASTER_KEY={from_file}\nHX_CLIENT_KEY_OPEN_WEBUI={random_key()}\n")
    os.chmod(path, 0o600)
    assert load_secrets(settings(), {"HX_SECRETS_FILE": str(path)}).master_key == from_file
    assert load_secrets(settings(), {"HX_SECRETS_FILE": str(path), "HX_MASTER_KEY": from_env}).master_key == from_env
    missing = load_secrets(settings(), {"HX_SECRETS_FILE": str(tmp_path / "none.env"), "HX_MASTER_KEY": from_env,
                                        "HX_CLIENT_KEY_OPEN_WEBUI": from_file})
    assert missing.client_keys == {"open-webui": from_file}


def test_two_client_keys_sharing_a_value_are_refused():
    shared = random_key()
    data = {**defaults(), "client_keys": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(SettingsError) as err:
        load_secrets(load_settings(data, "x"), {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_A": shared,
                                               "HX_CLIENT_KEY_B": shared, "HX_SECRETS_FILE": "/nonexistent"})
    assert err.value.problems == ["client keys: two client keys share a value; give each its own"]


def test_a_missing_key_says_how_to_make_one():
    with pytest.raises(SettingsError) as err:
        load_secrets(settings(), {"HX_CLIENT_KEY_OPEN_WEBUI": random_key(), "HX_SECRETS_FILE": "/nonexistent"})
    assert err.value.problems == ["HX_MASTER_KEY: missing; export HX_MASTER_KEY=... or put it in the secrets file "
                                  "(generate one: python3 -c 'import secrets; print(\"sk-\" + "
                                  "secrets.token_urlsafe(32))')"]


@pytest.mark.parametrize("knob, low, high", [("bind_port", 1, 65535), ("request_timeout", 1, 3600),
                                             ("num_retries", 0, 10), ("allowed_fails", 0, 100),
                                             ("cooldown_time", 0, 3600), ("health_timeout", 5, 900),
                                             ("keep_generations", 1, 100), ("workers", 1, 64)])
def test_both_ends_of_every_range_are_accepted(knob, low, high):
    for value in (low, high):
        data = {**defaults(), knob: value, "drain_timeout": 3600}
        if knob == "request_timeout" and value == 3600:
            data["drain_timeout"] = None  # derived: 3600 + 15, beyond what may be set by hand
        assert getattr(load_settings(data, "hx-api"), knob) == value


@pytest.mark.parametrize("owner, key", [(o, k) for o in ("extra_router_settings", "extra_litellm_settings")
                                        for k in ("routing_strategy", "num_retries", "timeout", "allowed_fails",
                                                  "cooldown_time", "callbacks", "disable_hf_tokenizer_download",
                                                  "drop_params", "request_timeout")])
def test_every_setting_the_deploy_owns_is_refused_as_a_pass_through(owner, key):
    with pytest.raises(SettingsError) as err:
        load_settings({**defaults(), owner: {key: 1}}, "hx-api")
    assert err.value.problems == [f"{owner}.{key}: set by its own variable; use that instead"]


def test_the_smallest_limits_a_client_key_may_have_are_one():
    data = {**defaults(), "client_keys": [{"name": "k", "rpm": 1, "max_concurrent": 1}]}
    key = load_settings(data, "x").client_keys[0]
    assert (key.rpm, key.max_concurrent) == (1, 1)


def test_inventory_names_give_the_default_url_and_identities_pass_through():
    s = load_settings({**defaults(), "expected_identity": ["10.0.0.5", "gw"], "secrets_file": None}, "@docker/hx-api")
    assert s.gateway_url == "http://hx-api:4000" and s.expected_identity == ("10.0.0.5", "gw")
    assert s.secrets_file == ""
    with pytest.raises(SettingsError, match=r"set drain_timeout to at least 31$"):
        load_settings({**defaults(), "drain_timeout": 30}, "x")
    with pytest.raises(SettingsError, match=r"set drain_timeout to at least 61$"):
        load_settings({**defaults(), "request_timeout": 60, "drain_timeout": 60}, "x")


def test_a_network_written_with_host_bits_is_accepted():
    assert load_settings({**defaults(), "allowed_client_networks": ["10.1.2.3/8"]}, "x").allowed_client_networks == (
        "10.1.2.3/8",)


WRONG_SHAPES = (5, -1, 1.5, True, "x", [], {}, [5], ["x"], [{}], [None], [[1]], {"a": 1}, [{"name": 5}])


def _wrong_shaped(base: dict) -> list[tuple[str, dict]]:
    """Every knob, every field of an alias and of a client key, and a group's member list, each set to
    values of every wrong shape: (what was set, the data)."""
    cases = [(f"{knob}={value!r}", {**base, knob: value}) for knob in sorted(base) for value in WRONG_SHAPES]
    for knob in ("model_aliases", "client_keys"):
        for field in {k for entry in base[knob] for k in entry}:
            for value in WRONG_SHAPES:
                entries = copy.deepcopy(base[knob])
                entries[0][field] = value
                cases.append((f"{knob}[0].{field}={value!r}", {**base, knob: entries}))
    cases += [(f"model_groups member list={v!r}", {**base, "model_groups": {"g": v}}) for v in WRONG_SHAPES]
    return cases


def test_a_value_of_the_wrong_shape_anywhere_is_a_problem_naming_it_never_a_traceback():
    """Before: `model_aliases = 5`, `client_keys[0].models = [{}]` and 35 more crashed the run with a
    TypeError or an AttributeError (a traceback) instead of a refusal."""
    os.environ.setdefault("HX_SECRETS_FILE", "/nonexistent")
    crashed = []
    for what, data in _wrong_shaped(defaults()):
        try:
            load_settings(data)
        except SettingsError:
            pass
        except Exception as error:  # noqa: BLE001 - any other exception is the defect this test looks for
            crashed.append(f"{what}: {type(error).__name__}: {error}")
    assert crashed == []
    with pytest.raises(SettingsError) as refused:
        load_settings({**defaults(), "model_aliases": 5, "bind_host": 7})
    problems = refused.value.problems
    assert "model_aliases: 5 is not a list; set a list of dicts with name, ollama_model and kind" in problems
    assert any(p.startswith("bind_host: 7 is not an IP address") for p in problems)


def test_a_secrets_file_that_cannot_be_read_as_name_value_lines_is_a_problem_that_shows_no_key(tmp_path):
    """Before: a line without `=` was skipped without a word (its key then "missing"), a non-UTF-8
    file or a directory ended the run in a traceback or a misleading message."""
    key = random_key()
    cases = {
        "lines.env": (f"# comment\n\nHX_MASTER_KEY={random_key()}\nHX_CLIENT_KEY_OPEN_WEBUI {key}\n=x\n".encode(),
                      "line(s) 4, 5 are not NAME=value"),
        "binary.env": (b"\xff\xfe\x00HX_MASTER_KEY=x\n", "cannot be read as UTF-8 text"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        path.chmod(0o600)
        with pytest.raises(SettingsError) as refused:
            load_secrets(settings(), {"HX_SECRETS_FILE": str(path)})
        said = "\n".join(refused.value.problems)
        assert f"secrets file {path}: {expected}" in said and key not in said, said
    (tmp_path / "folder.env").mkdir(mode=0o700)
    with pytest.raises(SettingsError, match="folder.env: is not a file"):
        load_secrets(settings(), {"HX_SECRETS_FILE": str(tmp_path / "folder.env")})
