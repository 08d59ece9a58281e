"""Render the files the deploy puts on a gateway host. Pure functions of settings (and secrets)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jinja2

from hx_gateway.model.fleet import DbSettings, RedisSettings
from hx_gateway.model.secrets import Secrets, key_digest
from hx_gateway.model.settings import ModelAlias, Settings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
TEMPLATE_DIR = TEMPLATES / "gateway"


def template_environment(component: str) -> jinja2.Environment:
    """Jinja for templates/<component>/: strict (an unknown name is an error), lines kept as written."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES / component)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True, autoescape=False)


_env = template_environment("gateway")


@dataclass(frozen=True)
class ManagedFile:
    """A file the deploy owns: where it lives, who owns it, and whether its contents are secret."""

    path: str
    user: str
    group: str
    mode: str
    secret: bool = False
    dotenv: bool = False  # a secret of NAME=value lines: a change says which names changed

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ManagedDirectory:
    """A directory the deploy owns, with owner and mode."""

    path: str
    user: str
    group: str
    mode: str

    def matches(self, seen: dict | None) -> bool:
        """`seen`: what the GatewayHost fact read (None: missing)."""
        return seen == {"is_dir": True, "user": self.user, "group": self.group, "mode": self.mode}


UNIT_DIR = "/etc/systemd/system"
CACHE_ON_TARGET = "/var/cache/hx-gateway"  # the uploaded wheelhouse, removed after the install


def managed_files(settings: Settings) -> dict[str, ManagedFile]:
    """Every file the deploy writes, with owner and mode: the one place they are declared.

    The service reads the config files as group `litellm`; the env file holds the master key and
    only root reads it (systemd passes it to the service).
    """
    readable = {"user": "root", "group": settings.service_group, "mode": "640"}
    return {
        "config": ManagedFile(settings.path("config.yaml"), **readable),
        "auth": ManagedFile(settings.path("hx_auth.py"), **readable),
        "speedups": ManagedFile(settings.path("hx_speedups.py"), **readable),
        "start": ManagedFile(settings.path("hx_start.py"), **readable),
        # Loaded only when config.yaml lists hx_usage.recorder (a `db` host exists).
        "usage": ManagedFile(settings.path("hx_usage.py"), **readable),
        "keys": ManagedFile(settings.path("client_keys.json"), **readable),
        "env": ManagedFile(settings.path("litellm.env"), "root", "root", "600", secret=True, dotenv=True),
        "unit": ManagedFile(f"{UNIT_DIR}/{settings.service_name}.service", "root", "root", "644"),
        **tls_files(settings),
    }


# The operator's CA in Debian's trust store (update-ca-certificates reads *.crt here).
CA_FILE = "/usr/local/share/ca-certificates/hx-gateway-ca.crt"
CA = ManagedFile(CA_FILE, "root", "root", "644")


def tls_files(settings: Settings, every: bool = False) -> dict[str, ManagedFile]:
    """With TLS served here: the certificate chain, its key and the TLS policy, read by the service only
    (group `litellm`; the key is a secret: never shown, not even by name). With `ca_bundle`: the CA,
    for the host's trust store. `every`: all of them, whatever is declared (to find leftovers)."""
    readable = {"user": "root", "group": settings.service_group, "mode": "640"}
    files = {}
    if settings.tls or every:
        files.update(tls_chain=ManagedFile(settings.path("tls-chain.pem"), **readable),
                     tls_key=ManagedFile(settings.path("tls-key.pem"), **readable, secret=True),
                     tls_policy=ManagedFile(settings.path("openssl.cnf"), **readable))
    if settings.ca_bundle or every:
        files["ca"] = CA
    return files


def leftover_files(settings: Settings) -> list[ManagedFile]:
    """Files an earlier deploy wrote for a part now switched off (TLS, the CA): removed if present."""
    managed = {f.path for f in managed_files(settings).values()}
    return [f for f in tls_files(settings, every=True).values() if f.path not in managed]


def files_read(settings: Settings) -> list[ManagedFile]:
    """What one FileStates reading covers: the managed files and the leftovers (one round trip)."""
    return [*managed_files(settings).values(), *leftover_files(settings)]


