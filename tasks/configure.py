"""Configure: config.yaml, the secret env file, the auth module and the client key digests."""

from __future__ import annotations

from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files

from hx_gateway import render
from hx_gateway.operations import SecretText, secret_file
from hx_gateway.secrets import Secrets
from hx_gateway.settings import Settings


@deploy("Configure")
def configure(settings: Settings, secrets: Secrets, litellm_version: str) -> list:
    """Returns the operations whose change means the service must restart."""
    owner = {"user": "root", "group": settings.service_group}
    files.directory(name=f"Directory {settings.config_dir}", path=settings.config_dir, mode="750", **owner)
    config = files.put(name=f"Render {settings.path('config.yaml')}",
                       src=StringIO(render.render_config(settings, litellm_version)),
                       dest=settings.path("config.yaml"), mode="640", **owner)
    auth = files.put(name=f"Auth module {settings.path('hx_auth.py')}", src=StringIO(render.auth_module()),
                     dest=settings.path("hx_auth.py"), mode="640", **owner)
    keys = files.put(name=f"Client key digests {settings.path('client_keys.json')}",
                     src=StringIO(render.render_client_keys(settings, secrets)),
                     dest=settings.path("client_keys.json"), mode="640", **owner)
    env = secret_file(name=f"Secret env file {settings.path('litellm.env')} (contents hidden)",
                      dest=settings.path("litellm.env"), content=SecretText(render.render_env(secrets)))
    return [config, auth, keys, env]
