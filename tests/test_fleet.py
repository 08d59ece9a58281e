"""The whole service in the lab (issue 23): hx-redis and hx-lb in front of two gateways.

Limits are shared through Redis, a restarting change rolls one gateway at a time while clients
load the balancer, Redis going away costs neither auth nor a 500, a stopped gateway leaves rotation.
The fleet's extra containers are removed at the end, so the single-gateway tests see their lab."""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from conftest import main_pid, pyinfra, random_key, run_verify
from cryptography import x509

from hx_gateway.load import run_load
from hx_gateway.proof.checks import VALIDATION_PLAN
from hx_gateway.proof.fleet import FLEET_VALIDATION_PLAN
from lab.lab import address_of, configure_double, docker, double_stats, exec_in
from lab.tls import ensure_lab_tls, issue, write_private

pytestmark = pytest.mark.lab

FLEET_ENV = {"HX_LAB_FLEET": "1"}
GATEWAYS = ("hx-api", "hx-api2")
FLEET_DATA = """
# llama3-8b's answers are cached in Redis (test_an_alias_with_a_cache_ttl...); the others never are.
model_aliases = [
    {"name": "phi3-3.8b", "ollama_model": "phi3:3.8b-mini-128k-instruct-q8_0", "kind": "chat"},
    {"name": "llama3-8b", "ollama_model": "llama3:8b-instruct-q8_0", "kind": "chat", "cache_ttl": 300},
    {"name": "emb-premium", "ollama_model": "mxbai-embed-large", "kind": "embedding"},
]
client_keys = [
    {"name": "open-webui", "models": [], "rpm": 60, "max_concurrent": 10, "expires": None},
    {"name": "fleet-rpm", "models": [], "rpm": 30, "max_concurrent": 50, "expires": None},
    {"name": "fleet-conc", "models": [], "rpm": 1000, "max_concurrent": 3, "expires": None},
]
"""
CHAT = {"model": "phi3-3.8b", "messages": [{"role": "user", "content": "ping"}]}


@dataclass
class Fleet:
    secrets: dict[str, str]
    group_data: Path

    @property
    def lb_url(self) -> str:
        return f"http://{address_of('hx-lb')}:4000"

    def gateway_urls(self) -> list[str]:
        return [f"http://{address_of(g)}:4000" for g in GATEWAYS]

    def auth(self, key: str = "HX_MASTER_KEY") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[key]}"}

    def verify(self, evidence_dir: Path):
        return run_verify(self.secrets, evidence_dir, extra_env=FLEET_ENV, group_data=self.group_data)

    def deploy(self, *args: str, group_data: Path | None = None):
        return pyinfra(*args, secrets_env=self.secrets, group_data=group_data or self.group_data, extra_env=FLEET_ENV)


@pytest.fixture(scope="module")
def fleet(lab, lab_secrets, tmp_path_factory):
    secrets = {**lab_secrets, "HX_REDIS_PASSWORD": random_key(), "HX_CLIENT_KEY_FLEET_RPM": random_key(),
               "HX_CLIENT_KEY_FLEET_CONC": random_key()}
    data = tmp_path_factory.mktemp("fleet-data")
    (data / "all.py").write_text(FLEET_DATA)
    fleet_lab = replace(lab, fleet=True, gateways=2)
    fleet_lab.up()
    the_fleet = Fleet(secrets, data)
    run = the_fleet.deploy()
    assert run.returncode == 0, run.output[-6000:]
    try:
        yield the_fleet
    finally:  # the single-gateway tests after this module find their lab (the next deploy reverts hx-api)
        docker("rm", "-f", "-v", "hx-api2", "hx-redis", "hx-lb", check=False)


