"""Usage records (issue 26) without a lab: the `db` group's settings and refusals, the role password as
PostgreSQL stores it, the migrations, what the gateways render, the recorder's rows and its writer
(never blocking a request, holding rows while the database is down), and the usage report's query."""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from conftest import REPO, defaults, random_key

from hx_gateway.model.fleet import DB_KNOBS, load_db
from hx_gateway.model.plan import fleet_plans
from hx_gateway.model.secrets import Secrets, service_password_problems
from hx_gateway.model.settings import SettingsError, load_settings
from hx_gateway.pyinfra_ext import render
from hx_gateway.usage import report_sql, since_seconds
from tasks.db import database_sql, gateway_addresses, grants_sql, role_sql
from tasks.db.migrations import Migration, migrations, pending
from tasks.db.password import matches, verifier

# Made by PostgreSQL 15 itself (CREATE ROLE ... PASSWORD 'correct horse battery staple'), a test vector.
POSTGRES_MADE = ("SCRAM-SHA-256$4096:U5C472pDXAsySEhHpBMv7A==$NWc4cNHoqlU/WhhWPsbauZ+JTkDkXfnnqggsSu77nMo=:"
                 "HzkaAJtp8PGtEHFlXbXDfP1FVkxckWPJo1h7+VfrZw8=")


def db_data(**overrides) -> dict:
    data = {**defaults(), **{k: v for k, v in _db_defaults().items()}}
    data.update(overrides)
    return data


def _db_defaults() -> dict:
    namespace: dict = {}
    exec((REPO / "group_data" / "db.py").read_text(), namespace)
    return {k: namespace[k] for k in DB_KNOBS}


def as_role(verifier_text: str) -> dict:
    """What the PostgresHost fact reports of a stored verifier (never the verifier itself)."""
    import hashlib

    return {"scram": verifier_text.split("$")[1], "sha256": hashlib.sha256(verifier_text.encode()).hexdigest()}


# -- the role's password ---------------------------------------------------------------------------

def test_a_verifier_postgres_made_matches_its_password_and_no_other():
    assert matches("correct horse battery staple", as_role(POSTGRES_MADE))
    assert not matches("correct horse battery stapler", as_role(POSTGRES_MADE))
    assert not matches("anything", None) and not matches("anything", {"scram": "", "sha256": ""})
    assert not matches("anything", {"scram": "4096:not base64!", "sha256": "00"})


def test_the_deploy_makes_the_verifier_postgres_would_make_with_the_same_salt():
    import base64

    salt = base64.b64decode(POSTGRES_MADE.split("$")[1].split(":")[1])
    assert verifier("correct horse battery staple", salt) == POSTGRES_MADE
    fresh = verifier("correct horse battery staple")
    assert fresh != POSTGRES_MADE and matches("correct horse battery staple", as_role(fresh))  # a new salt


def test_the_role_sql_holds_the_verifier_never_the_password():
    from hx_gateway.model.secrets import SecretText

    settings, _ = load_db("hx-db", db_data())
    password = random_key()
    sql = role_sql(settings, SecretText(password), exists=False)
    assert repr(sql) == "<hidden>" and password not in sql.reveal()
    assert "SCRAM-SHA-256$4096:" in sql.reveal() and "NOSUPERUSER" in sql.reveal()
    assert "CREATE DATABASE hx_gateway" in database_sql(settings) and "FROM PUBLIC" in database_sql(settings)
    assert grants_sql(settings) == ("GRANT CONNECT ON DATABASE hx_gateway TO hx_gateway;\n"
                                    "GRANT INSERT ON usage_requests TO hx_gateway;\n")


# -- settings and refusals -------------------------------------------------------------------------

def test_db_knobs_are_checked_each_naming_the_knob():
    settings, problems = load_db("hx-db", db_data(db_bind_address="0.0.0.0", db_name="Usage-DB", db_user="postgres",
                                                  db_port=0, db_queue_rows=5))
    assert problems == [
        "db_bind_address: '0.0.0.0' would listen on every address; name one private address of the database host, "
        "or None for the address its inventory name resolves to",
        "db_name: 'Usage-DB' is not a usable PostgreSQL name; use lower-case letters, digits and '_' (starting with "
        "a letter, at most 63, not `postgres` or pg_...)",
        "db_user: 'postgres' is not a usable PostgreSQL name; use lower-case letters, digits and '_' (starting with "
        "a letter, at most 63, not `postgres` or pg_...)",
        "db_port: 0 is out of range; set an integer from 1 to 65535",
        "db_queue_rows: 5 is out of range; set an integer from 100 to 10000000",
    ]
    good, problems = load_db("hx-db", db_data())
    assert not problems and good.address == "hx-db" and good.db_name == good.db_user == "hx_gateway"


