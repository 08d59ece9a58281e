"""Metrics and alerts in the lab (issue 27), on the whole service (two gateways, hx-redis, hx-lb, hx-db):
hx-monitor runs Prometheus from Debian's packages and scrapes the gateways' metrics processes, every
host's node exporter, HAProxy's exporter and the Redis and PostgreSQL exporters. Every target is up,
a request moves the request counter by exactly one for its alias and key, the exporters answer the
monitoring host only, a stopped backend fires its alert within the `for:` window, and removing the
`monitor` group removes the exporters. The service's extra hosts are removed at the end, so the tests
after this module find their lab (their next deploy reverts hx-api)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from conftest import gateway_url, preview_ticket_deploy, pyinfra, random_key, run_verify

from hx_gateway.load import chat_body
from lab.lab import address_of, docker, exec_in

pytestmark = pytest.mark.lab

MONITOR_ENV = {"HX_LAB_MONITOR": "1", "HX_LAB_FLEET": "1", "HX_LAB_DB": "1"}
SERVICE_ENV = {"HX_LAB_FLEET": "1", "HX_LAB_DB": "1"}
EXTRA_HOSTS = ("hx-monitor", "hx-api2", "hx-redis", "hx-lb", "hx-db")
QUERY = ("import json, sys, urllib.parse, urllib.request; url = sys.argv[1] + '/api/v1/' + sys.argv[2]; "
         "print(urllib.request.urlopen(url, timeout=5).read().decode())")


class Monitoring:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.url = f"http://{address_of('hx-monitor')}:9090"

    def deploy(self, *args: str, monitor: bool = True):
        return pyinfra(*args, secrets_env=self.secrets, extra_env=MONITOR_ENV if monitor else SERVICE_ENV)

    def api(self, path: str) -> dict:
        """Prometheus's HTTP API, asked from the monitoring host (nobody else reaches the exporters)."""
        return json.loads(exec_in("hx-monitor", "python3", "-c", QUERY, self.url, path))["data"]

    def value(self, promql: str) -> float:
        from urllib.parse import quote

        result = self.api(f"query?query={quote(promql)}")["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def settled(self, promql: str, wait: float = 20) -> float:
        """The query's value once two scrapes (2 s apart in the lab) agree."""
        deadline, last = time.monotonic() + wait, None
        while time.monotonic() < deadline:
            now = self.value(promql)
            if now == last:
                return now
            last = now
            time.sleep(2.5)
        return last or 0.0


@pytest.fixture(scope="module")
def monitoring(lab, lab_secrets, tmp_path_factory):
    secrets = {**lab_secrets, "HX_REDIS_PASSWORD": random_key(), "HX_DB_PASSWORD": random_key()}
    the_lab = type(lab)(fleet=True, gateways=2, db="1", monitor=True)
    the_lab.up()
    docker("exec", "hx-monitor", "sh", "-c", "apt-get purge -y -q prometheus >/dev/null 2>&1; "
           "rm -rf /etc/prometheus /var/lib/prometheus", check=False)  # a fresh host, whatever an earlier run left
    the_monitoring = Monitoring(secrets)
    the_monitoring.preview, the_monitoring.ticket = preview_ticket_deploy(
        the_monitoring.deploy, secrets, tmp_path_factory.mktemp("monitor-ticket") / "change.md", extra_env=MONITOR_ENV)
    try:
        yield the_monitoring
    finally:
        docker("rm", "-f", "-v", *EXTRA_HOSTS, check=False)


def test_it_converges_idempotently_and_verify_sees_every_target_up(monitoring, tmp_path):
    assert "Install Prometheus" in monitoring.preview.output and "prometheus_targets_up" in monitoring.ticket
    again = monitoring.deploy()
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-4000:]
    result = run_verify(monitoring.secrets, tmp_path / "evidence", extra_env=MONITOR_ENV)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "PASS  @docker/hx-monitor     prometheus_targets_up" in result.stdout
    active = monitoring.api("targets")["activeTargets"]
    targets = {(t["labels"]["job"], t["labels"]["host"]): t["health"] for t in active}
    hosts = ("hx-api", "hx-api2", "hx-redis", "hx-lb", "hx-db", "hx-monitor")
    assert targets == {("prometheus", "hx-monitor"): "up", **{("node", h): "up" for h in hosts},
                       ("litellm", "hx-api"): "up", ("litellm", "hx-api2"): "up", ("haproxy", "hx-lb"): "up",
                       ("redis", "hx-redis"): "up", ("postgres", "hx-db"): "up"}
    # The exporters reach what they watch: Redis as its own ACL user, PostgreSQL as its pg_monitor role.
    assert monitoring.value("redis_up") == 1 and monitoring.value("pg_up") == 1
    assert monitoring.value('sum(haproxy_server_status{proxy="litellm_gateways", state="UP"})') == 2
    rules = {r["name"]: r["health"] for g in monitoring.api("rules")["groups"] for r in g["rules"]}
    assert set(rules) >= {"HxGatewayDown", "HxBackendDown", "HxGateway5xxRate", "HxClientKeyRateLimited",
                          "HxGatewayP99Latency"} and set(rules.values()) == {"ok"}


