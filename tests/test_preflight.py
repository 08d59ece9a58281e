"""Preflight's identity guard: the host must be the one the inventory names, before any change."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from conftest import defaults

from hx_gateway.model.settings import load_settings
from tasks.gateway import preflight

SETTINGS = load_settings(defaults(), "hx-api-server.dev-test.hana-x.ai")


def facts(hostname: str = "hx-api-server", addresses: tuple[str, ...] = ("10.0.0.5",)) -> dict:
    return {"hostname": hostname, "fqdn": hostname, "addresses": list(addresses)}


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name preflight resolves; each resolves to 10.0.0.5 (no query leaves this machine)."""
    asked: list[str] = []

    def getaddrinfo(name: str, port: object) -> list[tuple]:
        asked.append(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 0))]

    monkeypatch.setattr(preflight.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv(preflight.SKIP_IDENTITY_ENV, raising=False)
    return asked


def test_a_host_named_as_the_inventory_names_it_passes_without_a_dns_query(lookups: list[str]):
    assert preflight.identity_problems(SETTINGS, facts(), "hx-api-server.dev-test.hana-x.ai") == []
    assert preflight.identity_problems(SETTINGS, facts("hx-api"), "@docker/hx-api") == []
    assert lookups == []


def test_a_host_known_only_by_its_address_passes_after_one_query(lookups: list[str]):
    assert preflight.identity_problems(SETTINGS, facts("localhost"), "gateway.example") == []
    assert lookups == ["gateway.example"]


def test_another_host_is_refused_with_what_it_is_and_the_fix(lookups: list[str]):
    (problem,) = preflight.identity_problems(SETTINGS, facts("hx-llm01", ("10.0.0.9",)), "hx-api-server.example")
    assert "this host is hx-llm01 (10.0.0.9)" in problem and preflight.SKIP_IDENTITY_ENV in problem


def test_declared_identities_replace_the_inventory_name(lookups: list[str], monkeypatch: pytest.MonkeyPatch):
    declared = replace(SETTINGS, expected_identity=("10.0.0.9",))
    assert preflight.identity_problems(declared, facts("hx-llm01", ("10.0.0.9",)), "anything") == []
    assert preflight.identity_problems(declared, facts(), "hx-api-server")  # the name no longer counts
    monkeypatch.setenv(preflight.SKIP_IDENTITY_ENV, "1")
    assert preflight.identity_problems(declared, facts(), "hx-api-server") == []
    assert lookups == []


def probe(url: str, ok: bool) -> tuple[str, dict]:
    """A backend and its /api/version probe, as preflight reads it."""
    return url, {"url": f"{url}/api/version", "status": 200 if ok else None,
                 "error": "" if ok else "connection refused", "addresses": []}


LLM01, LLM02 = "http://hx-llm01.example:11434", "http://hx-llm02.example:11434"


def test_every_backend_answering_is_no_problem_and_no_degraded_run():
    assert preflight.backend_problems(dict([probe(LLM01, True), probe(LLM02, True)]), set()) == ([], [])


def test_a_backend_down_is_refused_naming_it_and_the_way_through():
    (problem,), down = preflight.backend_problems(dict([probe(LLM01, True), probe(LLM02, False)]), set())
    assert down == [] and problem.startswith(f"backend: {LLM02} does not answer from this host (connection refused)")
    assert "run again with HX_ALLOW_BACKENDS_DOWN=hx-llm02.example" in problem


@pytest.mark.parametrize("named", ["hx-llm02", "hx-llm02.example", LLM02])
def test_a_backend_named_in_the_override_lets_the_run_go_ahead_degraded(named):
    assert preflight.backend_problems(dict([probe(LLM01, True), probe(LLM02, False)]), {named}) == ([], [LLM02])


def test_the_override_for_another_backend_does_not_cover_this_one():
    problems, down = preflight.backend_problems(dict([probe(LLM01, False), probe(LLM02, True)]), {"hx-llm02"})
    assert len(problems) == 1 and LLM01 in problems[0] and down == []


def test_no_backend_answering_is_refused_even_with_the_override():
    (problem,), down = preflight.backend_problems(dict([probe(LLM01, False), probe(LLM02, False)]),
                                                  {"hx-llm01", "hx-llm02"})
    assert down == [] and "no backend answers" in problem and "refused even with HX_ALLOW_BACKENDS_DOWN" in problem


@pytest.mark.parametrize("bind_host, addresses, refused", [
    ("0.0.0.0", ["10.0.0.5"], False), ("::", ["10.0.0.5"], False), ("10.0.0.5", ["127.0.0.1", "10.0.0.5"], False),
    ("127.0.0.1", ["127.0.0.1", "10.0.0.5"], False), ("fd00::1", ["fd00:0:0::1"], False),
    ("10.0.0.6", ["127.0.0.1", "10.0.0.5"], True), ("10.0.0.6", [], False),
])
def test_bind_host_must_be_a_wildcard_or_an_address_of_the_host(bind_host, addresses, refused):
    problems = preflight.bind_host_problems(bind_host, addresses)
    assert bool(problems) is refused
    if refused:
        assert problems[0].startswith(f"bind_host: {bind_host} is not an address of this host")


def test_a_file_where_a_managed_directory_goes_and_a_directory_where_a_file_goes_are_named():
    problems = preflight.path_problems({"/etc/litellm": {"is_dir": False}, "/opt/litellm": None,
                                        "/var/lib/hx-gateway": {"is_dir": True, "user": "root"}},
                                       {"/etc/systemd/system/litellm.service": {"exists": True,
                                                                                "error": "IsADirectoryError"},
                                        "/etc/litellm/config.yaml": {"exists": False}})
    assert problems == [
        "/etc/litellm: exists but is not a directory; the deploy keeps its files there: move it aside "
        "(e.g. mv /etc/litellm /etc/litellm.old) and run again",
        "/etc/systemd/system/litellm.service: cannot be read as a file (IsADirectoryError); the deploy writes "
        "this file: move what is there aside and run again"]


def test_a_drop_in_on_the_gateways_unit_is_a_warning_naming_it():
    assert preflight.drop_in_warning("litellm.service", []) is None
    warning = preflight.drop_in_warning("litellm.service", ["/etc/systemd/system/litellm.service.d/override.conf"])
    assert warning.startswith("litellm.service has drop-in(s) this deploy did not write: "
                              "/etc/systemd/system/litellm.service.d/override.conf;")