def managed_directories(settings: Settings) -> dict[str, ManagedDirectory]:
    """Every directory the deploy creates: the one place they are declared. The service reads its
    config directory as group `litellm`; nothing under the venv root is writable by it."""
    return {
        "venv_root": ManagedDirectory(settings.venv_root, "root", "root", "755"),
        "venvs": ManagedDirectory(f"{settings.venv_root}/venvs", "root", "root", "755"),
        "cache": ManagedDirectory(CACHE_ON_TARGET, "root", "root", "755"),
        "config": ManagedDirectory(settings.config_dir, "root", settings.service_group, "750"),
    }


@dataclass(frozen=True)
class Deployment:
    """One router entry: a public model name served by one alias on one backend."""

    name: str
    alias: ModelAlias
    backend: str
    chat_route: str

    @property
    def model(self) -> str:
        return self.alias.route(self.chat_route)

    @property
    def api_base(self) -> str:
        return f"{self.backend}/v1" if self.model.startswith("openai/") else self.backend

    @property
    def needs_placeholder_key(self) -> bool:
        return self.model.startswith("openai/")  # the OpenAI client insists on a key; Ollama ignores it


def deployments(settings: Settings) -> list[Deployment]:
    """Each alias once per backend; each group once per member alias and backend."""
    by_name = {a.name: a for a in settings.model_aliases}
    route = settings.chat_route
    entries = [Deployment(a.name, a, b, route) for a in settings.model_aliases for b in a.backends]
    for group, members in settings.model_groups.items():
        entries += [Deployment(group, by_name[m], b, route) for m in members for b in by_name[m].backends]
    return entries


def render_config(settings: Settings, litellm_version: str, redis: RedisSettings | None = None,
                  db: DbSettings | None = None, metrics: bool = False) -> str:
    """`redis`: the inventory's Redis host, where the router shares its state (cooldowns, load); `db`:
    its usage database (the recorder callback is listed only then); `metrics`: a `monitor` host
    scrapes LiteLLM's `prometheus` callback."""
    return _env.get_template("config.yaml.j2").render(
        s=settings, deployments=deployments(settings), litellm_version=litellm_version, redis=redis, db=db,
        metrics=metrics, excluded_labels=METRICS_EXCLUDED_LABELS,
    )


# Labels the gateway's metrics never carry: a digest of the key (the key name is `api_key_alias`),
# and per-client values that would make a series per caller.
METRICS_EXCLUDED_LABELS = ("hashed_api_key", "client_ip", "user_agent", "end_user", "user_email")


def metrics_directory(settings: Settings) -> str:
    """Where every worker writes its samples (prometheus_client's multiprocess mode) and the metrics
    process reads them: under the unit's runtime directory, gone when it stops."""
    return f"/run/{settings.service_name}/prometheus"


def render_env(secrets: Secrets, redis: RedisSettings | None = None, db: DbSettings | None = None) -> str:
    """The master key; with a Redis host, where it is and the gateways' ACL user and password (LiteLLM's
    own REDIS_* names, which its router reads; the auth module reads the same); with a `db` host, where
    the usage recorder writes (HX_USAGE_*: never DATABASE_URL, which would switch LiteLLM's own
    database mode on)."""
    return _env.get_template("litellm.env.j2").render(master_key=secrets.master_key, redis=redis,
                                                      redis_password=secrets.redis_password, db=db,
                                                      db_password=secrets.db_password)


def ip_allow_list(settings: Settings, backend_addresses: list[str]) -> list[str]:
    """Peers the service may talk to when allow-lists are on: loopback, clients, backends.

    systemd applies IPAddressAllow= in both directions, so the backends (as the gateway host
    resolves them, read by preflight) must be listed beside the client networks.
    """
    if not settings.allowed_client_networks:
        return []
    return ["localhost", *settings.allowed_client_networks, *sorted(set(backend_addresses))]