def test_the_fleet_converges_idempotently_and_verify_proves_every_part(fleet, tmp_path):
    again = fleet.deploy("--dry")
    assert again.returncode == 0 and again.verdict().startswith("Plan: no changes"), again.output[-4000:]
    result = fleet.verify(tmp_path)
    assert result.returncode == 0, result.stdout[-5000:]
    (bundle,) = tmp_path.iterdir()
    checks = json.loads((bundle / "checks.json").read_text())["checks"]
    assert {c["check"].split("[")[0] for c in checks} == set(VALIDATION_PLAN) | set(FLEET_VALIDATION_PLAN)
    assert {c["host"] for c in checks if c["check"].startswith("redis_")} == {f"@docker/{g}" for g in GATEWAYS}
    spread = next(c for c in checks if c["check"] == "burst_reaches_every_gateway")["figures"]
    assert all(n > 0 for n in spread["requests_per_gateway"].values()), spread
    for secret in fleet.secrets.values():
        assert secret not in result.stdout and secret not in (bundle / "checks.json").read_text()


def test_redis_is_hardened_and_refuses_everyone_but_the_gateways(fleet):
    conf = exec_in("hx-redis", "cat", "/etc/redis/redis.conf")
    assert "maxmemory-policy noeviction" in conf and "0.0.0.0" not in conf
    assert exec_in("hx-redis", "stat", "-c", "%U:%G %a", "/etc/redis/users.acl") == "root:redis 640"
    assert fleet.secrets["HX_REDIS_PASSWORD"] not in exec_in("hx-redis", "cat", "/etc/redis/users.acl")
    assert "NOAUTH" in exec_in("hx-redis", "redis-cli", "ping", check=False)
    exposure = exec_in("hx-redis", "sh", "-c", "systemd-analyze security redis-server.service --no-pager | tail -1")
    score = float(exposure.split("exposure level for redis-server.service:")[1].split()[0])
    assert score <= 2.5, exposure  # "OK" or better; the Debian unit alone scores higher (README)


def _send(url: str, headers: dict, body: dict = CHAT) -> httpx.Response | Exception:
    try:
        return httpx.post(f"{url}/v1/chat/completions", headers=headers, json=body, timeout=60)
    except httpx.HTTPError as exc:
        return exc


def _chats_reaching_backends() -> int:
    return sum(double_stats(b)["counts"].get("POST /api/chat", 0) for b in ("hx-llm01", "hx-llm02"))


def test_an_alias_with_a_cache_ttl_is_answered_from_redis_by_every_gateway_and_no_other_is(fleet):
    """Breakage guarded: caching that is per gateway (not shared), that a client can switch on for an
    alias the operator did not opt in, or that a client cannot bypass (issue 23)."""
    urls = [*fleet.gateway_urls(), fleet.lb_url]
    cached = {"model": "llama3-8b", "messages": [{"role": "user", "content": f"cache me {random_key()}"}]}
    before = _chats_reaching_backends()
    first, *repeats = [httpx.post(f"{url}/v1/chat/completions", headers=fleet.auth(), json=cached, timeout=60)
                       for url in urls]
    assert _chats_reaching_backends() == before + 1  # one backend call for three answers
    assert first.status_code == 200 and not first.headers.get("x-litellm-cache-key")
    for repeat in repeats:
        assert repeat.status_code == 200 and repeat.headers.get("x-litellm-cache-key"), repeat.headers
        assert repeat.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    bypass = httpx.post(f"{urls[1]}/v1/chat/completions", headers=fleet.auth(),
                        json={**cached, "cache": {"no-cache": True}}, timeout=60)
    assert bypass.status_code == 200 and _chats_reaching_backends() == before + 2
    not_opted_in = {"model": "phi3-3.8b", "messages": [{"role": "user", "content": f"not me {random_key()}"}],
                    "cache": {"use-cache": True, "ttl": 3600}}
    for url in fleet.gateway_urls():
        assert httpx.post(f"{url}/v1/chat/completions", headers=fleet.auth(), json=not_opted_in,
                          timeout=60).status_code == 200
    assert _chats_reaching_backends() == before + 4
    assert exec_in("hx-api", "grep", "-c", "HX_CACHE_TTLS=llama3-8b=300", "/etc/systemd/system/litellm.service") == "1"


def test_a_keys_rpm_holds_across_both_gateways(fleet):
    urls = itertools.cycle(fleet.gateway_urls())
    answers = [_send(next(urls), fleet.auth("HX_CLIENT_KEY_FLEET_RPM")) for _ in range(40)]
    statuses = Counter(a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers)
    assert statuses == {200: 30, 429: 10}, statuses
    refused = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)


