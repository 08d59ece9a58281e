"""The `redis` and `lb` groups' settings and the rules that span groups (issue 23): each bad input
is refused before any host is read, with the knob (or group) and the fix named."""

from __future__ import annotations

import pytest
from conftest import defaults, random_key, settings_problems

from hx_gateway.model.fleet import Member
from hx_gateway.model.plan import fleet_plans
from hx_gateway.proof.checks import VALIDATION_PLAN
from hx_gateway.proof.fleet import FLEET_VALIDATION_PLAN
from hx_gateway.ticket import roll_of, validation_of

GATEWAY, REDIS, LB = {"litellm"}, {"redis"}, {"lb"}


@pytest.fixture(autouse=True)
def operator_secrets(monkeypatch):
    for name, value in {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
                        "HX_REDIS_PASSWORD": random_key(), "HX_SECRETS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)


def test_a_fleet_plan_gives_each_host_its_components_and_the_gateways_their_redis_and_balancers():
    data = defaults()
    plans = fleet_plans([("gw1", {**data, "gateway_url": "http://10.0.0.1:4000"}, GATEWAY),
                         ("gw2", {**data, "gateway_url": "http://10.0.0.2:4000"}, GATEWAY),
                         ("@docker/hx-redis", data, REDIS), ("lb1", data, LB)])
    assert plans["gw1"].gateway and not plans["gw1"].redis and not plans["gw1"].lb
    fleet = plans["gw1"].gateway.fleet
    assert fleet.redis.address == "hx-redis" and fleet.redis.redis_user == "hx-gateway"
    assert [lb.lb_url for lb in fleet.lbs] == ["http://lb1:4000"]
    assert fleet.gateways == (Member("gw1", "10.0.0.1", 4000, 45), Member("gw2", "10.0.0.2", 4000, 45))
    assert plans["@docker/hx-redis"].redis.password.reveal() == plans["gw2"].gateway.secrets.redis_password
    assert "hidden" in repr(plans["@docker/hx-redis"].redis.password)
    assert plans["gw1"].gateway.secrets.redis_password in plans["gw1"].gateway.secrets.all_values()


def test_the_ticket_lists_the_checks_verify_runs_for_the_parts_the_service_has():
    data = defaults()
    cached = {**data, "model_aliases": [{**a, "cache_ttl": 60} if i == 0 else a
                                        for i, a in enumerate(data["model_aliases"])]}
    one = set(validation_of(fleet_plans([("gw1", data, GATEWAY)])))
    assert one == set(VALIDATION_PLAN)
    with_redis = set(validation_of(fleet_plans([("gw1", data, GATEWAY), ("r1", data, REDIS)]))) - one
    assert with_redis == {"redis_refuses_unauthenticated", "redis_lets_the_gateway_in"}
    with_lb = set(validation_of(fleet_plans([("gw1", data, GATEWAY), ("lb1", data, LB)]))) - one
    assert with_lb == {"gateway_up_in_balancer", "balancer_serves_models", "balancer_unauthenticated_gets_401",
                       "burst_reaches_every_gateway"}
    everything = validation_of(fleet_plans([("gw1", cached, GATEWAY), ("r1", cached, REDIS), ("lb1", cached, LB)]))
    assert set(everything) == set(VALIDATION_PLAN) | set(FLEET_VALIDATION_PLAN)


def test_without_redis_no_redis_password_is_asked_for(monkeypatch):
    monkeypatch.delenv("HX_REDIS_PASSWORD")
    plans = fleet_plans([("gw1", defaults(), GATEWAY)])
    assert plans["gw1"].gateway.secrets.redis_password == "" and plans["gw1"].gateway.fleet.redis is None


LABEL = "HX_REDIS_PASSWORD (the `redis` group's password): "


@pytest.mark.parametrize("password, expected", [
    (None, LABEL + "missing; export HX_REDIS_PASSWORD=..."),
    ("short-but-random-9f2", LABEL + "only 20 characters; use at least 32"),
    ("changeme-changeme-changeme-changeme", LABEL + "looks like a placeholder"),
])
def test_a_redis_group_needs_a_strong_password_in_the_lab_too(monkeypatch, password, expected):
    if password is None:
        monkeypatch.delenv("HX_REDIS_PASSWORD")
    else:
        monkeypatch.setenv("HX_REDIS_PASSWORD", password)
    found = settings_problems([("gw1", {**defaults(), "environment": "lab"}, GATEWAY), ("redis1", defaults(), REDIS)])
    assert len(found) == 1 and found[0].startswith(expected), found


def test_the_redis_password_may_not_be_another_key(monkeypatch):
    monkeypatch.setenv("HX_REDIS_PASSWORD", key := random_key())
    monkeypatch.setenv("HX_MASTER_KEY", key)
    found = settings_problems([("gw1", defaults(), GATEWAY), ("r", defaults(), REDIS)])
    assert any("equals another key" in p for p in found)


def test_two_redis_hosts_and_groups_without_gateways_are_refused():
    data = defaults()
    assert settings_problems([("gw1", data, GATEWAY), ("r1", data, REDIS), ("r2", data, REDIS)]) == [
        "redis: 2 hosts (r1, r2); the deploy runs one Redis for the whole service: keep one host in the "
        "`redis` group"]
    assert settings_problems([("lb1", data, LB)]) == [
        "lb: no gateways to balance; add hosts to the `litellm` group or remove the `lb` group"]
    assert settings_problems([("r1", data, REDIS)])[0].startswith("redis: no gateways use it")


def test_a_cached_alias_needs_a_redis_host_to_keep_the_cache_in():
    data = defaults()
    cached = {**data, "model_aliases": [{**data["model_aliases"][0], "cache_ttl": 300}, *data["model_aliases"][1:]]}
    assert settings_problems([("gw1", cached, GATEWAY)]) == [
        "gw1: model_aliases['phi3-3.8b'].cache_ttl needs a `redis` host to keep the cache in; add one to the "
        "inventory, or set cache_ttl to None"]
    plans = fleet_plans([("gw1", cached, GATEWAY), ("r1", data, REDIS)])
    assert plans["gw1"].gateway.settings.cached_aliases == {"phi3-3.8b": 300}


def test_a_balancer_needs_gateways_it_can_reach_and_timeouts_longer_than_their_requests():
    data = defaults()
    loopback = {**data, "bind_host": "127.0.0.1", "gateway_url": "http://127.0.0.1:4000"}
    found = settings_problems([("gw1", loopback, GATEWAY), ("lb1", {**data, "lb_idle_timeout": 60}, LB)])
    assert found[0].startswith("gw1: bind_host 127.0.0.1 / gateway_url http://127.0.0.1:4000 is loopback")
    assert found[1] == ("lb1: lb_idle_timeout 60 s is shorter than a request gw1 may take (request_timeout x "
                        "(num_retries + 1) = 90 s); HAProxy would cut it: set lb_idle_timeout to at least 90")


def test_the_new_groups_knobs_are_typed_and_a_misspelt_one_is_named():
    data = defaults()
    found = settings_problems([
        ("gw1", data, GATEWAY),
        ("r1", {**data, "redis_bind_address": "0.0.0.0", "redis_user": "default", "redis_prot": 1}, REDIS),
        ("lb1", {**data, "lb_port": 70000, "lb_check_interval": 0, "lb_bind_host": "lb.example"}, LB)])
    assert found == [
        "r1: redis_prot: not a knob of this deploy (it would be ignored); did you mean `redis_port`? Rename it",
        "r1: redis_bind_address: '0.0.0.0' would listen on every address; name one private address of the Redis "
        "host, or None for the address its inventory name resolves to",
        "r1: redis_user: 'default' is not a usable ACL user; use letters, digits, '.', '_' or '-' (not `default`, "
        "which the deploy switches off)",
        "lb1: lb_bind_host: 'lb.example' is not an IP address; use 0.0.0.0 (every address), 127.0.0.1, or one of "
        "the gateway host's own addresses",
        "lb1: lb_port: 70000 is out of range; set an integer from 1 to 65535",
        "lb1: lb_check_interval: 0 is out of range; set an integer from 1 to 60",
    ]


def test_the_ticket_says_the_roll_order_of_the_gateways_that_restart_and_what_serves_meanwhile():
    order = ["gw1", "gw2", "gw3"]
    records = [{"kind": "restart", "host": f"@ssh/{m}", "roll_member": m, "roll_order": order, "balancers": 2}
               for m in ("gw3", "gw1")] + [{"kind": "file", "host": "@ssh/gw2"}]
    assert roll_of(records) == ("Rolling restart: gw1 -> gw3, one gateway at a time, each drained in 2 balancer(s) "
                                "first; while one restarts 2 of 3 gateways serve")
    assert roll_of([{"kind": "restart", "host": "@ssh/gw1", "summary": "one restart"}]) is None
