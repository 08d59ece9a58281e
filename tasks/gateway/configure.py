"""Configure: config.yaml, the secret env file, the auth and speed-ups modules, the client key digests."""

from __future__ import annotations

from pyinfra.api import deploy

from hx_gateway.model.fleet import RedisSettings
from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import render
from hx_gateway.pyinfra_ext.operations import SecretText, ensure_directory, managed_file


@deploy("Configure")
def configure(settings: Settings, secrets: Secrets, litellm_version: str, facts: dict,
              redis: RedisSettings | None = None) -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    managed = render.managed_files(settings)
    batch = tuple(managed.values())
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
    ops = {}
    for key, content in contents.items():
        file = managed[key]
        hidden = " (contents hidden)" if file.secret else ""
        ops[file.path.rsplit("/", 1)[-1]] = managed_file(name=f"{labels[key]} {file.path}{hidden}", file=file,
                                                         content=content, batch=batch)
    return ops