def test_max_concurrent_holds_across_both_gateways(fleet):
    for backend in ("hx-llm01", "hx-llm02"):
        configure_double(backend, {"delay_ms": 3000})
    try:
        urls = fleet.gateway_urls() * 3
        answers: list = []
        threads = [threading.Thread(target=lambda u=url: answers.append(_send(u, fleet.auth(
            "HX_CLIENT_KEY_FLEET_CONC")))) for url in urls]
        for thread in threads:
            thread.start()
            time.sleep(0.05)
        for thread in threads:
            thread.join()
    finally:
        for backend in ("hx-llm01", "hx-llm02"):
            configure_double(backend, {"delay_ms": 50})
    statuses = Counter(a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers)
    assert statuses == {200: 3, 429: 3}, statuses


class Load:
    """`clients` threads sending chat completions through the balancer until stopped; every outcome kept."""

    def __init__(self, url: str, headers: dict, clients: int = 8) -> None:
        self.url, self.headers, self.outcomes = url, headers, Counter()
        self.unauthenticated = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            answer = _send(self.url, self.headers)
            self.outcomes[answer.status_code if isinstance(answer, httpx.Response) else type(answer).__name__] += 1
            if index == 0:  # one client also tries without a key
                bare = _send(self.url, {})
                self.unauthenticated[bare.status_code if isinstance(bare, httpx.Response) else "error"] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_redis_going_away_costs_no_auth_and_no_500_and_limits_are_shared_again_after(fleet, tmp_path):
    pids = [main_pid(g) for g in GATEWAYS]
    with Load(fleet.lb_url, fleet.auth("HX_CLIENT_KEY_OPEN_WEBUI"), clients=4) as load:
        time.sleep(2)
        exec_in("hx-redis", "systemctl", "stop", "redis-server")
        time.sleep(6)
        verify = fleet.verify(tmp_path / "down")
        exec_in("hx-redis", "systemctl", "start", "redis-server")
        time.sleep(7)  # each worker tries Redis again after 5 s
    assert set(load.outcomes) <= {200, 429} and load.outcomes[200] > 0, load.outcomes
    assert set(load.unauthenticated) == {401}, load.unauthenticated
    assert verify.returncode == 1 and "FAIL" in verify.stdout and "redis_refuses_unauthenticated" in verify.stdout
    journal = exec_in("hx-api", "journalctl", "-u", "litellm", "--since", "-2min", "--no-pager")
    assert "Redis unreachable" in journal and "limits are shared again" in journal
    assert [main_pid(g) for g in GATEWAYS] == pids  # nothing restarted
    after = fleet.verify(tmp_path / "back")
    assert after.returncode == 0, after.stdout[-3000:]


def test_a_stopped_gateway_leaves_rotation_and_clients_see_no_error(fleet):
    exec_in("hx-api2", "systemctl", "stop", "litellm")
    try:
        time.sleep(6)  # two failed checks, 2 s apart
        answers = [_send(fleet.lb_url, fleet.auth()) for _ in range(20)]
        assert all(isinstance(a, httpx.Response) and a.status_code == 200 for a in answers), answers
    finally:
        exec_in("hx-api2", "systemctl", "start", "litellm")
    run = fleet.deploy()  # back UP in the balancer before the next test (the deploy waits for it)
    assert run.returncode == 0, run.output[-3000:]