def test_a_request_moves_the_request_counter_by_one_for_its_alias_and_key(monitoring):
    key = monitoring.secrets["HX_CLIENT_KEY_OPEN_WEBUI"]
    counted = ('sum(litellm_proxy_total_requests_metric_total{requested_model="llama3-8b", '
               'api_key_alias="open-webui", status_code="200"})')
    refused = 'sum(hx_gateway_auth_refusals_total{key="(unknown)", status="401"})'
    before, refused_before = monitoring.settled(counted), monitoring.settled(refused)
    answer = httpx.post(f"{gateway_url()}/v1/chat/completions", json=chat_body("llama3-8b"), timeout=60,
                        headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    wrong = httpx.post(f"{gateway_url()}/v1/chat/completions", json=chat_body("llama3-8b"), timeout=60,
                       headers={"Authorization": "Bearer sk-not-a-key-of-anyone-here-0000000000"})
    assert wrong.status_code == 401
    time.sleep(3)
    assert monitoring.settled(counted) - before == 1
    assert monitoring.settled(refused) - refused_before == 1


def test_the_exporters_answer_the_monitoring_host_only(monitoring):
    closed = [("hx-api", 9464), ("hx-api", 9100), ("hx-redis", 9121), ("hx-db", 9187), ("hx-db", 9100)]
    for name, port in closed:  # from this control node, nothing (systemd's IP allow-list drops it)
        with pytest.raises(OSError):
            socket.create_connection((address_of(name), port), timeout=3).recv(1)
    haproxy = httpx.get(f"http://{address_of('hx-lb')}:8405/metrics", timeout=10)  # HAProxy itself refuses it
    assert haproxy.status_code == 403 and "haproxy_" not in haproxy.text
    key = monitoring.secrets["HX_CLIENT_KEY_OPEN_WEBUI"]
    leaked = httpx.get(f"{gateway_url()}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert leaked.status_code in (401, 403) and "hx_gateway_auth_refusals" not in leaked.text


def test_a_stopped_backend_fires_its_alert_within_the_for_window(monitoring):
    key = monitoring.secrets["HX_CLIENT_KEY_OPEN_WEBUI"]
    # The idle lab gateway sends every request to the first backend (least-busy routing): stop that one.
    exec_in("hx-llm01", "systemctl", "stop", "ollama")
    try:
        started, fired = time.monotonic(), []
        while time.monotonic() - started < 90 and not fired:
            for _ in range(4):  # traffic, so the gateway meets the dead backend
                httpx.post(f"{gateway_url()}/v1/chat/completions", json=chat_body("phi3-3.8b"), timeout=60,
                           headers={"Authorization": f"Bearer {key}"})
            fired = [a for a in monitoring.api("alerts")["alerts"] if a["labels"]["alertname"] == "HxBackendDown"
                     and a["state"] == "firing" and "hx-llm01" in a["labels"].get("api_base", "")]
            time.sleep(1)
        # The lab's window: alert_for_seconds = 10, scrapes and evaluations every 2 s.
        assert fired, monitoring.api("alerts")
        assert time.monotonic() - started < 60
    finally:
        exec_in("hx-llm01", "systemctl", "start", "ollama")


def test_removing_the_monitor_group_removes_the_exporters(monitoring):
    run = monitoring.deploy(monitor=False)
    assert run.returncode == 0, run.output[-4000:]
    state = exec_in("hx-api", "sh", "-c", "systemctl is-active prometheus-node-exporter litellm-metrics litellm; "
                    "ls /etc/systemd/system; grep -c PROMETHEUS /etc/systemd/system/litellm.service", check=False)
    assert state.split()[:3] == ["inactive", "inactive", "active"], state
    assert "litellm-metrics.service" not in state and state.strip().endswith("0")
    for name, unit in (("hx-redis", "prometheus-redis-exporter"), ("hx-db", "prometheus-postgres-exporter")):
        assert exec_in(name, "systemctl", "is-active", unit, check=False).strip() == "inactive"
    assert not exec_in("hx-redis", "ls", "/etc/default/", check=False).count("prometheus-redis-exporter")
    assert "metrics_in" not in exec_in("hx-lb", "cat", "/etc/haproxy/haproxy.cfg")
    again = monitoring.deploy(monitor=False)
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-4000:]