@pytest.fixture
def keys(monkeypatch):
    for name, value in {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
                        "HX_SECRETS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HX_DB_PASSWORD", raising=False)
    return monkeypatch


def test_a_db_group_needs_one_host_gateways_and_a_real_password(keys):
    hosts = [("gw", db_data(), {"litellm"}), ("db1", db_data(), {"db"}), ("db2", db_data(), {"db"})]
    with pytest.raises(SettingsError) as err:
        fleet_plans(hosts)
    text = "\n".join(err.value.problems)
    assert "db: 2 hosts (db1, db2); the gateways record usage in one database: keep one host in the `db` group" in text
    assert "HX_DB_PASSWORD (the `db` group's password): missing; export HX_DB_PASSWORD=..." in text
    with pytest.raises(SettingsError) as err:
        fleet_plans([("db1", db_data(), {"db"})])
    assert "db: no gateways record into it" in "\n".join(err.value.problems)
    keys.setenv("HX_DB_PASSWORD", "postgres-changeme-postgres-changeme")
    with pytest.raises(SettingsError) as err:
        fleet_plans(hosts[:2])
    assert err.value.problems == ["HX_DB_PASSWORD (the `db` group's password): looks like a placeholder; generate "
                                  "one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"]
    keys.setenv("HX_DB_PASSWORD", random_key())
    plans = fleet_plans(hosts[:2])
    assert plans["db1"].db and plans["gw"].gateway.fleet.db.host == "db1" and not plans["gw"].db


def test_the_db_password_is_its_own_and_plain_ascii():
    master, client, redis = random_key(), random_key(), random_key()
    shared = Secrets(master, {"c": client}, redis, db_password=redis)
    assert service_password_problems(shared, "db") == [
        "HX_DB_PASSWORD (the `db` group's password): equals another key or password; give the `db` group its own"]
    accented = Secrets(master, {"c": client}, db_password="é" * 40 + random_key())
    assert "use printable ASCII only" in service_password_problems(accented, "db")[0]
    assert service_password_problems(Secrets(master, {"c": client}, db_password=random_key()), "db") == []


# -- what the gateways render -----------------------------------------------------------------------

def test_with_a_db_host_the_gateways_list_the_recorder_and_get_its_connection_never_database_url():
    settings = load_settings(defaults(), "hx-api")
    db, _ = load_db("hx-db", db_data(db_bind_address="10.0.0.5"))
    password = random_key()
    config = yaml.safe_load(render.render_config(settings, "1.106.2", db=db))
    assert config["litellm_settings"]["callbacks"][-1] == "hx_usage.recorder"
    env = render.render_env(Secrets(random_key(), {}, db_password=password), db=db)
    assert f"HX_USAGE_PASSWORD={password}\n" in env and "HX_USAGE_HOST=10.0.0.5\n" in env
    assert "DATABASE_URL" not in env  # it would switch LiteLLM's own (Prisma) database mode on
    # Back to DB-less mode: the group removed, the callback and the connection go at the next deploy.
    plain = yaml.safe_load(render.render_config(settings, "1.106.2"))
    assert "hx_usage.recorder" not in plain["litellm_settings"]["callbacks"]
    assert "HX_USAGE" not in render.render_env(Secrets(random_key(), {}))


def test_pg_hba_admits_each_gateway_from_the_addresses_its_name_resolves_to_or_refuses():
    from hx_gateway.model.fleet import Fleet, Member

    fleet = Fleet(gateways=(Member("hx-api", "10.0.0.2", 4000, 45), Member("hx-api2", "hx-api2", 4000, 45)))
    found, problems = gateway_addresses(fleet, {"hx-api": ["10.0.0.2"], "10.0.0.2": ["10.0.0.2"], "hx-api2": []})
    assert found["hx-api"] == ["10.0.0.2"]
    assert problems == ["gateway hx-api2 (hx-api2) does not resolve on this host, so pg_hba.conf could not admit it; "
                        "add it to DNS or to /etc/hosts here"]


# -- migrations -------------------------------------------------------------------------------------

