"""Post-deploy checks. Each returns `Check`s named after what they prove; a failure says the fix.

Host checks read facts (they never change anything); client checks call the gateway with httpx
as a client would.
"""

from __future__ import annotations

import json
import ssl
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import Settings

# Every check the verification runs, by name (a [suffix] names the alias, model or URL): the change
# ticket's validation plan. tests/test_verify.py fails if this and the real checks drift apart.
VALIDATION_PLAN: dict[str, str] = {
    "port_listening_as_service_user": "the configured port is held by the service user, not another process",
    "unit_active_and_enabled": "the unit is active and enabled",
    "litellm_version_matches_lock": "the venv runs the LiteLLM version the lock pins",
    "venv_allowed_by_policy": "the serving venv holds no start-up hook the lock does not explain, and its LiteLLM "
                              "is allowed by locks/policy.json",
    "backend_reachable_from_gateway": "each Ollama backend answers /api/version from the gateway host",
    "models_lists_exactly_the_aliases": "/v1/models with the key lists exactly the aliases and groups",
    "unauthenticated_gets_401": "a request without a key is refused with 401",
    "wrong_key_gets_401": "a wrong key is refused with 401",
    "chat_completion": "a chat completion comes back for every chat alias and group",
    "streamed_chat_ends_with_done": "a streamed completion ends with [DONE]",
    "embedding": "an embedding comes back for every embedding alias",
    "unknown_model_gets_4xx": "an unknown model is refused with a 4xx, not a 500",
    "malformed_json_gets_4xx": "malformed JSON is refused with a 4xx",
    "traffic_reaches_every_backend": "a concurrent burst reaches every backend (gateway header and backend sockets)",
    "ollama_port_listening": "each backend host listens on the Ollama port",
    "backend_has_model": "each backend carries every Ollama model its aliases need",
}

# A burst must reach the backends, also for an alias whose repeated answers come from the cache.
BYPASS_CACHE = {"cache": {"no-cache": True, "no-store": True}}
BURST_REQUESTS = 24
BURST_CONCURRENCY = 6
BURST_ATTEMPTS = 3


@dataclass
class Check:
    host: str
    check: str
    ok: bool
    expected: str
    seen: str
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    # The backends (URLs) whose absence alone explains a failure of this check: with them down and
    # every other check passing, the gateway is degraded, not failed.
    backends: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)



def model_names(tags_body: str) -> set[str]:
    """Names from Ollama's /api/tags, with the implicit `:latest` both ways."""
    names = set()
    for model in json.loads(tags_body or "{}").get("models", []):
        name = model.get("name") or model.get("model") or ""
        names.add(name)
        if name.endswith(":latest"):
            names.add(name.removesuffix(":latest"))
    return names


def backend_of(inventory_name: str, backends: tuple[str, ...]) -> str | None:
    """The backend URL an `llm` inventory host serves (matched on host name)."""
    name = inventory_name.split("/", 1)[-1]
    for backend in backends:
        host = urlsplit(backend).hostname or ""
        if host == name or host.split(".")[0] == name.split(".")[0]:
            return backend
    return None


# -- host checks (from facts) -------------------------------------------------------------------

def gateway_host_checks(host: str, settings: Settings, listeners: list[dict], active: bool, enabled: bool,
                        installed_version: str, lock_version: str, probes: list[dict],
                        venv_policy: dict) -> list[Check]:
    owners = sorted({u for item in listeners for u in item["users"]})
    checks = [
        Check(host, "port_listening_as_service_user", bool(listeners) and owners == [settings.service_user],
              f":{settings.bind_port} held by {settings.service_user}", f"held by {owners or 'nobody'}",
              f"journalctl -u {settings.service_name} -n 50 on {host}; the port may be taken by another process"),
        Check(host, "unit_active_and_enabled", active and enabled, "active, enabled",
              f"{'active' if active else 'inactive'}, {'enabled' if enabled else 'disabled'}",
              f"systemctl enable --now {settings.service_name}; journalctl -u {settings.service_name} -n 50"),
        Check(host, "litellm_version_matches_lock", installed_version == lock_version, lock_version,
              installed_version or "not installed", "re-run the deploy; the venv marker may be stale"),
        Check(host, "venv_allowed_by_policy", not venv_policy.get("problems", ["not read"]),
              "no unexplained start-up hook; an allowed LiteLLM", "; ".join(venv_policy.get("problems", [])) or "ok",
              "remove the file named and find out how it got there (the deploy never installs one); re-run the "
              "deploy, which builds and checks a new venv", {"startup_hooks": venv_policy.get("startup_hooks", [])}),
    ]
    for backend, probe in zip(settings.backends, probes, strict=True):  # each backend's /api/version
        ok = probe["status"] == 200 and not probe["error"]
        checks.append(Check(host, f"backend_reachable_from_gateway[{backend}]", ok, f"{probe['url']} answers 200",
                            probe["error"] or f"HTTP {probe['status']}",
                            f"systemctl status ollama on the backend; firewall/DNS from {host}",
                            {"rtt_ms": probe["ms"]}, [backend]))
    return checks


