"""Configure: config.yaml, the secret env file, the auth module and the client key digests."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files

from hx_gateway import render
from hx_gateway.operations import SecretText, managed_file
from hx_gateway.secrets import Secrets
from hx_gateway.settings import Settings


@deploy("Configure")
def configure(settings: Settings, secrets: Secrets, litellm_version: str) -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    managed = render.managed_files(settings)
    batch = tuple(managed.values())
    files.directory(name=f"Directory {settings.config_dir}", path=settings.config_dir, user="root",
                    group=settings.service_group, mode="750")
    contents: dict[str, str | SecretText] = {
        "config": render.render_config(settings, litellm_version),
        "auth": render.auth_module(),
        "keys": render.render_client_keys(settings, secrets),
        "env": SecretText(render.render_env(secrets)),
    }
    labels = {"config": "Render", "auth": "Auth module", "keys": "Client key digests", "env": "Secret env file"}
    ops = {}
    for key, content in contents.items():
        file = managed[key]
        hidden = " (contents hidden)" if file.secret else ""
        ops[file.path.rsplit("/", 1)[-1]] = managed_file(name=f"{labels[key]} {file.path}{hidden}", file=file,
                                                         content=content, batch=batch)
    return ops