def test_a_balancer_config_an_earlier_run_wrote_but_never_loaded_is_loaded_by_the_next(fleet):
    """A run that wrote haproxy.cfg and stopped before the reload leaves the file as declared but
    newer than HAProxy's newest worker (here: the same text, written again): the next run reloads.
    Before the roll tests: their changed knobs would make this test's deploys roll the gateways too."""
    worker = exec_in("hx-lb", "pgrep", "-n", "haproxy")
    exec_in("hx-lb", "sh", "-c", "cp -p /etc/haproxy/haproxy.cfg /tmp/c && cat /tmp/c > /etc/haproxy/haproxy.cfg")
    dry = fleet.deploy("--dry")
    assert dry.returncode == 0, dry.output[-3000:]
    assert ("Load balancer | Reload haproxy.service (/etc/haproxy/haproxy.cfg written by an earlier run that "
            "stopped before the reload)") in dry.changed_ops(), dry.changed_ops()
    run = fleet.deploy()
    assert run.returncode == 0, run.output[-3000:]
    assert exec_in("hx-lb", "pgrep", "-n", "haproxy") != worker  # a new worker read the file
    again = fleet.deploy()
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_a_restarting_change_rolls_one_gateway_at_a_time_under_load(fleet, tmp_path):
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "all.py").write_text(FLEET_DATA)
    (changed / "litellm.py").write_text("cooldown_time = 31\n")
    pids = [main_pid(g) for g in GATEWAYS]
    with Load(fleet.lb_url, fleet.auth()) as load:
        time.sleep(2)
        run = fleet.deploy(group_data=changed)
        time.sleep(2)
    assert run.returncode == 0, run.output[-6000:]
    assert "Rolling restart" in run.output
    # In the announced order (hx-api -> hx-api2), the second started after the first was back:
    # the containers share one kernel, so their monotonic clocks compare.
    started = [int(exec_in(g, "systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", "litellm"))
               for g in GATEWAYS]
    assert started == sorted(started), started
    assert set(load.outcomes) == {200} and load.outcomes[200] > 50, load.outcomes
    assert all(new != old for new, old in zip([main_pid(g) for g in GATEWAYS], pids, strict=True))
    for gateway in GATEWAYS:
        assert "cooldown_time: 31" in exec_in(gateway, "cat", "/etc/litellm/config.yaml")


CANARY_DROP_IN = "/run/systemd/system/hx-litellm-canary-.service.d"  # every canary unit on that host


def test_a_gateway_that_fails_stops_the_roll_and_the_others_keep_serving(fleet, tmp_path):
    """The first gateway of the announced order cannot start its new state (a drop-in fails every
    canary there): the run fails naming it, the next is never restarted, both keep serving the
    previous state with its files, and clients through the balancer see no error."""
    changed = tmp_path / "changed"
    changed.mkdir()
    (changed / "all.py").write_text(FLEET_DATA)
    (changed / "litellm.py").write_text("cooldown_time = 37\n")
    dry = fleet.deploy("--dry", group_data=changed)
    assert dry.returncode == 0, dry.output[-3000:]
    assert ("Rolling restart: hx-api -> hx-api2, one gateway at a time, each drained in 1 balancer(s) first; "
            "while one restarts 1 of 2 gateways serve") in dry.output, dry.output[-3000:]
    configs = {g: exec_in(g, "sha256sum", "/etc/litellm/config.yaml") for g in GATEWAYS}
    pids = [main_pid(g) for g in GATEWAYS]
    exec_in("hx-api", "sh", "-c", f"mkdir -p {CANARY_DROP_IN} && printf '[Service]\\nExecStartPre=/bin/false\\n' "
                                  f"> {CANARY_DROP_IN}/fail.conf && systemctl daemon-reload")
    try:
        with Load(fleet.lb_url, fleet.auth(), clients=4) as load:
            run = fleet.deploy(group_data=changed)
    finally:
        exec_in("hx-api", "sh", "-c", f"rm -rf {CANARY_DROP_IN} && systemctl daemon-reload")
    assert run.returncode != 0
    assert "@docker/hx-api: the new state failed its canary start" in run.output, run.output[-4000:]
    assert "@docker/hx-api2: the new state failed" not in run.output
    assert "@docker/hx-api2: not restarted: the rolling restart stopped at @docker/hx-api" in run.output
    assert set(load.outcomes) == {200}, load.outcomes
    assert [main_pid(g) for g in GATEWAYS] == pids
    assert {g: exec_in(g, "sha256sum", "/etc/litellm/config.yaml") for g in GATEWAYS} == configs