def backend_host_checks(host: str, port: int, wanted: list[str], listeners: list[dict],
                        tags_probe: dict | None, backend: str | None = None) -> list[Check]:
    about = [backend] if backend else []
    checks = [Check(host, "ollama_port_listening", bool(listeners), f":{port} listening",
                    "listening" if listeners else "nothing listening", f"systemctl start ollama on {host}",
                    backends=about)]
    present = model_names(tags_probe["body"]) if tags_probe and tags_probe["status"] == 200 else set()
    for model in wanted:
        checks.append(Check(host, f"backend_has_model[{model}]", model in present, f"{model} in /api/tags",
                            "present" if model in present else "missing",
                            f"ollama pull {model}   (on {host})", backends=about if not listeners else []))
    return checks


# -- client checks (httpx against the gateway) --------------------------------------------------

def _status_check(host: str, name: str, response: httpx.Response | Exception, want: Callable[[int], bool],
                  expected: str, fix: str) -> Check:
    if isinstance(response, Exception):
        return Check(host, name, False, expected, f"{type(response).__name__}: {response}", fix)
    return Check(host, name, want(response.status_code), expected, f"HTTP {response.status_code}", fix)


def trust(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """What every check trusts over HTTPS: the operator's CA when named, else the control node's system store."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | Exception:
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        return exc


def client_checks(settings: Settings, secrets: Secrets, host: str,
                  read_backend_counts: Callable[[], dict[str, int]] | None = None) -> list[Check]:
    base = settings.gateway_url
    auth = {"Authorization": f"Bearer {secrets.master_key}"}
    checks: list[Check] = []
    with httpx.Client(base_url=base, timeout=settings.request_timeout + 10, verify=trust(settings.ca_bundle)) as client:
        listing = _call(client, "GET", "/v1/models", headers=auth)
        listed = set()
        if isinstance(listing, httpx.Response) and listing.status_code == 200:
            listed = {m["id"] for m in listing.json().get("data", [])}
        checks.append(Check(host, "models_lists_exactly_the_aliases", listed == set(settings.public_models),
                            ", ".join(sorted(settings.public_models)), ", ".join(sorted(listed)) or str(listing),
                            "compare model_aliases/model_groups with config.yaml; re-run the deploy"))
        checks.append(_status_check(host, "unauthenticated_gets_401", _call(client, "GET", "/v1/models"),
                                    lambda s: s == 401, "401", "custom_auth must be set in config.yaml"))
        checks.append(_status_check(host, "wrong_key_gets_401",
                                    _call(client, "GET", "/v1/models", headers={"Authorization": "Bearer sk-wrong"}),
                                    lambda s: s == 401, "401", "custom_auth must be set in config.yaml"))
        chat = [a for a in settings.model_aliases if a.kind == "chat"]
        for name in [a.name for a in chat] + list(settings.model_groups):
            response = _call(client, "POST", "/v1/chat/completions", headers=auth,
                             json={"model": name, "messages": [{"role": "user", "content": "ping"}]})
            checks.append(_status_check(host, f"chat_completion[{name}]", response, lambda s: s == 200, "200",
                                        "journalctl -u litellm; check the backends carry the model"))
        if chat:
            checks.append(_stream_check(client, host, chat[0].name, auth))
        for alias in (a for a in settings.model_aliases if a.kind == "embedding"):
            response = _call(client, "POST", "/v1/embeddings", headers=auth, json={"model": alias.name, "input": "hi"})
            checks.append(_status_check(host, f"embedding[{alias.name}]", response, lambda s: s == 200, "200",
                                        "journalctl -u litellm; check the backends carry the model"))
        checks.append(_status_check(
            host, "unknown_model_gets_4xx",
            _call(client, "POST", "/v1/chat/completions", headers=auth,
                  json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}),
            lambda s: 400 <= s < 500, "4xx", "an unknown model must not reach a backend"))
        checks.append(_status_check(
            host, "malformed_json_gets_4xx",
            _call(client, "POST", "/v1/chat/completions", headers={**auth, "Content-Type": "application/json"},
                  content=b"{not json"),
            lambda s: 400 <= s < 500, "4xx", "LiteLLM should reject the body before routing"))
        if chat:
            checks.append(_fan_out_check(client, settings, host, chat[0], auth, read_backend_counts))
    return checks


def _stream_check(client: httpx.Client, host: str, model: str, auth: dict[str, str]) -> Check:
    lines: list[str] = []
    try:
        with client.stream("POST", "/v1/chat/completions", headers=auth,
                           json={"model": model, "stream": True,
                                 "messages": [{"role": "user", "content": "stream please"}]}) as response:
            status = response.status_code
            lines = [line for line in response.iter_lines() if line.strip()]
    except httpx.HTTPError as exc:
        return Check(host, "streamed_chat_ends_with_done", False, "SSE ending with data: [DONE]", str(exc),
                     "journalctl -u litellm")
    ok = status == 200 and bool(lines) and lines[-1].strip() == "data: [DONE]"
    return Check(host, "streamed_chat_ends_with_done", ok, "SSE ending with data: [DONE]",
                 f"HTTP {status}, {len(lines)} events, last: {lines[-1][:40] if lines else '-'}",
                 "journalctl -u litellm", {"events": len(lines)})


def _fan_out_check(client: httpx.Client, settings: Settings, host: str, alias: Any, auth: dict[str, str],
                   read_backend_counts: Callable[[], dict[str, int]] | None) -> Check:
    """A burst to one alias must reach every backend that serves it.

    Two witnesses: the gateway's own x-litellm-model-api-base header per response, and the
    backends' side (`read_backend_counts`: connections each backend holds from the gateway).
    `least-busy` gives every tie to the first backend and each worker counts only its own
    requests, so right after a restart a burst can land on one backend (measured: 22 of 24).
    Up to BURST_ATTEMPTS bursts are sent; a backend that never serves one, or any error, fails.
    """

    def one(_: int) -> str:
        response = _call(client, "POST", "/v1/chat/completions", headers=auth,
                         json={"model": alias.name, "messages": [{"role": "user", "content": "which backend?"}],
                               **(BYPASS_CACHE if alias.cache_ttl else {})})
        if isinstance(response, Exception) or response.status_code != 200:
            return "error"
        return response.headers.get("x-litellm-model-api-base", "unknown")

    attempts: list[dict[str, Any]] = []
    missing: list[str] = list(alias.backends)
    errors = 0
    while missing and not errors and len(attempts) < BURST_ATTEMPTS:
        with ThreadPoolExecutor(BURST_CONCURRENCY) as pool:
            served = Counter(pool.map(one, range(BURST_REQUESTS)))
        seen_by_backends = read_backend_counts() if read_backend_counts else {}
        attempts.append({"gateway_says": dict(served), "backends_say": seen_by_backends})
        errors = served.get("error", 0)
        missing = [b for b in alias.backends
                   if served.get(b, 0) == 0 or (b in seen_by_backends and seen_by_backends[b] <= 0)]
    figures = {**attempts[-1], "bursts": len(attempts)}
    return Check(host, f"traffic_reaches_every_backend[{alias.name}]", not missing and not errors,
                 f"a burst of {BURST_REQUESTS} requests spread over {', '.join(alias.backends)}"
                 f" (at most {BURST_ATTEMPTS} bursts)",
                 json.dumps({**figures, "earlier_bursts": attempts[:-1]}),
                 "a backend in cooldown or unreachable: check it, then retry", figures,
                 backends=missing if not errors else [])
