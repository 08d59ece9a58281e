"""Secrets come from the operator: environment variables, or a 0600 dotenv file outside the repo.

They never travel through pyinfra host data (which `-v` may print); tasks receive a `Secrets`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hx_gateway.model.settings import Settings, SettingsError

MASTER_KEY_ENV = "HX_MASTER_KEY"
REDIS_PASSWORD_ENV = "HX_REDIS_PASSWORD"
DB_PASSWORD_ENV = "HX_DB_PASSWORD"
# Values people paste from examples: never acceptable as a service's password.
PLACEHOLDER_WORDS = ("changeme", "change-me", "password", "placeholder", "replace", "example", "secret", "redis",
                     "postgres")
SECRETS_FILE_ENV = "HX_SECRETS_FILE"
# The key printed in the seed documents: public, so never acceptable outside the lab.
DOCUMENTATION_KEY = "sk-1234567890abcdef-test-key-please-replace"
MIN_KEY_LENGTH = 32
REPO_ROOT = Path(__file__).resolve().parents[2]


class SecretText:
    """A string that pyinfra may hash or label but never print."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


@dataclass(frozen=True)
class Secrets:
    master_key: str
    client_keys: Mapping[str, str] = field(default_factory=dict)
    redis_password: str = ""  # only when the inventory has a `redis` host
    db_password: str = ""  # only when the inventory has a `db` host

    def all_values(self) -> list[str]:
        """Every secret, for redaction and for tests that grep output."""
        return [self.master_key, *self.client_keys.values(), *(v for v in (self.redis_password, self.db_password) if v)]

    def __repr__(self) -> str:  # never print values, even by accident
        return (f"Secrets(master_key=<hidden>, client_keys={sorted(self.client_keys)}, redis_password=<hidden>, "
                f"db_password=<hidden>)")


def key_digest(value: str) -> str:
    """How a key is stored on the target: sha256 hex, never the key itself."""
    return hashlib.sha256(value.encode()).hexdigest()


def parse_dotenv(text: str, malformed: list[int] | None = None) -> dict[str, str]:
    """NAME=value lines (`export ` and quotes allowed; # comments). `malformed` collects the numbers
    of the lines that are neither (never their text: it may hold a key)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        if not equals or not name:
            if malformed is not None:
                malformed.append(number)
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def _read_secrets_file(path: Path, problems: list[str]) -> dict[str, str]:
    if not path.exists():
        return {}
    resolved = path.resolve()
    if resolved.is_relative_to(REPO_ROOT):
        problems.append(f"secrets file {path}: lies inside the repository; move it out (e.g. ~/.config/hx-gateway/)")
        return {}
    if not resolved.is_file():
        problems.append(f"secrets file {path}: is not a file; point {SECRETS_FILE_ENV} at the file of NAME=value lines")
        return {}
    mode = stat.S_IMODE(resolved.stat().st_mode)
    if mode & 0o077:
        problems.append(f"secrets file {path}: mode {mode:04o} lets others read it; run `chmod 600 {path}`")
        return {}
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        problems.append(f"secrets file {path}: cannot be read as UTF-8 text ({type(error).__name__}); write it "
                        f"as NAME=value lines")
        return {}
    malformed: list[int] = []
    values = parse_dotenv(text, malformed)
    if malformed:
        problems.append(f"secrets file {path}: line(s) {', '.join(map(str, malformed))} are not NAME=value (a "
                        f"comment starts with #); fix them, or a key written there would be missing")
    return values


def _lookup(settings: Settings, environ: Mapping[str, str], problems: list[str]) -> Callable[[str], str]:
    """Environment first, then the secrets file."""
    file_name = environ.get(SECRETS_FILE_ENV) or settings.secrets_file
    from_file = _read_secrets_file(Path(os.path.expanduser(file_name)), problems) if file_name else {}
    return lambda name: environ.get(name) or from_file.get(name) or ""


def load_secrets(settings: Settings, environ: Mapping[str, str] | None = None, with_redis: bool = False,
                 with_db: bool = False) -> Secrets:
    """Environment first, then the secrets file; validate strength outside the lab. `with_redis` /
    `with_db`: the inventory has a `redis` / `db` host, so the gateways need its password
    (`service_password_problems`)."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    lookup = _lookup(settings, environ, problems)
    master = lookup(MASTER_KEY_ENV)
    problems += _key_problems(MASTER_KEY_ENV, master, settings.is_lab)
    client_values: dict[str, str] = {}
    for key in settings.client_keys:
        value = lookup(key.env_name)
        problems += _key_problems(f"{key.env_name} (client key {key.name!r})", value, settings.is_lab)
        if value and value == master:
            problems.append(f"{key.env_name}: equals the master key; give each client its own key")
        client_values[key.name] = value
    if len(set(client_values.values())) != len(client_values):
        problems.append("client keys: two client keys share a value; give each its own")
    # Checked once for all gateways: fleet_plans (service_password_problems).
    redis_password = lookup(REDIS_PASSWORD_ENV) if with_redis else ""
    db_password = lookup(DB_PASSWORD_ENV) if with_db else ""
    if problems:
        raise SettingsError(problems)
    return Secrets(master, client_values, redis_password, db_password)


