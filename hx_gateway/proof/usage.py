"""The usage records, proven from outside: a chat verify makes appears as its row in the `db` host's
database (found by the x-litellm-call-id the gateway answered with)."""

from __future__ import annotations

import csv
import io
import re
import shlex
import time
from collections.abc import Callable

import httpx
from pyinfra.api import Host

from hx_gateway.model.fleet import DbSettings
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import Settings
from hx_gateway.proof.checks import Check, trust
from hx_gateway.pyinfra_ext.remote import run_as_root

USAGE_VALIDATION_PLAN: dict[str, str] = {
    "request_recorded_in_usage_db": "a chat verify makes through each gateway appears as one row in the usage "
                                    "database, with its key name, alias and backend",
}
CALL_ID_RE = re.compile(r"^[0-9A-Za-z-]{8,64}$")
WAIT_FOR_ROW_S = 15.0  # the recorder writes within about a second; a slow database gets more


def query(db_host: Host, settings: DbSettings, sql: str) -> list[dict[str, str]]:
    """Rows of `sql`, run on the `db` host as `postgres` in the usage database (CSV with a header)."""
    command = (f"runuser -u postgres -- psql -X -q --csv -v ON_ERROR_STOP=1 -p {settings.db_port} "
               f"-d {settings.db_name} -c {shlex.quote(sql)}")
    ok, output = run_as_root(command, on=db_host)
    if not ok:
        raise Refusal(f"{db_host.name}: the usage query failed: {' '.join(output.stderr_lines)[-400:]}; is "
                      f"PostgreSQL running there (systemctl status postgresql) and was the deploy run with the "
                      f"`db` group?")
    return list(csv.DictReader(io.StringIO("\n".join(output.stdout_lines))))


def rows_of_call(db_host: Host, settings: DbSettings, call_id: str) -> list[dict[str, str]]:
    if not CALL_ID_RE.match(call_id):
        return []
    return query(db_host, settings, "SELECT client_key, alias, backend, status, prompt_tokens, completion_tokens "
                                    f"FROM usage_requests WHERE call_id = '{call_id}'")


def usage_check(host: str, settings: Settings, secrets: Secrets, rows: Callable[[str], list[dict[str, str]]],
                wait: float = WAIT_FOR_ROW_S) -> Check:
    """One chat with the master key to the gateway (`host`), then its row (`rows`: by call id)."""
    alias = next(a.name for a in settings.model_aliases if a.kind == "chat")
    fix = (f"journalctl -u {settings.service_name} | grep hx_usage on {host} (the recorder says why it cannot "
           f"write); is the `db` host up?")
    try:
        answer = httpx.post(f"{settings.gateway_url}/v1/chat/completions", timeout=60, verify=trust(settings.ca_bundle),
                            headers={"Authorization": f"Bearer {secrets.master_key}"},
                            json={"model": alias, "messages": [{"role": "user", "content": "hx-gateway verify usage"}]})
    except httpx.HTTPError as exc:
        return Check(host, "request_recorded_in_usage_db", False, "a row", f"{type(exc).__name__}: {exc}", fix)
    call_id = answer.headers.get("x-litellm-call-id", "")
    deadline, found = time.monotonic() + wait, []
    while call_id and not found and time.monotonic() < deadline:
        found = rows(call_id)
        if not found:
            time.sleep(0.5)
    want = f"1 row: (master), {alias}, a backend, 200"
    seen = "; ".join(f"{r['client_key']}, {r['alias']}, {r['backend'] or '-'}, {r['status']}" for r in found) or (
        f"no row for call {call_id} after {wait:g} s" if call_id else f"HTTP {answer.status_code} without a call id")
    ok = (len(found) == 1 and found[0]["client_key"] == "(master)" and found[0]["alias"] == alias
          and bool(found[0]["backend"]) and found[0]["status"] == "200")
    return Check(host, "request_recorded_in_usage_db", ok, want, seen, fix)
