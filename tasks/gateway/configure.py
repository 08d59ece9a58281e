"""Configure: config.yaml, the secret env file, the auth, speed-ups and usage modules, the client key digests;
with TLS, the certificate chain, its key (a secret) and the CA in the host's trust store."""

from __future__ import annotations

from pyinfra.api import deploy

from hx_gateway.model.fleet import Fleet
from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import Settings
from hx_gateway.model.tls import TlsMaterial
from hx_gateway.pyinfra_ext import render
from hx_gateway.pyinfra_ext.fact_cache import cached_fact
from hx_gateway.pyinfra_ext.facts import FileStates
from hx_gateway.pyinfra_ext.operations import (
    SecretText,
    certificate_change,
    ensure_directory,
    file_states_arguments,
    managed_file,
    refresh_trust_store,
    remove_if_present,
)


@deploy("Configure")
def configure(settings: Settings, secrets: Secrets, litellm_version: str, facts: dict,
              fleet: Fleet | None = None, tls: TlsMaterial | None = None, ca_pem: str = "") -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    fleet = fleet or Fleet()
    managed = render.managed_files(settings)
    batch = tuple(render.files_read(settings))
    ensure_directory(render.managed_directories(settings)["config"], facts["directories"])
    contents: dict[str, str | SecretText] = {
        "config": render.render_config(settings, litellm_version, fleet.redis, fleet.db, fleet.monitor is not None),
        "auth": render.python_module("hx_auth"),
        "speedups": render.python_module("hx_speedups"),
        "start": render.python_module("hx_start"),
        "usage": render.python_module("hx_usage"),
        "keys": render.render_client_keys(settings, secrets),
        "env": SecretText(render.render_env(secrets, fleet.redis, fleet.db)),
    }
    labels = {"config": "Render", "auth": "Auth module", "speedups": "Speed-ups module", "start": "Start module",
              "usage": "Usage recorder module", "keys": "Client key digests",
              "env": "Secret env file"}
    if tls:
        contents.update(tls_chain=tls.chain_pem, tls_key=tls.key, tls_policy=render.static_file("openssl.cnf"))
        labels.update(tls_chain=f"TLS certificate ({tls.certificate.describe()})", tls_key="TLS private key",
                      tls_policy="TLS protocols and ciphers")
    if "ca" in managed:
        contents["ca"], labels["ca"] = ca_pem, "The operator's CA for the trust store"
    about = {"tls_chain": certificate_change(managed["tls_chain"], tls, batch)} if tls else {}
    ops = {}
    for key, content in contents.items():
        file = managed[key]
        hidden = " (contents hidden)" if file.secret else ""
        ops[file.name] = managed_file(name=f"{labels[key]} {file.path}{hidden}", file=file, content=content,
                                      batch=batch, about=about.get(key, ""))
    states = cached_fact(FileStates, **file_states_arguments(list(batch)))
    ops.update(remove_if_present(render.leftover_files(settings), states, "TLS or its CA no longer declared"))
    refresh_trust_store(ops.pop(render.CA.name, None))  # the service never reads the CA: no restart for it
    return ops
