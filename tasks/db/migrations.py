"""The usage database's schema: versioned SQL files (templates/db/migrations/NNNN_what.sql), each applied
once, in order, in one transaction with the row that records it (hx_schema_migrations: version and
sha256). An applied migration is never edited: a change of schema is a new file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hx_gateway.host.postgres import MIGRATIONS_TABLE
from hx_gateway.pyinfra_ext.render import TEMPLATES

MIGRATIONS_DIR = TEMPLATES / "db" / "migrations"


@dataclass(frozen=True)
class Migration:
    version: str  # the file's name without .sql: "0001_usage_requests"
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def script(self) -> str:
        """The migration and its record, for one transaction (psql --single-transaction)."""
        # Skipped when it is applied by the time it runs (planned while the server did not answer).
        return (f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version text PRIMARY KEY, sha256 text NOT NULL, "
                f"applied_at timestamptz NOT NULL DEFAULT now());\n"
                f"SELECT NOT EXISTS (SELECT FROM {MIGRATIONS_TABLE} WHERE version = '{self.version}') "
                f"AS hx_todo \\gset\n"
                f"\\if :hx_todo\n{self.sql}\n"
                f"INSERT INTO {MIGRATIONS_TABLE} (version, sha256) VALUES ('{self.version}', '{self.sha256}');\n"
                f"\\endif\n")


def migrations() -> list[Migration]:
    return [Migration(path.stem, path.read_text()) for path in sorted(MIGRATIONS_DIR.glob("*.sql"))]


def pending(applied: dict[str, str], known: list[Migration] | None = None) -> tuple[list[Migration], list[str]]:
    """The migrations still to apply, in order, and the problems: an applied migration whose file
    changed since, or that this project does not have (a newer checkout applied it)."""
    known = migrations() if known is None else known
    by_version = {m.version: m for m in known}
    problems = []
    for version, digest in applied.items():
        if version not in by_version:
            problems.append(f"migration {version} is applied in the database but not in templates/db/migrations/: "
                            f"deploy from the checkout that has it")
        elif by_version[version].sha256 != digest:
            problems.append(f"templates/db/migrations/{version}.sql changed after it was applied; put it back and "
                            f"add the change as a new migration")
    return [m for m in known if m.version not in applied], problems
