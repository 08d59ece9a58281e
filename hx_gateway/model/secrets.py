"""Secrets come from the operator: environment variables, or a 0600 dotenv file outside the repo.

They never travel through pyinfra host data (which `-v` may print); tasks receive a `Secrets`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hx_gateway.model.settings import Settings, SettingsError

MASTER_KEY_ENV = "HX_MASTER_KEY"
SECRETS_FILE_ENV = "HX_SECRETS_FILE"
# The key printed in the seed documents: public, so never acceptable outside the lab.
DOCUMENTATION_KEY = "sk-1234567890abcdef-test-key-please-replace"
MIN_KEY_LENGTH = 32
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Secrets:
    master_key: str
    client_keys: Mapping[str, str] = field(default_factory=dict)

    def all_values(self) -> list[str]:
        """Every secret, for redaction and for tests that grep output."""
        return [self.master_key, *self.client_keys.values()]

    def __repr__(self) -> str:  # never print values, even by accident
        return f"Secrets(master_key=<hidden>, client_keys={sorted(self.client_keys)})"


def key_digest(value: str) -> str:
    """How a key is stored on the target: sha256 hex, never the key itself."""
    return hashlib.sha256(value.encode()).hexdigest()


def parse_dotenv(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
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
    mode = stat.S_IMODE(resolved.stat().st_mode)
    if mode & 0o077:
        problems.append(f"secrets file {path}: mode {mode:04o} lets others read it; run `chmod 600 {path}`")
        return {}
    return parse_dotenv(resolved.read_text())


def load_secrets(settings: Settings, environ: Mapping[str, str] | None = None) -> Secrets:
    """Environment first, then the secrets file; validate strength outside the lab."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    file_name = environ.get(SECRETS_FILE_ENV) or settings.secrets_file
    from_file = _read_secrets_file(Path(os.path.expanduser(file_name)), problems) if file_name else {}

    def lookup(name: str) -> str:
        return environ.get(name) or from_file.get(name) or ""

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
    if problems:
        raise SettingsError(problems)
    return Secrets(master, client_values)


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
