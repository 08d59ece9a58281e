"""Typed settings, built once from pyinfra host data and validated before any host is touched.

Every problem names the field and the fix; `load_settings` raises one `SettingsError` listing them
all, so an operator fixes the data in one pass.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from hx_gateway.model.refusal import Refusal

Kind = Literal["chat", "embedding"]
KINDS: tuple[str, ...] = ("chat", "embedding")
ENVIRONMENTS = ("production", "lab")
SERVERS = ("gunicorn", "uvicorn")
CHAT_ROUTES = ("ollama_chat", "ollama", "openai")
ROUTING_STRATEGIES = ("least-busy", "simple-shuffle", "latency-based-routing", "usage-based-routing-v2")
# Default drain: this much longer than request_timeout, so a request a restart catches can still finish.
DRAIN_MARGIN = 15
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SettingsError(Refusal, ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid gateway settings:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class ModelAlias:
    name: str
    ollama_model: str
    kind: Kind
    backends: tuple[str, ...]
    # Seconds a response stays in the shared Redis cache; None: never cached (the default).
    cache_ttl: int | None = None

    def route(self, chat_route: str) -> str:
        """LiteLLM's model string. Chat: ollama_chat/ lets Ollama apply the model's chat template;
        openai/ talks to Ollama's OpenAI-compatible /v1. Embeddings always use ollama/."""
        return f"{chat_route}/{self.ollama_model}" if self.kind == "chat" else f"ollama/{self.ollama_model}"


@dataclass(frozen=True)
class ClientKey:
    name: str
    models: tuple[str, ...]
    rpm: int
    max_concurrent: int
    expires: dt.date | None

    @property
    def env_name(self) -> str:
        return "HX_CLIENT_KEY_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())


@dataclass(frozen=True)
class Settings:
    environment: str
    bind_host: str
    bind_port: int
    gateway_url: str
    backends: tuple[str, ...]
    model_aliases: tuple[ModelAlias, ...]
    model_groups: Mapping[str, tuple[str, ...]]
    client_keys: tuple[ClientKey, ...]
    routing_strategy: str
    request_timeout: int
    num_retries: int
    allowed_fails: int
    cooldown_time: int
    workers: int | None
    server: str
    chat_route: str
    venv_root: str
    config_dir: str
    service_name: str
    service_user: str
    service_group: str
    secrets_file: str
    expected_identity: tuple[str, ...]
    health_timeout: int
    keep_generations: int
    drain_timeout: int
    extra_router_settings: Mapping[str, Any] = field(default_factory=dict)
    extra_litellm_settings: Mapping[str, Any] = field(default_factory=dict)
    allowed_client_networks: tuple[str, ...] = field(default=())
    # TLS for clients: paths on the control node (model/tls.py reads and checks the files).
    tls_certificate: str | None = None
    tls_key: str | None = None
    ca_bundle: str | None = None
    tls_min_days_left: int = 14

    @property
    def is_lab(self) -> bool:
        return self.environment == "lab"

    @property
    def tls(self) -> bool:
        """The gateway serves HTTPS (tls_certificate and tls_key are set)."""
        return bool(self.tls_certificate)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def alias_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.model_aliases)

    @property
    def cached_aliases(self) -> dict[str, int]:
        """Alias -> seconds its responses stay in the shared cache (only the aliases that opt in)."""
        return {a.name: a.cache_ttl for a in self.model_aliases if a.cache_ttl}

    @property
    def public_models(self) -> tuple[str, ...]:
        """What /v1/models lists: every alias and every group."""
        return (*self.alias_names, *self.model_groups)

    @property
    def local_url(self) -> str:
        """Where the host itself reaches the gateway: the bound address, loopback for a wildcard."""
        address = ipaddress.ip_address(self.bind_host)
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.bind_port}"

    def path(self, name: str) -> str:
        return f"{self.config_dir}/{name}"

    def backend_models(self) -> dict[str, list[str]]:
        """Backend URL -> Ollama models it must carry."""
        wanted: dict[str, list[str]] = {b: [] for b in self.backends}
        for alias in self.model_aliases:
            for backend in alias.backends:
                if alias.ollama_model not in wanted[backend]:
                    wanted[backend].append(alias.ollama_model)
        return wanted