GENERATE_PASSWORD = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def service_password_problems(secrets: Secrets, group: str) -> list[str]:
    """The `redis` or `db` group's password: the master key's rules, in the lab too (the lab generates
    its own), no placeholder, none shared with another secret; the database's in printable ASCII
    (PostgreSQL would hash other text after its own normalisation, which the deploy does not repeat)."""
    redis = group == "redis"
    env, value, other = ((REDIS_PASSWORD_ENV, secrets.redis_password, secrets.db_password) if redis
                         else (DB_PASSWORD_ENV, secrets.db_password, secrets.redis_password))
    others = [secrets.master_key, *secrets.client_keys.values(), other]
    return own_secret_problems(f"{env} (the `{group}` group's password)", value, others, f"the `{group}` group",
                               printable_ascii=True)


def own_secret_problems(label: str, value: str, others: list[str], owner: str, printable_ascii: bool = False
                        ) -> list[str]:
    """A service's own secret (a password, a signing key): the master key's rules, in the lab too, no
    placeholder, none shared with `others`; `printable_ascii` where the service would hash other text."""
    if value and any(word in value.lower() for word in PLACEHOLDER_WORDS) and len(set(value)) < 20:
        return [f"{label}: looks like a placeholder; generate one: {GENERATE_PASSWORD}"]
    if value and value in others:
        return [f"{label}: equals another key or password; give {owner} its own"]
    if printable_ascii and value and not (value.isascii() and value.isprintable()):
        return [f"{label}: use printable ASCII only; generate one: {GENERATE_PASSWORD}"]
    return _key_problems(label, value, is_lab=False)


def _key_problems(label: str, value: str, is_lab: bool) -> list[str]:
    if not value:
        return [f"{label}: missing; export {label.split()[0]}=... or put it in the secrets file "
                f"(generate one: python3 -c 'import secrets; print(\"sk-\" + secrets.token_urlsafe(32))')"]
    if value == DOCUMENTATION_KEY:
        return [f"{label}: is the documentation placeholder key, which is public; generate a new one"]
    if any(c.isspace() for c in value):
        return [f"{label}: contains white space; generate a new key"]
    if not is_lab and len(value) < MIN_KEY_LENGTH:
        return [f"{label}: only {len(value)} characters; use at least {MIN_KEY_LENGTH} outside the lab"]
    return []


def derived_secret(secret: str, purpose: str) -> SecretText:
    """A secret for one purpose, made from an operator's secret (HMAC-SHA256): the Redis exporter's
    password from the gateways' Redis password. It changes when that secret does; it never leaves the
    host that uses it, and knowing it tells nothing of the secret it came from."""
    return SecretText(hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest())