def test_https_at_the_balancer_verified_rotated_under_load_and_switched_off(fleet, tmp_path):
    """With an `lb` group HAProxy serves HTTPS (the gateways behind it keep plain HTTP and are not
    restarted for it); verify proves it; a new certificate reloads HAProxy while 8 clients run and
    none fails; TLS switched off removes the certificate, the key and the CA everywhere."""
    env = {**FLEET_ENV, "HX_LAB_TLS": str(tmp_path / "tls")}
    address = address_of("hx-lb")
    lab_tls = ensure_lab_tls(tmp_path / "tls", [address])
    settled = fleet.deploy()  # from a converged fleet (the test before may leave a restart due)
    assert settled.returncode == 0, settled.output[-3000:]
    pids = [main_pid(g) for g in GATEWAYS]
    try:
        run = pyinfra(secrets_env=fleet.secrets, group_data=fleet.group_data, extra_env=env)
        assert run.returncode == 0, run.output[-5000:]
        assert [main_pid(g) for g in GATEWAYS] == pids  # the CA reached them, no restart
        assert exec_in("hx-lb", "stat", "-c", "%U:%G %a", "/etc/haproxy/hx-gateway.pem.key") == "root:root 600"
        for host in ("hx-lb", *GATEWAYS):
            assert lab_tls.ca.read_text().splitlines()[1] in exec_in(host, "cat", "/etc/ssl/certs/ca-certificates.crt")
        proof = run_verify(fleet.secrets, tmp_path / "evidence", extra_env=env, group_data=fleet.group_data)
        assert proof.returncode == 0, proof.stdout[-5000:] + proof.stderr[-2000:]
        (bundle,) = (tmp_path / "evidence").iterdir()
        checks = {(c["host"], c["check"]): c for c in json.loads((bundle / "checks.json").read_text())["checks"]}
        served = checks[("@docker/hx-lb", "served_certificate_is_the_declared_one")]
        assert served["ok"] and checks[("@docker/hx-lb", "plain_http_serves_no_model")]["ok"]
        assert checks[("@docker/hx-lb", "balancer_serves_models")]["ok"]
        assert all(checks[(f"@docker/{host}", "ca_in_trust_store")]["ok"] for host in ("hx-lb", *GATEWAYS))
        lab_ca = ssl.create_default_context(cafile=str(lab_tls.ca))
        answer = httpx.get(f"https://{address}:4000/v1/models", headers=fleet.auth(), verify=lab_ca, timeout=30)
        assert answer.status_code == 200 and answer.headers["strict-transport-security"] == "max-age=31536000"
        weak = ssl.create_default_context(cafile=str(lab_tls.ca))
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError), socket.create_connection((address, 4000), timeout=10) as raw:
            weak.wrap_socket(raw, server_hostname=address)

        chain, key = issue(lab_tls.authority(), [address])
        lab_tls.chain.write_bytes(chain)
        write_private(lab_tls.key, key)
        serial = f"{x509.load_pem_x509_certificate(chain).serial_number:x}"
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(run_load, f"https://{address}:4000", fleet.secrets["HX_MASTER_KEY"], CHAT, 10**6, 8,
                               max_seconds=300, ca_bundle=str(lab_tls.ca), stop=stop)
            time.sleep(2)
            try:
                rotation = pyinfra(secrets_env=fleet.secrets, group_data=fleet.group_data, extra_env=env)
            finally:
                time.sleep(3)
                stop.set()
        assert rotation.returncode == 0, rotation.output[-4000:]
        assert "Reload haproxy.service" in rotation.output and key.decode().splitlines()[1] not in rotation.output
        during = load.result().summary()
        assert during["errors"] == 0 and during["requests"] > 100, during
        assert [main_pid(g) for g in GATEWAYS] == pids
        with socket.create_connection((address, 4000), timeout=10) as raw, \
                lab_ca.wrap_socket(raw, server_hostname=address) as tls:
            assert f"{x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number:x}" == serial
    finally:
        off = pyinfra(secrets_env=fleet.secrets, group_data=fleet.group_data, extra_env=FLEET_ENV)
    assert off.returncode == 0, off.output[-5000:]
    assert "hx-gateway.pem" not in exec_in("hx-lb", "ls", "/etc/haproxy")
    for host in ("hx-lb", *GATEWAYS):
        assert "hx-gateway-ca" not in exec_in(host, "ls", "/usr/local/share/ca-certificates")
    assert httpx.get(f"{fleet.lb_url}/v1/models", headers=fleet.auth(), timeout=30).status_code == 200