# Knobs of the gateway hosts: Settings' fields (group_data/all.py and litellm.py hold their defaults);
# of the backend hosts (group `llm`): group_data/llm.py.
GATEWAY_KNOBS = tuple(f.name for f in fields(Settings))
REPOSITORY_GROUP_DATA = Path(__file__).resolve().parents[2] / "group_data"
BACKEND_KNOBS = ("ollama_service", "ollama_port")


def knob_names() -> tuple[str, ...]:
    """Every knob a group_data file may set (the `redis`, `lb`, `db` and `monitor` groups' are in fleet.py,
    the `webui` group's in webui.py)."""
    from hx_gateway.model.fleet import DB_KNOBS, LB_KNOBS, MONITOR_KNOBS, REDIS_KNOBS  # they build on this
    from hx_gateway.model.webui import WEBUI_KNOBS

    return (*GATEWAY_KNOBS, *BACKEND_KNOBS, *REDIS_KNOBS, *LB_KNOBS, *DB_KNOBS, *MONITOR_KNOBS, *WEBUI_KNOBS)


def _closest(name: str, known: Iterable[str]) -> str | None:
    """The known name a misspelling most likely meant, if any is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_knob_problems(data: Mapping[str, Any], foreign: Iterable[str] = ()) -> list[str]:
    """Names in host data that are no knob of this deploy: a misspelt knob would be ignored and its
    default applied without a word. `foreign`: names pyinfra itself reads (connector data); names
    starting with `_` are pyinfra's operation arguments (`_sudo`)."""
    known, ignored = knob_names(), set(foreign)
    problems = []
    for name in sorted(data):
        if name.startswith("_") or name in known or name in ignored:
            continue
        close = _closest(name, known)
        hint = f"did you mean `{close}`? Rename it" if close else "remove it, or see the README's Variables table"
        problems.append(f"{name}: not a knob of this deploy (it would be ignored); {hint}")
    return problems


def _bind_host_problems(value: Any) -> list[str]:
    try:
        ipaddress.ip_address(value if isinstance(value, str) else None)
    except ValueError:
        return [f"bind_host: {value!r} is not an IP address; use 0.0.0.0 (every address), 127.0.0.1, or one of "
                f"the gateway host's own addresses"]
    return []


def _network_problems(values: Any, name: str) -> list[str]:
    problems = []
    for value in values:
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            problems.append(f"{name}: {value!r} is not an address or network; write e.g. 10.0.0.0/8 or 192.0.2.7")
    return problems


def _problems_for_url(url: Any, where: str) -> list[str]:
    if not isinstance(url, str):
        return [f"{where}: {url!r} is not a URL; write it as http://host:11434"]
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        return [f"{where}: {url!r} is malformed; write it as http://host:11434 (scheme, host, port, no path)"]
    return []


# The knobs that hold a list or a dict, and what they hold (for the message when they hold something else).
LIST_KNOBS = {
    "backends": "a list of Ollama URLs, e.g. ['http://hx-llm01:11434']",
    "model_aliases": "a list of dicts with name, ollama_model and kind",
    "client_keys": "a list of dicts with name, models, rpm, max_concurrent and expires",
    "allowed_client_networks": "a list of addresses or networks, e.g. ['10.0.0.0/8']",
    "expected_identity": "a list of host names, e.g. ['hx-api-server']",
}
DICT_KNOBS = {"model_groups": "a dict of group names to lists of chat aliases, e.g. {'hx-chat': ['phi3-3.8b']}"}


