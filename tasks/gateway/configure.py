"""Configure: config.yaml, the secret env file, the auth and speed-ups modules, the client key digests;
with TLS, the certificate chain, its key (a secret) and the CA in the host's trust store."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server

from hx_gateway.model.fleet import RedisSettings
from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import Settings
from hx_gateway.model.tls import TlsMaterial, change_of
from hx_gateway.pyinfra_ext import changes, render
from hx_gateway.pyinfra_ext.fact_cache import cached_fact
from hx_gateway.pyinfra_ext.facts import FileStates
from hx_gateway.pyinfra_ext.operations import SecretText, ensure_directory, file_states_arguments, managed_file
from hx_gateway.pyinfra_ext.render import ManagedFile


@deploy("Configure")
def configure(settings: Settings, secrets: Secrets, litellm_version: str, facts: dict,
              redis: RedisSettings | None = None, tls: TlsMaterial | None = None) -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    managed = render.managed_files(settings)
    batch = tuple(render.files_read(settings))
    ensure_directory(render.managed_directories(settings)["config"], facts["directories"])
    contents: dict[str, str | SecretText] = {
        "config": render.render_config(settings, litellm_version, redis),
        "auth": render.python_module("hx_auth"),
        "speedups": render.python_module("hx_speedups"),
        "keys": render.render_client_keys(settings, secrets),
        "env": SecretText(render.render_env(secrets, redis)),
    }
    labels = {"config": "Render", "auth": "Auth module", "speedups": "Speed-ups module", "keys": "Client key digests",
              "env": "Secret env file"}
    if tls:
        contents.update(tls_chain=tls.chain_pem, tls_key=tls.key, tls_policy=render.static_file("openssl.cnf"),
                        **({"ca": tls.ca_pem} if "ca" in managed else {}))
        labels.update(tls_chain=f"TLS certificate ({tls.certificate.describe()})", tls_key="TLS private key",
                      tls_policy="TLS protocols and ciphers", ca="The operator's CA for the trust store")
    about = {"tls_chain": certificate_change(managed["tls_chain"], tls, batch)} if tls else {}
    ops = {}
    for key, content in contents.items():
        file = managed[key]
        hidden = " (contents hidden)" if file.secret else ""
        ops[file.name] = managed_file(name=f"{labels[key]} {file.path}{hidden}", file=file, content=content,
                                      batch=batch, about=about.get(key, ""))
    ops.update(remove_leftovers(settings, batch))
    # The trust store the host's own clients read (curl, Python's ssl) is rebuilt from the CA file.
    ca = ops.get(render.CA_FILE.rsplit("/", 1)[-1])
    if ca is not None and ca.will_change:
        server.shell(name="update-ca-certificates (the operator's CA changed)",
                     commands=["update-ca-certificates"], _if=ca.did_change)
    return ops


def certificate_change(chain: ManagedFile, tls: TlsMaterial, batch: tuple[ManagedFile, ...]) -> str:
    """"certificate: serial A, expires ... -> serial B, expires ...", for the preview and the ticket."""
    seen = cached_fact(FileStates, **file_states_arguments(list(batch))).get(chain.path, {})
    if not seen.get("exists"):
        return change_of("", tls.certificate)
    return change_of(seen.get("text"), tls.certificate)  # no text without --diff


def remove_leftovers(settings: Settings, batch: tuple[ManagedFile, ...]) -> dict:
    """TLS switched off (or the CA no longer given): what an earlier deploy wrote for it goes, the
    private key first of all. Planned only for the files present (read with the others)."""
    states = cached_fact(FileStates, **file_states_arguments(list(batch)))
    ops = {}
    for file in render.leftover_files(settings):
        if states.get(file.path, {}).get("exists"):
            changes.record("file", file.path, "remove (no longer declared)", secret=file.secret)
            ops[file.name] = files.file(name=f"Remove {file.path} (TLS or its CA no longer declared)", path=file.path,
                                        present=False)
    return ops
