"""The `monitor` group (issue 27) without a host: its settings refused with the knob named, the scrape
config rendered from the inventory and accepted by `promtool check config`, and every alert rule
proven by `promtool test rules` (tests/monitor_rules/rules_test.yml), at the shipped thresholds."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
from conftest import REPO, defaults, random_key, settings_problems

import tasks.redis
from hx_gateway.model.plan import fleet_plans
from hx_gateway.model.secrets import SecretText
from hx_gateway.proof.monitor import expected_targets, targets_check
from hx_gateway.pyinfra_ext import render
from lab.promtool import promtool
from tasks.component import answers
from tasks.db import monitor_role_sql
from tasks.lb import render_config as render_lb_config
from tasks.monitor import render_config, render_rules, rules_text, targets
from tasks.monitor.node import POSTGRES, REDIS, defaults_text, exporter_password, exporters_of, metrics_unit

GATEWAY, MONITOR = {"litellm"}, {"monitor"}
RULE_TESTS = Path(__file__).parent / "monitor_rules" / "rules_test.yml"


@pytest.fixture(autouse=True)
def operator_secrets(monkeypatch):
    for name, value in {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
                        "HX_REDIS_PASSWORD": random_key(), "HX_DB_PASSWORD": random_key(),
                        "HX_SECRETS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)


def monitored(**knobs) -> dict:
    data = defaults()
    for name in ("db", "monitor"):
        exec((REPO / "group_data" / f"{name}.py").read_text(), {}, data)
    return {**data, **knobs}


def service(data: dict | None = None):
    data = data or monitored()
    return fleet_plans([("gw1", {**data, "gateway_url": "http://10.0.0.1:4000"}, GATEWAY),
                        ("gw2", {**data, "gateway_url": "http://10.0.0.2:4000"}, GATEWAY),
                        ("r1", data, {"redis"}), ("d1", data, {"db"}), ("lb1", data, {"lb"}),
                        ("@docker/mon", data, MONITOR)])


def test_verify_names_each_target_not_scraped_or_down_and_passes_when_all_are_up():
    plan = service()["@docker/mon"].monitor
    wanted = expected_targets(plan.fleet, plan.settings)
    assert ("litellm", "gw1") in wanted and ("prometheus", "mon") in wanted and ("node", "lb1") in wanted
    up = [{"job": job, "host": name, "health": "up", "last_error": ""} for job, name in sorted(wanted)]
    assert targets_check(plan.fleet, plan.settings, lambda: up, wait=0).ok
    down = [t for t in up if t["host"] != "r1"] + [{"job": "redis", "host": "r1", "health": "down",
                                                     "last_error": "connection refused"}]
    check = targets_check(plan.fleet, plan.settings, lambda: down, wait=0)
    assert not check.ok
    assert "node r1: not scraped" in check.seen and "redis r1: down (connection refused)" in check.seen


def test_an_ipv6_gateway_or_monitor_address_is_bracketed_in_every_url():
    plans = fleet_plans([("gw1", {**monitored(), "gateway_url": "http://[fd00::1]:4000"}, GATEWAY),
                         ("mon", monitored(monitor_bind_address="fd00::9"), MONITOR)])
    plan = plans["mon"].monitor
    assert [t.address for t in targets(plan.fleet, plan.settings)["litellm"]] == ["[fd00::1]:9464"]
    assert plan.settings.url == "http://[fd00::9]:9090"


def test_every_managed_host_exports_to_the_monitor_and_only_then():
    plans = service()
    assert all(plans[name].node for name in ("gw1", "gw2", "r1", "d1", "lb1", "@docker/mon"))
    assert plans["@docker/mon"].monitor and not plans["gw1"].monitor
    plain = fleet_plans([("gw1", monitored(), GATEWAY)])
    assert plain["gw1"].node is None


def test_the_scrape_config_names_every_host_and_gateway_from_the_inventory(tmp_path):
    plan = service()["@docker/mon"].monitor
    jobs = targets(plan.fleet, plan.settings)
    assert [t.address for t in jobs["node"]] == ["gw1:9100", "gw2:9100", "r1:9100", "d1:9100", "lb1:9100", "mon:9100"]
    assert [t.address for t in jobs["litellm"]] == ["10.0.0.1:9464", "10.0.0.2:9464"]
    (tmp_path / "rules.yml").write_text(render_rules(plan))
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config(plan, "10.0.0.9", rules_path=str(tmp_path / "rules.yml")))
    scraped = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
               for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert scraped["litellm"] == ["10.0.0.1:9464", "10.0.0.2:9464"] and scraped["prometheus"] == ["10.0.0.9:9090"]
    assert (scraped["haproxy"], scraped["redis"], scraped["postgres"]) == (["lb1:8405"], ["r1:9121"], ["d1:9187"])
    result = subprocess.run([str(promtool()), "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_new_gateway_is_scraped_after_the_next_deploy_with_no_hand_edit():
    data = monitored()
    before = fleet_plans([("gw1", data, GATEWAY), ("mon", data, MONITOR)])["mon"].monitor
    after = fleet_plans([("gw1", data, GATEWAY), ("gw9", data, GATEWAY), ("mon", data, MONITOR)])["mon"].monitor
    assert "gw9:9464" not in render_config(before, "10.0.0.9") and "gw9:9464" in render_config(after, "10.0.0.9")


def test_every_shipped_alert_rule_passes_its_promtool_unit_test(tmp_path):
    rules = tmp_path / "rules.yml"
    settings = service()["@docker/mon"].monitor.settings  # the shipped thresholds, every part
    rules.write_text(rules_text(settings, certificates=True, redis=True, db=True))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    check = subprocess.run([str(promtool()), "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run([str(promtool()), "test", "rules", RULE_TESTS.name], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    tested = {a["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
              for a in t.get("alert_rule_test", [])}
    assert shipped == tested  # no rule without its test


def test_rules_for_parts_the_service_lacks_are_not_shipped():
    data = monitored()
    plain = render_rules(fleet_plans([("gw1", data, GATEWAY), ("mon", data, MONITOR)])["mon"].monitor)
    assert "HxRedisDown" not in plain and "HxPostgresDown" not in plain and "HxCertificateExpiresSoon" not in plain
    full = render_rules(service()["@docker/mon"].monitor)
    assert "HxRedisDown" in full and "HxPostgresDown" in full


def test_thresholds_are_knobs():
    rules = render_rules(service(monitored(alert_p99_seconds=7.5, alert_for_seconds=42))["@docker/mon"].monitor)
    assert "> 7.5" in rules and "for: 42s" in rules


def test_the_gateway_exports_metrics_only_with_a_monitor_host():
    data = monitored()
    settings = fleet_plans([("gw1", data, GATEWAY)])["gw1"].gateway.settings
    config = yaml.safe_load(render.render_config(settings, "1.106.2", metrics=True))["litellm_settings"]
    assert "prometheus" in config["callbacks"] and "hashed_api_key" in config["prometheus_exclude_labels"]
    plain = yaml.safe_load(render.render_config(settings, "1.106.2"))["litellm_settings"]
    assert "prometheus" not in plain["callbacks"] and "prometheus_exclude_labels" not in plain
    unit = render.render_unit(settings, 2, [], metrics=True)
    assert "Environment=PROMETHEUS_MULTIPROC_DIR=/run/litellm/prometheus" in unit
    assert "RuntimeDirectory=litellm litellm/prometheus" in unit
    assert "PROMETHEUS" not in render.render_unit(settings, 2, [])
    assert metrics_unit(settings) == "litellm-metrics.service"


@pytest.mark.parametrize("knobs, expected", [
    ({"monitor_port": 0}, "monitor_port: 0 is out of range; set an integer from 1 to 65535"),
    ({"monitor_bind_address": "0.0.0.0"}, "monitor_bind_address: '0.0.0.0' would listen on every address"),
    ({"monitor_bind_address": "mon.example"}, "monitor_bind_address: 'mon.example' is not an IP address"),
    ({"alert_5xx_ratio": 5}, "alert_5xx_ratio: 5 is out of range; set a number from 0.0001 to 1"),
    ({"alert_p99_seconds": "60"}, "alert_p99_seconds: '60' is out of range"),
    ({"monitor_private_users": "no"}, "monitor_private_users: 'no' must be True or False"),
    ({"gateway_metrics_port": 9100}, "gateway_metrics_port and node_exporter_port: all 9100; one host may run"),
    ({"haproxy_exporter_port": 4000}, "lb1: haproxy_exporter_port 4000 is the balancer's lb_port too"),
    ({"gateway_metrics_port": 4000}, "gw1: gateway_metrics_port 4000 is the gateway's bind_port too"),
    ({"monitor_retension_days": 3}, "monitor_retension_days: not a knob of this deploy (it would be ignored); "
                                    "did you mean `monitor_retention_days`?"),
])
def test_bad_monitor_settings_are_refused_naming_the_knob(knobs, expected):
    data = monitored(**knobs)
    found = settings_problems([("gw1", data, GATEWAY), ("lb1", data, {"lb"}), ("mon", data, MONITOR)])
    assert any(expected in p for p in found), found


def test_two_monitor_hosts_or_one_without_gateways_are_refused():
    data = monitored()
    two = settings_problems([("gw1", data, GATEWAY), ("m1", data, MONITOR), ("m2", data, MONITOR)])
    assert any("monitor: 2 hosts (m1, m2)" in p for p in two)
    assert any("monitor: no gateways to watch" in p for p in settings_problems([("m1", data, MONITOR)]))


def test_the_exporters_each_host_gets_follow_its_groups():
    plans = service()
    names = {name: [e.package for e in exporters_of(plans[name].node)] for name in ("gw1", "r1", "d1", "lb1")}
    assert names == {"gw1": ["prometheus-node-exporter"], "lb1": ["prometheus-node-exporter"],
                     "r1": ["prometheus-node-exporter", "prometheus-redis-exporter"],
                     "d1": ["prometheus-node-exporter", "prometheus-postgres-exporter"]}


def test_the_redis_exporter_has_a_password_of_its_own_and_only_statistics():
    plans = service()
    redis_password = plans["r1"].redis.password
    exporter = exporter_password(redis_password).reveal()
    assert exporter != redis_password.reveal() and len(exporter) == 64
    settings = defaults_text(REDIS, plans["r1"].node)
    assert isinstance(settings, SecretText) and f"REDIS_PASSWORD={exporter}" in settings.reveal()
    assert REDIS.defaults.mode == "600" and REDIS.defaults.secret
    assert "hidden" in repr(settings)
    acl = tasks.redis.render("users.acl.j2", r=plans["r1"].redis.settings, password_sha256="a" * 64,
                             exporter_user=tasks.redis.EXPORTER_USER, exporter_sha256="b" * 64)
    line = next(line for line in acl.splitlines() if line.startswith(f"user {tasks.redis.EXPORTER_USER} "))
    assert "resetkeys" in line and "-@all" in line and "~" not in line and "+info" in line
    assert redis_password.reveal() not in acl


def test_the_postgres_exporter_logs_in_by_peer_as_a_pg_monitor_role():
    plans = service()
    settings = defaults_text(POSTGRES, plans["d1"].node)
    assert "user=prometheus" in settings and "host=/run/postgresql" in settings and "password=" not in settings
    sql = monitor_role_sql()
    assert "GRANT pg_monitor TO prometheus" in sql and "NOSUPERUSER" in sql and "PASSWORD NULL" in sql


def test_haproxy_exports_to_the_monitoring_host_and_loopback_only():
    plan = service()["lb1"].lb
    config = render_lb_config(plan.settings, plan.fleet, ["10.0.0.9"])
    frontend = config.split("frontend metrics_in", 1)[1]
    assert "bind :8405" in frontend and "deny unless { src 127.0.0.1 ::1 10.0.0.9 }" in frontend
    plain = fleet_plans([("gw1", monitored(), GATEWAY), ("lb1", monitored(), {"lb"})])["lb1"].lb
    assert "metrics_in" not in render_lb_config(plain.settings, plain.fleet)


def test_the_certificates_file_is_what_the_node_exporters_textfile_collector_reads():
    import datetime as dt

    from hx_gateway.model.tls import CertificateSummary
    from tasks.monitor.node import certificates_text

    expires = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
    text = certificates_text((CertificateSummary("0a1b", ("hx-api",), expires),))
    assert f'hx_tls_certificate_expiry_timestamp_seconds{{serial="0a1b"}} {int(expires.timestamp())}' in text
    check = subprocess.run([str(promtool()), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_answers_check_passes_once_the_url_answers_and_else_names_what_did_not():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        ready = subprocess.run(["sh", "-c", answers(url, "x", "x.service", tries=3)], capture_output=True)
        assert ready.returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    closed = subprocess.run(["sh", "-c", answers(url, "The node's exporter", "n.service", tries=2, pause=0.05)],
                            capture_output=True, text=True)
    assert closed.returncode == 1 and f"The node's exporter does not answer on {url}" in closed.stderr