def _shape_problems(data: Mapping[str, Any]) -> dict[str, str]:
    """The list or dict knobs holding something else (a number, a string), each with its problem."""
    found = {}
    for name, meaning in LIST_KNOBS.items():
        if data[name] is not None and not isinstance(data[name], (list, tuple)):
            found[name] = f"{name}: {data[name]!r} is not a list; set {meaning}"
    for name, meaning in DICT_KNOBS.items():
        if data[name] is not None and not isinstance(data[name], Mapping):
            found[name] = f"{name}: {data[name]!r} is not a dict; set {meaning}"
    return found


def tls_knobs_set(data: Mapping[str, Any]) -> bool:
    """The operator asked for HTTPS (served by the gateways, or by HAProxy where an `lb` group exists)."""
    return bool(data.get("tls_certificate") and data.get("tls_key"))


def tls_problems(data: Mapping[str, Any], url: Any, url_knob: str, serves_tls: bool, behind: str = "") -> list[str]:
    """The TLS knobs' shapes, and the scheme of the URL clients use (`url_knob`) against whether this
    host serves HTTPS (`behind`: why it does not although TLS is on). The files: model/tls.py."""
    problems = []
    for name in ("tls_certificate", "tls_key", "ca_bundle"):
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"{name}: {value!r} is not a path; set the path of a PEM file on the control node, or None")
    if bool(data.get("tls_certificate")) != bool(data.get("tls_key")):
        problems.append("tls_certificate, tls_key: set both (the certificate chain and its private key) to serve "
                        "HTTPS, or neither for plain HTTP")
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if serves_tls and scheme == "http":
        problems.append(f"{url_knob}: {url!r} is plain HTTP but HTTPS is served there (tls_certificate is set); "
                        f"write it with https://")
    elif not serves_tls and scheme == "https":
        why = behind or "tls_certificate and tls_key are not set; set them, or write the URL with http://"
        problems.append(f"{url_knob}: {url!r} is HTTPS but {why}")
    return problems


def _int(data: Mapping[str, Any], name: str, low: int, high: int, problems: list[str]) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append(f"{name}: {value!r} is out of range; set an integer from {low} to {high}")
        return low
    return value


def _parse_date(value: Any, where: str, problems: list[str]) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        problems.append(f"{where}: {value!r} is not a date; write YYYY-MM-DD or None")
        return None


# What one entry of model_aliases / client_keys may hold (group_data/all.py explains each).
ALIAS_FIELDS = ("name", "ollama_model", "kind", "backends", "cache_ttl")
CLIENT_KEY_FIELDS = ("name", "models", "rpm", "max_concurrent", "expires")
CACHE_TTL_MAX = 7 * 24 * 3600


