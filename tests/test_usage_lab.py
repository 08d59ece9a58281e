"""Usage records in the lab (issue 26): hx-db runs PostgreSQL from Debian's packages, the gateway records
one row per request. Exactly N rows for N requests (key names, aliases, backends, token counts as the
clients saw them); PostgreSQL stopped under load costs no request and no latency, and rows flow again
when it is back, without a restart; removing the `db` group removes the recorder. hx-db is removed at
the end, so the tests after this module find their lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import (
    LAB_INVENTORY,
    REPO,
    gateway_url,
    main_pid,
    preview_ticket_deploy,
    pyinfra,
    random_key,
    run_verify,
    ticket,
)

from hx_gateway.load import chat_body, run_load
from lab.lab import docker, exec_in

pytestmark = pytest.mark.lab

DB_ENV = {"HX_LAB_DB": "1"}
KEYS_DATA = """
client_keys = [
    {"name": "open-webui", "models": [], "rpm": 6000, "max_concurrent": 50, "expires": None},
    {"name": "usage-b", "models": ["phi3-3.8b", "llama3-8b"], "rpm": 6000, "max_concurrent": 50, "expires": None},
]
"""


class Usage:
    def __init__(self, secrets: dict[str, str], group_data) -> None:
        self.secrets, self.group_data = secrets, group_data

    def deploy(self, *args: str, db: bool = True):
        return pyinfra(*args, secrets_env=self.secrets, group_data=self.group_data, extra_env=DB_ENV if db else {})

    def sql(self, query: str) -> list[list[str]]:
        out = exec_in("hx-db", "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-F", "\t",
                      "-d", "hx_gateway", "-c", query)
        return [line.split("\t") for line in out.splitlines() if line]

    def count(self) -> int:
        return int(self.sql("SELECT count(*) FROM usage_requests")[0][0])

    def settled_count(self) -> int:
        """The count once the recorders have written what they hold (two readings 2 s apart agree)."""
        last = -1
        while (now := self.count()) != last:
            last = now
            time.sleep(2)
        return now


@pytest.fixture(scope="module")
def usage(lab, lab_secrets, tmp_path_factory):
    secrets = {**lab_secrets, "HX_DB_PASSWORD": random_key(), "HX_CLIENT_KEY_USAGE_B": random_key()}
    data = tmp_path_factory.mktemp("usage-data")
    (data / "all.py").write_text(KEYS_DATA)
    the_lab = type(lab)(db="1")
    the_lab.up()
    docker("exec", "hx-db", "sh", "-c", "apt-get purge -y -q 'postgresql*' >/dev/null 2>&1; rm -rf /etc/postgresql "
           "/var/lib/postgresql", check=False)  # a fresh host, whatever an earlier run left
    the_usage = Usage(secrets, data)
    the_usage.preview, the_usage.ticket = preview_ticket_deploy(
        the_usage.deploy, secrets, tmp_path_factory.mktemp("usage-ticket") / "change.md", group_data=data,
        extra_env=DB_ENV)
    try:
        yield the_usage
    finally:
        docker("rm", "-f", "-v", "hx-db", check=False)


def test_the_preview_shows_the_database_and_the_migration_then_it_converges_idempotently(usage, tmp_path):
    assert "Install PostgreSQL" in usage.preview.output
    assert "Apply migration 0001_usage_requests to hx_gateway (one transaction)" in usage.preview.output
    assert "PostgreSQL role hx_gateway: create" in usage.preview.output
    # The change ticket lists the migration with its SQL, the role (password hidden) and the database.
    assert "**0001_usage_requests**: apply (one transaction)" in usage.ticket
    assert "CREATE TABLE usage_requests" in usage.ticket
    assert "**role hx_gateway**: create (password hidden)" in usage.ticket
    assert "request_recorded_in_usage_db" in usage.ticket
    again = usage.deploy()
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-4000:]
    markdown, _, _ = ticket(usage.secrets, tmp_path / "change.md", group_data=usage.group_data, extra_env=DB_ENV)
    assert "Plan: no changes" in markdown and "request_recorded_in_usage_db" in markdown
    result = run_verify(usage.secrets, tmp_path / "evidence", extra_env=DB_ENV, group_data=usage.group_data)
    assert result.returncode == 0 and "request_recorded_in_usage_db" in result.stdout, result.stdout[-4000:]
    for secret in usage.secrets.values():
        assert secret not in usage.preview.output + usage.ticket + again.output + result.stdout


def test_postgres_admits_only_the_gateways_role_over_tls_and_keeps_no_password(usage):
    hba = exec_in("hx-db", "cat", "/etc/postgresql/15/main/pg_hba.conf")
    network = [line.split() for line in hba.splitlines() if line.startswith(("host", "hostssl"))]
    remote = [fields for fields in network if not fields[3].startswith(("127.", "::1"))]
    api = exec_in("hx-api", "sh", "-c", "hostname -I").split()[0]
    assert remote == [["hostssl", "hx_gateway", "hx_gateway", f"{api}/32", "scram-sha-256", "#", "hx-api"]]
    assert usage.secrets["HX_DB_PASSWORD"] not in exec_in("hx-db", "sh", "-c", "cat /etc/postgresql/15/main/*.conf "
                                                                             "/etc/postgresql/15/main/conf.d/*")
    role = usage.sql("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = 'hx_gateway'")
    assert role == [["f", "f", "f"]]
    ssl = usage.sql("SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                    "WHERE usename = 'hx_gateway' AND NOT ssl")
    assert ssl == [["0"]]  # every gateway connection is encrypted
    # The gateways' role may write rows and nothing else: no reading them back, no DDL.
    assert usage.sql("SELECT has_table_privilege('hx_gateway', 'usage_requests', 'SELECT'), "
                     "has_database_privilege('hx_gateway', 'hx_gateway', 'CREATE')") == [["f", "f"]]
    env = exec_in("hx-api", "cat", "/etc/litellm/litellm.env")
    assert "HX_USAGE_HOST=" in env and "DATABASE_URL" not in env
    exposure = exec_in("hx-db", "sh", "-c", "systemd-analyze security postgresql@15-main.service --no-pager | tail -1")
    score = float(exposure.split("exposure level for postgresql@15-main.service:")[1].split()[0])
    assert score <= 3.0, exposure  # "OK"; Debian's unit alone scores 9.6 "UNSAFE" (README)


def test_n_requests_with_two_keys_and_two_aliases_are_exactly_n_rows_as_the_clients_saw_them(usage):
    url, seen = gateway_url(), {}
    plan = [(key, alias) for key in ("HX_CLIENT_KEY_OPEN_WEBUI", "HX_CLIENT_KEY_USAGE_B")
            for alias in ("phi3-3.8b", "llama3-8b") for _ in range(5)]
    names = {"HX_CLIENT_KEY_OPEN_WEBUI": "open-webui", "HX_CLIENT_KEY_USAGE_B": "usage-b"}

    def send(step: tuple[str, str]) -> None:
        key, alias = step
        answer = httpx.post(f"{url}/v1/chat/completions", timeout=60, json=chat_body(alias),
                            headers={"Authorization": f"Bearer {usage.secrets[key]}"})
        assert answer.status_code == 200, answer.text
        tokens = answer.json()["usage"]
        seen[answer.headers["x-litellm-call-id"]] = [names[key], alias, answer.headers["x-litellm-model-api-base"],
                                                     "200", str(tokens["prompt_tokens"]),
                                                     str(tokens["completion_tokens"])]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, plan))
    ids = ", ".join(f"'{call_id}'" for call_id in seen)
    query = ("SELECT call_id, client_key, alias, backend, status, prompt_tokens, completion_tokens FROM usage_requests "
             f"WHERE call_id IN ({ids})")
    deadline, rows = time.monotonic() + 15, []
    while time.monotonic() < deadline and len(rows) < len(plan):
        time.sleep(0.5)
        rows = usage.sql(query)
    assert len(rows) == len(plan) == 20
    assert {row[0]: row[1:] for row in rows} == seen  # the backend: the one whose answer the client got


def test_a_refused_request_is_recorded_under_its_key_name_and_status(usage):
    """A 403 (a model the key may not use) is refused in auth, before the key is on the request: its
    row still names the key (hx_auth puts it on the refusal)."""
    answer = httpx.post(f"{gateway_url()}/v1/embeddings", json={"model": "emb-premium", "input": "x"}, timeout=60,
                        headers={"Authorization": f"Bearer {usage.secrets['HX_CLIENT_KEY_USAGE_B']}"})
    assert answer.status_code == 403
    deadline, rows = time.monotonic() + 15, []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.5)
        rows = usage.sql("SELECT client_key, alias, status FROM usage_requests WHERE status = 403")
    assert rows == [["usage-b", "emb-premium", "403"]]


def test_postgres_stopped_under_load_costs_no_request_and_rows_flow_again_without_a_restart(usage):
    url, key = gateway_url(), usage.secrets["HX_CLIENT_KEY_OPEN_WEBUI"]
    body = chat_body("phi3-3.8b")
    pid, before = main_pid(), usage.settled_count()
    baseline = run_load(url, key, body, requests=400, concurrency=8, max_seconds=20)
    assert not baseline.failures(), baseline.summary()
    exec_in("hx-db", "systemctl", "stop", "postgresql@15-main")
    try:
        during = run_load(url, key, body, requests=400, concurrency=8, max_seconds=20)
    finally:
        exec_in("hx-db", "systemctl", "start", "postgresql@15-main")
    assert not during.failures(), during.summary()
    assert during.summary()["p50_ms"] <= baseline.summary()["p50_ms"] * 1.5 + 5, (baseline.summary(), during.summary())
    # Rows made while it was down waited in the queue (400 < db_queue_rows) and arrive now, with new ones.
    after = run_load(url, key, body, requests=20, concurrency=2)
    assert not after.failures()
    expected = before + len(baseline.outcomes) + len(during.outcomes) + len(after.outcomes)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and usage.count() < expected:
        time.sleep(0.5)
    assert usage.count() == expected
    assert main_pid() == pid  # nothing restarted
    journal = exec_in("hx-api", "journalctl", "-u", "litellm", "--no-pager", "-o", "cat")
    assert "hx_usage: the usage database does not take rows" in journal
    assert "hx_usage: the usage database takes rows again" in journal


def test_removing_the_db_group_removes_the_recorder_and_keeps_the_rows(usage):
    rows = usage.count()
    run = usage.deploy(db=False)
    assert run.returncode == 0, run.output[-4000:]
    config = exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
    assert "hx_usage.recorder" not in config.split("callbacks:")[1].splitlines()[0]
    assert "HX_USAGE" not in exec_in("hx-api", "cat", "/etc/litellm/litellm.env")
    answer = httpx.post(f"{gateway_url()}/v1/chat/completions", json=chat_body("phi3-3.8b"), timeout=60,
                        headers={"Authorization": f"Bearer {usage.secrets['HX_CLIENT_KEY_OPEN_WEBUI']}"})
    assert answer.status_code == 200
    time.sleep(2)
    assert usage.count() == rows  # the data stays; nothing new is recorded
    report = json.loads(usage_report(usage, "--by", "key", "--format", "json", db=True))
    assert {r["key"] for r in report} >= {"open-webui", "usage-b"}


def usage_report(usage: Usage, *args: str, db: bool) -> str:
    env = {**os.environ, **usage.secrets, "HX_SECRETS_FILE": "/nonexistent", **(DB_ENV if db else {})}
    done = subprocess.run([sys.executable, "-m", "hx_gateway.usage", LAB_INVENTORY, "--group-data",
                           str(usage.group_data), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_report_totals_match_the_rows(usage):
    table = usage_report(usage, "--by", "alias", "--since", "1h", db=True)
    assert table.splitlines()[0].split() == ["alias", "requests", "errors", "prompt_tokens", "completion_tokens",
                                             "p50_ms", "p95_ms"]
    totals = {line.split()[0]: int(line.split()[1]) for line in table.splitlines()[1:]}
    counted = dict(usage.sql("SELECT coalesce(alias, '(none)'), count(*) FROM usage_requests "
                             "WHERE at > now() - interval '1 hour' GROUP BY 1"))
    assert totals == {alias: int(n) for alias, n in counted.items()}



def test_a_debian_13_db_host_gets_its_postgresql_17_and_records(usage, lab, tmp_path):
    """Debian 12 and 13 both: a trixie hx-db gets PostgreSQL 17 from its own packages, same files."""
    docker("rm", "-f", "-v", "hx-db", check=False)
    type(lab)(db="trixie").up()
    trixie = {"HX_LAB_DB": "trixie"}
    run = pyinfra(secrets_env=usage.secrets, group_data=usage.group_data, extra_env=trixie)
    assert run.returncode == 0 and "Install PostgreSQL 17 (OS package postgresql-17)" in run.output, run.output[-4000:]
    assert "scram-sha-256" in exec_in("hx-db", "cat", "/etc/postgresql/17/main/pg_hba.conf")
    again = pyinfra(secrets_env=usage.secrets, group_data=usage.group_data, extra_env=trixie)
    assert again.returncode == 0 and again.changed_ops() == [], again.output[-3000:]
    result = run_verify(usage.secrets, tmp_path, extra_env=trixie, group_data=usage.group_data)
    assert result.returncode == 0 and "request_recorded_in_usage_db" in result.stdout, result.stdout[-4000:]

