"""The usage database component (group `db`, one host): PostgreSQL from the OS packages, where the
gateways record one row per request (templates/gateway/hx_usage.py).

preflight (facts only: the distribution's PostgreSQL, the address to bind, what the gateways' names
resolve to there, the role, database and applied migrations) -> install (the OS package; Debian
creates and starts its `main` cluster) -> configure (a conf.d file, pg_hba.conf) -> activate (restart
when the conf.d file changed, reload when only pg_hba.conf did; then it must answer) -> the gateways'
role (its password sent as a SCRAM verifier), the database, the migrations, the role's privileges:
each planned only when the facts say it is needed, and each safe to run again.
Knobs: group_data/db.py, typed in hx_gateway/model/fleet.py; templates: templates/db/.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import apt

from hx_gateway.host.postgres import MONITOR_ROLE
from hx_gateway.model.fleet import DbSettings, Fleet, host_part
from hx_gateway.model.plan import DbPlan
from hx_gateway.model.secrets import SecretText
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import PostgresHost, Resolves
from hx_gateway.pyinfra_ext.operations import ensure_directory, managed_file, run_sql
from hx_gateway.pyinfra_ext.render import ManagedDirectory, ManagedFile, template_environment
from tasks.component import activate, bind_address, read_component_host, refuse, reload_units
from tasks.db import migrations
from tasks.db.password import matches, verifier

# Debian's PostgreSQL by release (VERSION_ID): what a host without a cluster gets.
POSTGRESQL_OF_DEBIAN = {"12": "15", "13": "17"}
ANSWERS = ("for i in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p {port} && exit 0; sleep 0.2; done; "
           "echo \"PostgreSQL does not answer on port {port}\" >&2; journalctl -u {unit} -n 20 --no-pager >&2; exit 1")

_env = template_environment("db")


def unit_of(version: str) -> str:
    return f"postgresql@{version}-main.service"


def dropin_of(version: str) -> ManagedDirectory:
    return ManagedDirectory(f"/etc/systemd/system/{unit_of(version)}.d", "root", "root", "755")


def files(version: str) -> dict[str, ManagedFile]:
    """The files the deploy owns: in the cluster's configuration (Debian's layout and owners), and the
    unit's hardening drop-in."""
    main = f"/etc/postgresql/{version}/main"
    return {"conf": ManagedFile(f"{main}/conf.d/hx-gateway.conf", "postgres", "postgres", "644"),
            "hba": ManagedFile(f"{main}/pg_hba.conf", "postgres", "postgres", "640"),
            "hardening": ManagedFile(f"{dropin_of(version).path}/hx-hardening.conf", "root", "root", "644")}


def gateway_names(fleet: Fleet) -> list[str]:
    """What the db host resolves to find each gateway: its name and the host of its URL."""
    return sorted({name for m in fleet.gateways for name in (m.name, m.address) if name})


