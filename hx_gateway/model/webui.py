"""The `webui` group (one host): Open WebUI, a client of the gateways on a client key of its own.

Its knobs, with defaults: group_data/webui.py. Its secrets, from the environment or the secrets file
like the master key: HX_WEBUI_SECRET_KEY (signs its sessions: stable, or every user is logged out)
and HX_WEBUI_ADMIN_PASSWORD (the first admin's, created once at its first start); its key to the
gateway is the client key `webui_client_key` names (HX_CLIENT_KEY_<NAME>), never the master key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from hx_gateway.model.fleet import LbSettings, _bind_address_problems, _missing, host_part
from hx_gateway.model.secrets import Secrets, _lookup, own_secret_problems
from hx_gateway.model.settings import Settings, _int, _problems_for_url

SECRET_KEY_ENV = "HX_WEBUI_SECRET_KEY"
ADMIN_PASSWORD_ENV = "HX_WEBUI_ADMIN_PASSWORD"
# Open WebUI's own rule for an account's e-mail (utils/misc.py: validate_email_format).
EMAIL_RE = re.compile(r"^[^@\s]+@([^@\s]+\.[^@\s]+|localhost)$")


@dataclass(frozen=True)
class WebuiSettings:
    host: str  # inventory name
    webui_port: int
    webui_bind_address: str | None
    webui_url: str  # what users open (None in the data: http://<inventory name>:<port>)
    webui_client_key: str
    webui_admin_email: str
    webui_venv_root: str
    webui_data_dir: str


WEBUI_KNOBS = tuple(f.name for f in fields(WebuiSettings) if f.name != "host")


@dataclass(frozen=True)
class WebuiClient:
    """What Open WebUI offers and where it asks, from the gateways' settings."""

    gateway_url: str  # the balancers' URL where there are any, else the first gateway's
    chat_models: tuple[str, ...]  # the key's chat aliases and groups: its model list
    embedding_model: str  # the key's first embedding alias: RAG embeds through the gateway
    ca_bundle: str | None  # the operator's CA, when the gateway URL is HTTPS with it


@dataclass(frozen=True)
class WebuiSecrets:
    client_key: str
    secret_key: str
    admin_password: str

    def all_values(self) -> list[str]:
        return [self.client_key, self.secret_key, self.admin_password]

    def __repr__(self) -> str:
        return "WebuiSecrets(<hidden>)"


def load_webui(name: str, data: Mapping[str, Any]) -> tuple[WebuiSettings | None, list[str]]:
    problems = _missing(data, WEBUI_KNOBS, "webui")
    if problems:
        return None, problems
    bind = data["webui_bind_address"]
    problems += _bind_address_problems(bind, "webui_bind_address", "Open WebUI")
    email = data["webui_admin_email"]
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        problems.append(f"webui_admin_email: {email!r} is not an e-mail address Open WebUI accepts; write e.g. "
                        f"admin@example.org (or admin@localhost)")
    for knob, example in (("webui_venv_root", "/opt/open-webui"), ("webui_data_dir", "/var/lib/open-webui")):
        value = data[knob]
        if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") in (
                "", "/usr", "/etc", "/opt", "/var", "/var/lib", "/srv", "/home"):
            problems.append(f"{knob}: {value!r} must be an absolute path of its own, e.g. {example}")
    key = data["webui_client_key"]
    if not isinstance(key, str) or not key:
        problems.append(f"webui_client_key: {key!r} must name one of client_keys (group_data/all.py)")
    port = _int(data, "webui_port", 1, 65535, problems)
    url = data["webui_url"] or f"http://{host_part(name)}:{port}"
    problems += [p.replace("http://host:11434", "http://webui-host:8080") for p in _problems_for_url(url, "webui_url")]
    settings = WebuiSettings(name, port, bind, str(url).rstrip("/"), str(key), str(email),
                             str(data["webui_venv_root"]).rstrip("/"), str(data["webui_data_dir"]).rstrip("/"))
    return settings, problems


def webui_client(webui: WebuiSettings, gateway: Settings, lbs: tuple[LbSettings, ...]
                 ) -> tuple[WebuiClient | None, list[str]]:
    """What the key `webui_client_key` lets Open WebUI offer: every chat alias and group it may use
    (none: refused, Open WebUI would offer nothing), and an embedding alias for RAG (none: refused,
    offline it could embed nothing)."""
    keys = {k.name: k for k in gateway.client_keys}
    key = keys.get(webui.webui_client_key)
    if key is None:
        return None, [f"webui_client_key: {webui.webui_client_key!r} is not in client_keys (it has "
                      f"{', '.join(keys) or 'none'}); declare a key for Open WebUI there (group_data/all.py) and "
                      f"name it here"]
    allowed = set(key.models or gateway.public_models)
    kinds = {a.name: a.kind for a in gateway.model_aliases}
    chat = tuple(m for m in gateway.public_models if m in allowed and kinds.get(m, "chat") == "chat")
    embedding = [a.name for a in gateway.model_aliases if a.kind == "embedding" and a.name in allowed]
    problems = []
    if not chat:
        problems.append(f"webui_client_key: client key {key.name!r} may use no chat alias or group "
                        f"({', '.join(key.models)}), so Open WebUI would offer nothing; add chat aliases to its models")
    if not embedding:
        problems.append(f"webui_client_key: client key {key.name!r} may use no embedding alias; Open WebUI embeds "
                        f"documents through the gateway (it fetches no model itself): add one to its models")
    url = lbs[0].lb_url if lbs else gateway.gateway_url
    return WebuiClient(url, chat, embedding[0] if embedding else "", gateway.ca_bundle), problems


def load_webui_secrets(gateway: Settings, gateway_secrets: Secrets, client_key: str,
                       environ: Mapping[str, str] | None = None) -> tuple[WebuiSecrets | None, list[str]]:
    """Its two secrets (the master key's rules, in the lab too; none shared with another secret)
    and its client key's value (checked with the gateways' keys)."""
    problems: list[str] = []
    lookup = _lookup(gateway, os.environ if environ is None else environ, problems)
    values = {env: lookup(env) for env in (SECRET_KEY_ENV, ADMIN_PASSWORD_ENV)}
    others = [gateway_secrets.master_key, *gateway_secrets.client_keys.values(), gateway_secrets.redis_password,
              gateway_secrets.db_password]
    for env, value in values.items():
        label = f"{env} (Open WebUI's {'session signing key' if env == SECRET_KEY_ENV else 'first admin password'})"
        problems += own_secret_problems(label, value, others, "Open WebUI")
    if values[SECRET_KEY_ENV] and values[SECRET_KEY_ENV] == values[ADMIN_PASSWORD_ENV]:
        problems.append(f"{ADMIN_PASSWORD_ENV}: equals {SECRET_KEY_ENV}; give each its own")
    key = gateway_secrets.client_keys.get(client_key, "")
    if problems:
        return None, problems
    return WebuiSecrets(key, values[SECRET_KEY_ENV], values[ADMIN_PASSWORD_ENV]), []