def service_environment(settings: Settings, runtime_directory: str) -> dict[str, str]:
    """What LiteLLM and the auth module read from the environment (the unit, and the deploy's canary)."""
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # never fetch the cost map at start
        "LITELLM_MODE": "PRODUCTION",  # DEV would load a .env from the working directory
        "HX_CLIENT_KEYS_FILE": settings.path("client_keys.json"),
        "HX_LIMITS_DB": f"/run/{runtime_directory}/limits.sqlite",
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "GRACEFUL_SHUTDOWN_TIMEOUT": str(settings.drain_timeout),  # LiteLLM's drain at SIGTERM
        # After Redis failed, LiteLLM's own Redis clients (cache, router) try it again after this many
        # seconds, as hx_auth's limits do (its default, 60 s, kept the cache off a minute after Redis was back).
        "REDIS_CIRCUIT_BREAKER_RECOVERY_TIMEOUT": "5",
        # alias=seconds,...: the aliases whose responses hx_auth.caching opts into the shared cache
        # (alias names hold no '=', ',', quote or space, so systemd's Environment= needs no quoting).
        **({"HX_CACHE_TTLS": ",".join(f"{a}={t}" for a, t in sorted(settings.cached_aliases.items()))}
           if settings.cached_aliases else {}),
        # The TLS policy (templates/gateway/openssl.cnf): protocols and ciphers the servers do not set.
        **({"OPENSSL_CONF": settings.path("openssl.cnf")} if settings.tls else {}),
    }


def host_argument(settings: Settings) -> str:
    """LiteLLM's --host: gunicorn binds f"{host}:{port}", so an IPv6 address needs its brackets there;
    uvicorn takes the bare address."""
    ipv6 = ":" in settings.bind_host
    return f"[{settings.bind_host}]" if ipv6 and settings.server == "gunicorn" else settings.bind_host


def tls_arguments(settings: Settings) -> list[str]:
    """LiteLLM's command line for HTTPS (it hands both files to gunicorn or uvicorn); [] without TLS."""
    if not settings.tls:
        return []
    files = tls_files(settings)
    return ["--ssl_certfile_path", files["tls_chain"].path, "--ssl_keyfile_path", files["tls_key"].path]


def start_command(settings: Settings) -> list[str]:
    """How the service (and the deploy's canary) starts LiteLLM: its `litellm` command through
    templates/gateway/hx_start.py, which imports the proxy with the garbage collector paused."""
    return [f"{settings.venv_root}/current/bin/python", "-P", settings.path("hx_start.py"),
            "--config", settings.path("config.yaml")]


def render_unit(settings: Settings, workers: int, backend_addresses: list[str], metrics: bool = False) -> str:
    """`metrics`: the workers write their samples for the metrics process (never the canary's: it
    keeps them in memory)."""
    environment = service_environment(settings, settings.service_name)
    if metrics:
        environment["PROMETHEUS_MULTIPROC_DIR"] = metrics_directory(settings)
    return _env.get_template("litellm.service.j2").render(
        s=settings, start=" ".join(start_command(settings)), workers=workers,
        ip_allow=ip_allow_list(settings, backend_addresses),
        environment=environment, host_argument=host_argument(settings),
        tls_arguments="".join(f" {a}" for a in tls_arguments(settings)),
        runtime_directories=" ".join([settings.service_name, *([f"{settings.service_name}/prometheus"] if metrics
                                                                 else [])]),
    )


def render_client_keys(settings: Settings, secrets: Secrets) -> str:
    """Digests and limits only: the file the service reads never holds a key."""
    keys = [
        {
            "name": key.name,
            "sha256": key_digest(secrets.client_keys[key.name]),
            "models": list(key.models),
            "rpm": key.rpm,
            "max_concurrent": key.max_concurrent,
            "expires": key.expires.isoformat() if key.expires else None,
        }
        for key in settings.client_keys
    ]
    return json.dumps({"client_keys": keys}, indent=2, sort_keys=True) + "\n"


def python_module(name: str) -> str:
    """A module the service loads from the config directory (templates/gateway/hx_auth.py, hx_start.py...), as it is."""
    return static_file(f"{name}.py")


def static_file(name: str) -> str:
    """A file of templates/gateway/ deployed as it is."""
    return (TEMPLATE_DIR / name).read_text()
