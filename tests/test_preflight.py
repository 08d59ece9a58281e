"""Preflight's identity guard: the host must be the one the inventory names, before any change."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest
from test_settings import defaults

from hx_gateway.settings import load_settings
from tasks import preflight

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