def test_migrations_apply_in_order_once_and_an_edited_applied_one_is_refused():
    known = [Migration("0001_a", "CREATE TABLE a ();"), Migration("0002_b", "CREATE TABLE b ();")]
    todo, problems = pending({}, known)
    assert [m.version for m in todo] == ["0001_a", "0002_b"] and not problems
    todo, problems = pending({"0001_a": known[0].sha256}, known)
    assert [m.version for m in todo] == ["0002_b"] and not problems
    _, problems = pending({"0001_a": "0" * 64, "0003_c": "1" * 64}, known)
    assert problems == ["templates/db/migrations/0001_a.sql changed after it was applied; put it back and add the "
                        "change as a new migration",
                        "migration 0003_c is applied in the database but not in templates/db/migrations/: deploy "
                        "from the checkout that has it"]
    script = known[0].script()
    assert script.index("\\if :hx_todo") < script.index("CREATE TABLE a") < script.index("INSERT INTO hx_schema_migr")
    assert [m.version for m in migrations()][0] == "0001_usage_requests"


# -- the recorder on the gateway --------------------------------------------------------------------

@pytest.fixture
def hx_usage(monkeypatch):
    """templates/gateway/hx_usage.py as LiteLLM loads it (its CustomLogger base stubbed: LiteLLM is not in
    the control node's venv)."""
    logger = types.ModuleType("litellm.integrations.custom_logger")
    logger.CustomLogger = type("CustomLogger", (), {"__init__": lambda self: None})
    for name in ("litellm", "litellm.integrations"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", logger)
    spec = importlib.util.spec_from_file_location("hx_usage", Path(REPO, "templates", "gateway", "hx_usage.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_answered_request_becomes_a_row_with_the_key_name_alias_backend_tokens_and_latency(hx_usage):
    payload = {"litellm_call_id": "c-1", "startTime": 1000.0, "endTime": 1000.25, "model_group": "phi3-3.8b",
               "api_base": "http://hx-llm02:11434/api/chat", "prompt_tokens": 12, "completion_tokens": 34,
               "stream": True, "metadata": {"user_api_key_alias": "open-webui", "user_api_key_hash": "ab"}}
    row = hx_usage.answered_row(payload, gateway="gw")
    assert dict(zip(hx_usage.COLUMNS, row, strict=True)) == {
        "at": dt.datetime(1970, 1, 1, 0, 16, 40, tzinfo=dt.timezone.utc), "call_id": "c-1", "gateway": "gw",
        "client_key": "open-webui", "alias": "phi3-3.8b", "backend": "http://hx-llm02:11434",
        "status": 200, "prompt_tokens": 12, "completion_tokens": 34, "latency_ms": 250, "streamed": True}
    master = hx_usage.answered_row({**payload, "metadata": {"user_api_key_hash": "ab"}, "cache_hit": True}, "gw")
    assert master[3] == "(master)" and master[5] == "(cache)"


def test_a_refused_request_becomes_a_row_with_its_status(hx_usage):
    class TooMany(Exception):
        code = "429"

    row = hx_usage.refused_row({"model": "llama3-8b", "litellm_call_id": "c-2"}, TooMany(), "open-webui", False, "gw")
    assert row[1:10] == ("c-2", "gw", "open-webui", "llama3-8b", None, 429, 0, 0, None)
    assert hx_usage.refused_row({}, ValueError("x"), None, False, "gw")[3:7] == ("(none)", None, None, 500)


class FakeDatabase:
    def __init__(self) -> None:
        self.up, self.rows, self.connections = True, [], 0

    def connect(self):
        if not self.up:
            raise OSError("connection refused")
        self.connections += 1
        return self

    def close(self) -> None:
        pass

    def write(self, connection, rows) -> None:
        if not self.up:
            raise OSError("server closed the connection")
        self.rows += rows


def test_the_writer_never_blocks_holds_rows_while_the_database_is_down_and_drains_when_it_is_back(hx_usage):
    database, warnings = FakeDatabase(), []
    writer = hx_usage.Writer(database.connect, capacity=3, write=database.write, warn=warnings.append)
    writer._pid = __import__("os").getpid()  # no thread: the test drives the writer's steps
    database.up = False
    for n in range(5):
        writer.offer((n,))  # a full queue drops, at once
    # The first drop is said at once; the next ones are counted and said at most once a minute.
    assert writer.rows.qsize() == 3 and warnings[-1].startswith("dropped 1 usage rows") and writer.dropped == 1
    writer._warn_drops(now=__import__("time").monotonic() + hx_usage.WARN_EVERY_SECONDS)
    assert warnings[-1].startswith("dropped 1 usage rows") and len(warnings) == 2 and writer.dropped == 0
    batch = writer.take_batch(first_wait=0)
    connection, pending, error = writer.flush_once(None, batch)
    assert connection is None and pending == [(0,), (1,), (2,)] and error.startswith("OSError: connection refused")
    database.up = True
    connection, pending, error = writer.flush_once(None, pending)
    assert connection is database and pending == [] and not error and database.rows == [(0,), (1,), (2,)]
    writer.offer((5,))
    writer.flush_once(connection, writer.take_batch(first_wait=0))
    assert database.rows[-1] == (5,) and writer.written == 4 and database.connections == 1


def test_the_writer_thread_writes_what_requests_offer(hx_usage):
    database = FakeDatabase()
    writer = hx_usage.Writer(database.connect, capacity=100, write=database.write, warn=lambda _: None)
    for n in range(10):
        writer.offer((n,))
    deadline = __import__("time").monotonic() + 10
    while len(database.rows) < 10 and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    assert database.rows == [(n,) for n in range(10)]


# -- the usage report --------------------------------------------------------------------------------

def test_the_report_groups_and_periods_are_checked_before_any_query():
    assert since_seconds("7d") == 7 * 86400 and since_seconds("30m") == 1800 and since_seconds("2w") == 14 * 86400
    for bad in ("7", "0d", "7x", "-1d", "1d; DROP TABLE usage_requests"):
        with pytest.raises(Exception, match="give a number and a unit"):
            since_seconds(bad)
    sql = report_sql("day", 3600)
    assert "GROUP BY 1" in sql and "interval '3600 seconds'" in sql and "percentile_cont(0.95)" in sql


def test_a_refusal_in_auth_is_recorded_under_the_key_it_names(hx_usage):
    import asyncio

    offered = []
    recorder = hx_usage.UsageRecorder(types.SimpleNamespace(offer=offered.append))
    refusal = type("ProxyException", (Exception,), {"code": "403"})("may not use model")
    refusal.hx_client = "usage-b"  # hx_auth's _error puts the key's name there
    blank = types.SimpleNamespace(key_alias=None, user_role=None)  # what the proxy passes for a refusal in auth
    asyncio.run(recorder.async_post_call_failure_hook({"model": "emb-premium"}, refusal, blank))
    assert offered[0][3:7] == ("usage-b", "emb-premium", None, 403)


def test_stopping_writes_what_the_writer_still_holds_and_says_when_it_cannot(hx_usage):
    database, warnings = FakeDatabase(), []
    writer = hx_usage.Writer(database.connect, capacity=100, write=database.write, warn=warnings.append)
    for n in range(10):
        writer.offer((n,))
    assert writer.stop(timeout=5) and database.rows == [(n,) for n in range(10)] and not warnings
    down, warnings = FakeDatabase(), []
    down.up = False
    stuck = hx_usage.Writer(down.connect, capacity=100, write=down.write, warn=warnings.append)
    stuck.offer((1,))
    assert not stuck.stop(timeout=0.5) and warnings[-1].startswith("exit: ")


EXITING_WORKER = """
import sys, types
logger = types.ModuleType("litellm.integrations.custom_logger")
logger.CustomLogger = type("CustomLogger", (), {"__init__": lambda self: None})
sys.modules.update({"litellm": types.ModuleType("litellm"), "litellm.integrations": types.ModuleType("x"),
                    "litellm.integrations.custom_logger": logger})
sys.path.insert(0, sys.argv[1])
import hx_usage

out = open(sys.argv[2], "a")
writer = hx_usage.Writer(lambda: out, capacity=1000,
                         write=lambda f, rows: (f.writelines(f"{r[0]}\\n" for r in rows), f.flush()))
for n in range(int(sys.argv[3])):
    writer.offer((n,))
sys.exit(0)  # as a gunicorn worker leaves once it has drained its requests
"""


def test_a_worker_that_exits_right_after_its_last_request_writes_every_row(tmp_path):
    """A deploy's restart stops the workers a moment after their last answers: the rows those produced
    are still in the writer's one-second batch window, and must reach the database before the exit."""
    (tmp_path / "worker.py").write_text(EXITING_WORKER)
    out = tmp_path / "rows.txt"
    result = subprocess.run([sys.executable, str(tmp_path / "worker.py"), str(REPO / "templates" / "gateway"),
                             str(out), "250"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.read_text().split() == [str(n) for n in range(250)]