def _unknown_fields(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    """A misspelt field of an alias or a client key would be ignored like a misspelt knob."""
    problems = []
    for name in sorted(set(raw) - set(known), key=str):
        close = _closest(str(name), known)
        hint = f"did you mean `{close}`?" if close else f"the fields are {', '.join(known)}"
        problems.append(f"{where}: unknown field {name!r} (it would be ignored); {hint}")
    return problems


def _names(value: Any, where: str, what: str, problems: list[str]) -> tuple[str, ...]:
    """A list field of names (an alias's backends, a key's models, a group's aliases): the strings in
    it; anything else is a problem, so the checks after it compare names only."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        problems.append(f"{where}: {value!r} is not a list; list the {what}")
        return ()
    odd = [v for v in value if not isinstance(v, str)]
    if odd:
        problems.append(f"{where}: {odd[0]!r} is not a name; list the {what} as strings")
    return tuple(v for v in value if isinstance(v, str))


def _cache_ttl(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= CACHE_TTL_MAX:
        problems.append(f"{where}.cache_ttl: {value!r} is out of range; set seconds from 1 to {CACHE_TTL_MAX}, "
                        f"or None to never cache this alias")
        return None
    return value


def _unique_name(name: Any, where: str, seen: set[str], what: str, problems: list[str]) -> bool:
    """A valid name not seen before (a duplicate is listed, and still checked further)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        problems.append(f"{where}: name {name!r} is invalid; use letters, digits, '.', '_' or '-'")
        return False
    if name in seen:
        problems.append(f"{where}: duplicate {what}; each name must appear once")
    seen.add(name)
    return True


def _aliases(data: Mapping[str, Any], backends: tuple[str, ...], problems: list[str]) -> tuple[ModelAlias, ...]:
    aliases: list[ModelAlias] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["model_aliases"] or []):
        where = f"model_aliases[{index}]"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: must be a dict with name, ollama_model, kind")
            continue
        name = raw.get("name")
        where = f"model_aliases[{name!r}]" if name else where
        if not _unique_name(name, where, seen, f"alias {name!r}", problems):
            continue
        problems += _unknown_fields(raw, ALIAS_FIELDS, where)
        if not raw.get("ollama_model"):
            problems.append(f"{where}: ollama_model is missing; name the model as `ollama list` shows it")
        kind = raw.get("kind")
        if kind not in KINDS:
            problems.append(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        alias_backends = _names(raw.get("backends"), f"{where}.backends", "backend URLs", problems) or backends
        for backend in alias_backends:
            if backend not in backends:
                problems.append(f"{where}: backend {backend!r} is not in `backends`; add it there first")
        if not alias_backends:
            problems.append(f"{where}: has no backend; list at least one in `backends`")
        aliases.append(ModelAlias(name, str(raw.get("ollama_model") or ""), kind, alias_backends,  # type: ignore[arg-type]
                                  _cache_ttl(raw.get("cache_ttl"), where, problems)))
    if not aliases and not problems:
        problems.append("model_aliases: empty; declare at least one alias")
    return tuple(aliases)


def _groups(data: Mapping[str, Any], aliases: tuple[ModelAlias, ...], problems: list[str]
            ) ->  dict[str, tuple[str, ...]]:
    names = {a.name for a in aliases}
    groups: dict[str, tuple[str, ...]] = {}
    for group, members in (data["model_groups"] or {}).items():
        if group in names:
            problems.append(f"model_groups[{group!r}]: clashes with an alias of the same name; rename the group")
        found = len(problems)
        members = _names(members, f"model_groups[{group!r}]", "chat aliases it spreads over", problems)
        if not members and len(problems) == found:  # not already said to be no list
            problems.append(f"model_groups[{group!r}]: empty; list the aliases it spreads over")
        kinds = {a.name: a.kind for a in aliases}
        for member in members:
            if member not in names:
                problems.append(f"model_groups[{group!r}]: names unknown alias {member!r}; declare it in model_aliases")
            elif kinds[member] != "chat":
                problems.append(f"model_groups[{group!r}]: {member!r} is an {kinds[member]} alias; a group spreads "
                                f"chat requests, so list chat aliases only")
        groups[group] = members
    return groups


def _client_keys(data: Mapping[str, Any], public: set[str], problems: list[str]) -> tuple[ClientKey, ...]:
    keys: list[ClientKey] = []
    seen: set[str] = set()
    for index, raw in enumerate(data["client_keys"] or []):
        name = raw.get("name") if isinstance(raw, Mapping) else None
        where = f"client_keys[{name or index!r}]"
        if not _unique_name(name, where, seen, "client key name", problems):
            continue
        problems += _unknown_fields(raw, CLIENT_KEY_FIELDS, where)
        models = _names(raw.get("models"), f"{where}.models", "aliases and groups it may use", problems)
        for model in models:
            if model not in public:
                problems.append(f"{where}: allows unknown model {model!r}; name an alias or a group")
        rpm, concurrent = raw.get("rpm", 60), raw.get("max_concurrent", 10)
        if not isinstance(rpm, int) or rpm < 1:
            problems.append(f"{where}: rpm {rpm!r} must be a positive integer")
        if not isinstance(concurrent, int) or concurrent < 1:
            problems.append(f"{where}: max_concurrent {concurrent!r} must be a positive integer")
        expires = _parse_date(raw.get("expires"), f"{where}.expires", problems)
        keys.append(ClientKey(name, models, int(rpm) if isinstance(rpm, int) else 1,
                              int(concurrent) if isinstance(concurrent, int) else 1, expires))
    return tuple(keys)


def _extra(data: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    """Pass-through LiteLLM settings we do not model; keys we set ourselves cannot be overridden here."""
    value = data[name] or {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and NAME_RE.match(k) for k in value):
        problems.append(f"{name}: {value!r} must be a dict of LiteLLM setting names to values")
        return {}
    owned = {"routing_strategy", "num_retries", "timeout", "allowed_fails", "cooldown_time", "callbacks",
             "disable_hf_tokenizer_download", "drop_params", "request_timeout"}
    for key in sorted(owned & set(value)):
        problems.append(f"{name}.{key}: set by its own variable; use that instead")
    # Caching is opt-in per alias: a LiteLLM-wide switch would cache every alias.
    for key in sorted({"cache", "cache_params", "cache_responses"} & set(value)):
        problems.append(f"{name}.{key}: response caching is set per alias; give the alias a `cache_ttl` "
                        f"(seconds) in model_aliases instead")
    return dict(value)


def load_settings(data: Mapping[str, Any], inventory_name: str = "localhost", behind_balancers: bool = False
                  ) -> Settings:
    """Build `Settings` from pyinfra host data (or any mapping); raise SettingsError on any problem.
    `behind_balancers`: the inventory has an `lb` group, where HAProxy serves HTTPS when TLS is on;
    the gateways behind it then serve plain HTTP on the private network."""
    missing = [name for name in GATEWAY_KNOBS if name not in data]
    if len(missing) > 3:  # not a knob deleted by hand: the repository's group_data/ was never loaded
        raise SettingsError([f"{len(missing)} knobs missing from the host data (e.g. {', '.join(missing[:3])}): "
                             f"the repository's group_data/, which declares every knob with its default, was "
                             f"not loaded. Run pyinfra from the repository, or pass --group-data "
                             f"{REPOSITORY_GROUP_DATA}"])
    if missing:  # every default is declared once, in group_data/; this code holds none of its own
        raise SettingsError([f"{name}: missing from the host data; group_data/ declares every knob with its default: "
                             f"run pyinfra from the repository (or pass its group_data/)" for name in missing])
    misshapen = _shape_problems(data)
    problems = list(misshapen.values())
    data = {**data, **dict.fromkeys(misshapen)}  # read as unset from here: every other problem is listed too
    environment = data["environment"]
    if environment not in ENVIRONMENTS:
        problems.append(f"environment: {environment!r} is unknown; use one of {', '.join(ENVIRONMENTS)}")
    backends = tuple(data["backends"] or ())
    if not backends and "backends" not in misshapen:
        problems.append("backends: empty; list the Ollama URLs, e.g. http://hx-llm01:11434")
    for index, backend in enumerate(backends):
        problems += _problems_for_url(backend, f"backends[{index}]")
    if len({str(b) for b in backends}) != len(backends):
        problems.append("backends: a URL is listed twice; list each backend once")
    aliases = _aliases(data, backends, problems)
    groups = _groups(data, aliases, problems)
    public = {a.name for a in aliases} | set(groups)
    client_keys = _client_keys(data, public, problems)
    bind_port = _int(data, "bind_port", 1, 65535, problems)
    routing = data["routing_strategy"]
    if routing not in ROUTING_STRATEGIES:
        problems.append(f"routing_strategy: {routing!r} is unknown; use one of {', '.join(ROUTING_STRATEGIES)}")
    workers = data["workers"]
    if workers is not None and (not isinstance(workers, int) or not 1 <= workers <= 64):
        problems.append(f"workers: {workers!r} is out of range; set None (one per core) or 1..64")
    chat_route = data["chat_route"]
    if chat_route not in CHAT_ROUTES:
        problems.append(f"chat_route: {chat_route!r} is unknown; use one of {', '.join(CHAT_ROUTES)}")
    server = data["server"]
    if server not in SERVERS:
        problems.append(f"server: {server!r} is unknown; use one of {', '.join(SERVERS)}")
    for name in ("service_user", "service_group", "service_name"):
        if not isinstance(data[name], str) or not NAME_RE.match(data[name]):
            problems.append(f"{name}: {data[name]!r} is not a valid name; use letters, digits, '.', '_' or '-'")
    for name in ("venv_root", "config_dir"):
        value = data[name]
        if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") in ("", "/usr", "/etc", "/opt"):
            example = {"venv_root": "/opt/litellm", "config_dir": "/etc/litellm"}[name]
            problems.append(f"{name}: {value!r} must be an absolute path of its own, e.g. {example}")
    bind_host = data["bind_host"]
    problems += _bind_host_problems(bind_host)
    networks = data["allowed_client_networks"] or ()
    problems += _network_problems(networks, "allowed_client_networks")
    serves_tls = tls_knobs_set(data) and not behind_balancers
    scheme = "https" if serves_tls else "http"
    gateway_url = data["gateway_url"] or f"{scheme}://{inventory_name.split('/')[-1]}:{bind_port}"
    problems += _problems_for_url(gateway_url, "gateway_url")
    problems += tls_problems(data, gateway_url, "gateway_url", serves_tls, behind=(
        "behind the `lb` group the gateways serve plain HTTP (HAProxy serves HTTPS to clients); write it with "
        "http://" if behind_balancers else ""))
    settings = Settings(
        environment=str(environment),
        bind_host=str(bind_host),
        bind_port=bind_port,
        gateway_url=str(gateway_url).rstrip("/"),
        backends=backends,
        model_aliases=aliases,
        model_groups=groups,
        client_keys=client_keys,
        routing_strategy=str(routing),
        request_timeout=_int(data, "request_timeout", 1, 3600, problems),
        num_retries=_int(data, "num_retries", 0, 10, problems),
        allowed_fails=_int(data, "allowed_fails", 0, 100, problems),
        cooldown_time=_int(data, "cooldown_time", 0, 3600, problems),
        workers=workers,
        server=str(server),
        chat_route=str(chat_route),
        venv_root=str(data["venv_root"]).rstrip("/"),
        config_dir=str(data["config_dir"]).rstrip("/"),
        service_name=str(data["service_name"]),
        service_user=str(data["service_user"]),
        service_group=str(data["service_group"]),
        secrets_file=str(data["secrets_file"] or ""),
        expected_identity=tuple(data["expected_identity"] or ()),
        health_timeout=_int(data, "health_timeout", 5, 900, problems),
        drain_timeout=(_int(data, "drain_timeout", 1, 3600, problems) if data["drain_timeout"] is not None
                       else _int(data, "request_timeout", 1, 3600, []) + DRAIN_MARGIN),
        keep_generations=_int(data, "keep_generations", 1, 100, problems),
        allowed_client_networks=tuple(networks),
        extra_router_settings=_extra(data, "extra_router_settings", problems),
        extra_litellm_settings=_extra(data, "extra_litellm_settings", problems),
        tls_certificate=data["tls_certificate"] if serves_tls else None,
        tls_key=data["tls_key"] if serves_tls else None,
        ca_bundle=data["ca_bundle"] or None,
        tls_min_days_left=_int(data, "tls_min_days_left", 1, 365, problems),
    )
    if not problems and settings.drain_timeout <= settings.request_timeout:
        problems.append(f"drain_timeout: {settings.drain_timeout} s is not longer than request_timeout "
                        f"({settings.request_timeout} s): a restart would cut requests still waiting for a backend; "
                        f"set drain_timeout to at least {settings.request_timeout + 1}")
    if problems:
        raise SettingsError(problems)
    return settings