def gateway_addresses(fleet: Fleet, resolves: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Each gateway's addresses as the db host sees them (pg_hba.conf admits these only), or the problems."""
    found, problems = {}, []
    for member in fleet.gateways:
        addresses = sorted(set(resolves.get(member.name, [])) | set(resolves.get(member.address, [])))
        if not addresses:
            problems.append(f"gateway {member.name} ({member.address}) does not resolve on this host, so pg_hba.conf "
                            f"could not admit it; add it to DNS or to /etc/hosts here")
        found[member.name] = addresses
    return found, problems


def role_sql(settings: DbSettings, password: SecretText, exists: bool) -> SecretText:
    """Create or alter the gateways' role: may log in, nothing else. Safe to run again (the role is
    looked up when it runs, not when it was planned)."""
    attributes = f"LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '{verifier(password.reveal())}'"
    return SecretText(f"DO $hx$ BEGIN\n  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{settings.db_user}') THEN\n"
                      f"    ALTER ROLE {settings.db_user} WITH {attributes};\n  ELSE\n"
                      f"    CREATE ROLE {settings.db_user} WITH {attributes};\n  END IF;\nEND $hx$;\n")


def database_sql(settings: DbSettings) -> str:
    """The database, owned by `postgres` (the gateways' role creates nothing), closed to PUBLIC."""
    return (f"SELECT 'CREATE DATABASE {settings.db_name}' WHERE NOT EXISTS "
            f"(SELECT FROM pg_database WHERE datname = '{settings.db_name}') \\gexec\n"
            f"REVOKE ALL ON DATABASE {settings.db_name} FROM PUBLIC;\n")


def monitor_role_sql() -> str:
    """The exporter's role: it may log in (only over the local socket, as the OS user of its name: the
    package's `local ... peer` line) and read the statistics views (pg_monitor), nothing else."""
    return (f"DO $hx$ BEGIN\n  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{MONITOR_ROLE}') THEN\n"
            f"    CREATE ROLE {MONITOR_ROLE} LOGIN;\n  END IF;\nEND $hx$;\n"
            f"ALTER ROLE {MONITOR_ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD NULL;\n"
            f"GRANT pg_monitor TO {MONITOR_ROLE};\n")


def grants_sql(settings: DbSettings) -> str:
    return (f"GRANT CONNECT ON DATABASE {settings.db_name} TO {settings.db_user};\n"
            f"GRANT INSERT ON usage_requests TO {settings.db_user};\n")


@deploy("PostgreSQL (usage records)")
def db(plan: DbPlan) -> None:
    s = plan.settings
    pg, resolves = read_together((PostgresHost, {"port": s.db_port, "database": s.db_name, "role": s.db_user}),
                                 (Resolves, {"names": tuple(gateway_names(plan.fleet))}))
    version = pg["clusters"][-1] if pg["clusters"] else POSTGRESQL_OF_DEBIAN.get(pg["os_version"], "")
    if not version:
        refuse("db", [f"no PostgreSQL cluster here, and this is not Debian 12 or 13 (VERSION_ID "
                      f"{pg['os_version'] or 'unknown'}), whose PostgreSQL the deploy knows; use one of those"])
    unit, package, managed, dropin = unit_of(version), f"postgresql-{version}", files(version), dropin_of(version)
    # pg_hba.conf is re-read on reload, which no process start records: it is left out of the "stale" check.
    facts = read_component_host("db", host_part(s.host), unit, package, list(managed.values()), (dropin,),
                                unread=(managed["hba"],))
    address, problems = bind_address(s.db_bind_address, "db_bind_address", s.host, facts)
    gateways, trouble = gateway_addresses(plan.fleet, resolves)
    todo, drift = migrations.pending(pg["migrations"])
    refuse("db", problems + trouble + drift)
    installed_now = not facts["versions"][package]
    if installed_now:
        apt.packages(name=f"Install PostgreSQL {version} (OS package {package})", packages=[package], update=True)
    elif not pg["answers"]:
        host.log("PostgreSQL does not answer now: the role, database and migrations are planned as if missing "
                 "and checked again when they run", logger.warning)
    contents = {"conf": _env.get_template("hx-gateway.conf.j2").render(d=s, bind_address=address),
                "hba": _env.get_template("pg_hba.conf.j2").render(d=s, gateways=gateways),
                "hardening": _env.get_template("hardening.conf.j2").render()}
    batch = tuple(managed.values())
    ensure_directory(dropin, facts["directories"])
    ops = {key: managed_file(name=f"PostgreSQL {file.path}", file=file, content=contents[key], batch=batch)
           for key, file in managed.items()}
    reload_units(managed["hardening"], ops["hardening"], facts["units"][unit], "PostgreSQL")
    restart = ops["conf"].will_change or ops["hardening"].will_change
    activate(unit, facts["units"][unit], list(ops.values()), reload=not restart,
             check=ANSWERS.format(port=s.db_port, unit=unit), check_name=f"PostgreSQL answers on port {s.db_port}",
             installed_now=installed_now)
    database(s, plan.password, pg, todo)
    if plan.fleet.monitor and not pg["monitor_role"]:
        changes.record("database", f"role {MONITOR_ROLE}", "create: the exporter's (login over the local socket, "
                                                          "pg_monitor only)")
        run_sql(name=f"PostgreSQL role {MONITOR_ROLE} for the exporter (peer login on the local socket, pg_monitor)",
                sql=monitor_role_sql(), port=s.db_port)


def database(s: DbSettings, password: SecretText, pg: dict, todo: list[migrations.Migration]) -> None:
    """The role, the database, the migrations and the role's privileges, where the facts say they differ."""
    role = pg["role"]
    if not (role and role["login"] and not role["superuser"] and matches(password.reveal(), role)):
        what = "create" if not role else "password or attributes changed"
        changes.record("database", f"role {s.db_user}", f"{what} (password hidden)", secret=True)
        run_sql(name=f"PostgreSQL role {s.db_user}: {what} (the password goes as a SCRAM verifier, hidden)",
                sql=role_sql(s, password, bool(role)), port=s.db_port)
    if not pg["database"]:
        changes.record("database", f"database {s.db_name}", "create (owned by postgres, closed to PUBLIC)")
        run_sql(name=f"Create database {s.db_name} (owned by postgres, closed to PUBLIC)", sql=database_sql(s),
                port=s.db_port)
    for migration in todo:
        changes.record("migration", migration.version, "apply (one transaction)", diff=migration.sql)
        run_sql(name=f"Apply migration {migration.version} to {s.db_name} (one transaction)", sql=migration.script(),
                port=s.db_port, database=s.db_name, single_transaction=True)
    if todo or not role or not (pg["role_may_connect"] and pg["role_may_insert"]):
        changes.record("database", f"privileges of {s.db_user}", "connect, insert usage rows (nothing else)")
        run_sql(name=f"Role {s.db_user} may connect to {s.db_name} and insert usage rows (nothing else)",
                sql=grants_sql(s), port=s.db_port, database=s.db_name)
