"""Runs on the `db` host (as root, the target's python3 -I -S): what the deploy needs to know of
PostgreSQL there, as one JSON document. Reads only; never prints a password or a password's verifier
(only its salt and iteration count, which the server tells any client, and a digest of it).

    python3 postgres.py '[port, database, role]'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

# The table the deploy's migrations record themselves in (tasks/db/migrations.py).
MIGRATIONS_TABLE = "hx_schema_migrations"


# The role the PostgreSQL exporter logs in as (tasks/monitor/node.py): the OS user Debian runs it as.
MONITOR_ROLE = "prometheus"


def os_version(path: str = "/etc/os-release") -> str:
    """VERSION_ID of the distribution ("12"), or "" where there is none."""
    try:
        with open(path) as fh:
            for line in fh:
                name, _, value = line.strip().partition("=")
                if name == "VERSION_ID":
                    return value.strip('"')
    except OSError:
        pass
    return ""


def clusters(root: str = "/etc/postgresql") -> list[str]:
    """The versions that have a `main` cluster configured (Debian's layout), oldest first."""
    try:
        found = [v for v in os.listdir(root) if os.path.isdir(os.path.join(root, v, "main"))]
    except OSError:
        return []
    return sorted(found, key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")])


def psql(port: int, sql: str, database: str = "postgres") -> tuple[bool, list[list[str]]]:
    """Rows of `sql` run as the `postgres` superuser over the local socket (tab-separated fields)."""
    try:
        done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-F", "\t",
                               "-v", "ON_ERROR_STOP=1", "-p", str(port), "-d", database, "-c", sql],
                              capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False, []
    if done.returncode != 0:
        return False, []
    return True, [line.split("\t") for line in done.stdout.splitlines() if line]


def state(port: int, database: str, role: str) -> dict[str, Any]:
    """Whether the server answers, the role (salt:iterations of its SCRAM verifier and the verifier's
    sha256), whether the database exists, its applied migrations and the role's privileges.
    `database` and `role` are identifiers the deploy validated (lower-case letters, digits, '_')."""
    # Whether it answers, and whether the exporter's role (with a `monitor` host) may log in and monitor.
    answers, rows = psql(port, "SELECT coalesce((SELECT rolcanlogin AND pg_has_role(oid, 'pg_monitor', 'MEMBER') "
                               f"FROM pg_roles WHERE rolname = '{MONITOR_ROLE}'), false)")
    found: dict[str, Any] = {"answers": answers, "role": None, "database": False, "migrations": {},
                             "role_may_connect": False, "role_may_insert": False,
                             "monitor_role": bool(rows) and rows[0][0] == "t"}
    if not answers:
        return found
    _, rows = psql(port, "SELECT rolcanlogin, rolsuper, split_part(coalesce(rolpassword, ''), '$', 2), "
                         "encode(sha256(convert_to(coalesce(rolpassword, ''), 'UTF8')), 'hex') "
                         f"FROM pg_authid WHERE rolname = '{role}'")
    if rows:
        can_login, superuser, salt_and_iterations, digest = rows[0]
        found["role"] = {"login": can_login == "t", "superuser": superuser == "t",
                         "scram": salt_and_iterations, "sha256": digest}
    _, rows = psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{database}'")
    found["database"] = bool(rows)
    if not found["database"]:
        return found
    if found["role"]:
        _, rows = psql(port, f"SELECT has_database_privilege('{role}', '{database}', 'CONNECT'), "
                             f"coalesce(has_table_privilege('{role}', to_regclass('public.usage_requests'), "
                             f"'INSERT'), false)", database)
        if rows:
            found["role_may_connect"], found["role_may_insert"] = rows[0][0] == "t", rows[0][1] == "t"
    _, rows = psql(port, f"SELECT version, sha256 FROM {MIGRATIONS_TABLE} ORDER BY version"
                   if _has_table(port, database, MIGRATIONS_TABLE) else "SELECT NULL WHERE false", database)
    found["migrations"] = {version: digest for version, digest in rows}
    return found


def _has_table(port: int, database: str, table: str) -> bool:
    _, rows = psql(port, f"SELECT to_regclass('public.{table}') IS NOT NULL", database)
    return bool(rows) and rows[0][0] == "t"


def postgres_host(port: int, database: str, role: str) -> dict[str, Any]:
    return {"os_version": os_version(), "clusters": clusters(), **state(port, database, role)}


def main(argv: list[str]) -> None:
    print(json.dumps(postgres_host(*json.loads(argv[0]))))


if __name__ == "__main__":
    main(sys.argv[1:])
