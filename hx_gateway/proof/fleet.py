"""Checks of the service around the gateways (issue 23): Redis as every gateway sees it, every gateway
UP in every balancer, and clients served through the balancers with the load spread."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx

from hx_gateway.model.fleet import Fleet, LbSettings, RedisSettings
from hx_gateway.model.secrets import Secrets
from hx_gateway.model.settings import ModelAlias, Settings
from hx_gateway.proof.checks import Check, trust

FLEET_VALIDATION_PLAN: dict[str, str] = {
    "redis_refuses_unauthenticated": "from each gateway, Redis answers and refuses a client without a password",
    "redis_lets_the_gateway_in": "from each gateway, the gateways' ACL user (from its env file) gets into Redis",
    "gateway_up_in_balancer": "every gateway is UP in every balancer",
    "balancer_serves_models": "through each balancer, /v1/models answers 200 with the key",
    "balancer_unauthenticated_gets_401": "through each balancer, a request without a key is refused with 401",
    "burst_reaches_every_gateway": "a concurrent burst through each balancer reaches every gateway",
    "cache_shared_by_every_gateway": "for each alias with a cache_ttl, a request answered once is answered from "
                                     "the shared cache by every gateway",
}
REDIS_CHECKS = ("redis_refuses_unauthenticated", "redis_lets_the_gateway_in")
CACHE_CHECKS = ("cache_shared_by_every_gateway",)


def fleet_validation_plan(fleet: Fleet, caches: bool) -> dict[str, str]:
    """The checks verify runs for the parts this service has: Redis's with a `redis` host, the
    balancers' with `lb` hosts, the cache's when an alias has a cache_ttl."""
    wanted = {name for name in FLEET_VALIDATION_PLAN if name not in REDIS_CHECKS + CACHE_CHECKS} if fleet.lbs else set()
    wanted |= set(REDIS_CHECKS) if fleet.redis else set()
    wanted |= set(CACHE_CHECKS) if fleet.redis and caches else set()
    return {name: what for name, what in FLEET_VALIDATION_PLAN.items() if name in wanted}


BURST_REQUESTS = 16
BURST_CONCURRENCY = 8


def redis_checks(host: str, redis: RedisSettings, probe: dict) -> list[Check]:
    where = f"{redis.address}:{redis.redis_port}"
    fix = f"systemctl status redis-server on {redis.host}; re-run the deploy"
    refused = probe.get("unauthenticated", "").startswith("-NOAUTH")
    return [
        Check(host, "redis_refuses_unauthenticated", refused, f"{where}: -NOAUTH",
              probe.get("error") or probe.get("unauthenticated") or "no answer", fix),
        Check(host, "redis_lets_the_gateway_in", probe.get("authenticated") == "+PONG", f"{where}: +PONG",
              probe.get("error") or probe.get("authenticated") or "no answer",
              f"HX_REDIS_PASSWORD must be the one the deploy gave Redis; {fix}"),
    ]


def balancer_checks(lb: LbSettings, fleet: Fleet, servers: dict) -> list[Check]:
    return [Check(lb.host, f"gateway_up_in_balancer[{m.name}]", servers.get(m.name, {}).get("status") == "UP", "UP",
                  servers.get(m.name, {}).get("status", "not in the backend"),
                  f"curl http://{m.address}:{m.port}/health/readiness from {lb.host}; re-run the deploy")
            for m in fleet.gateways]


def balancer_client_checks(lb: LbSettings, fleet: Fleet, secrets: Secrets,
                           sessions: Callable[[], dict[str, int]]) -> list[Check]:
    """`sessions`: each gateway's total of requests in this balancer (its runtime API's `stot`)."""
    auth = {"Authorization": f"Bearer {secrets.master_key}"}
    checks = []
    with httpx.Client(base_url=lb.lb_url, timeout=30, verify=trust(lb.ca_bundle)) as client:
        for name, headers, want in (("balancer_serves_models", auth, 200),
                                    ("balancer_unauthenticated_gets_401", {}, 401)):
            try:
                seen = str(client.get("/v1/models", headers=headers).status_code)
            except httpx.HTTPError as exc:
                seen = f"{type(exc).__name__}: {exc}"
            checks.append(Check(lb.host, name, seen == str(want), str(want), seen,
                                f"journalctl -u haproxy on {lb.host}; is every gateway UP?"))
        before = sessions()
        with ThreadPoolExecutor(BURST_CONCURRENCY) as pool:
            list(pool.map(lambda _: _get(client, auth), range(BURST_REQUESTS)))
        after = sessions()
    spread = {m.name: after.get(m.name, 0) - before.get(m.name, 0) for m in fleet.gateways}
    checks.append(Check(lb.host, "burst_reaches_every_gateway", all(v > 0 for v in spread.values()),
                        "every gateway > 0", ", ".join(f"{k}: {v}" for k, v in spread.items()),
                        "a gateway that takes no requests is down or drained: see gateway_up_in_balancer",
                        figures={"requests_per_gateway": spread}))
    return checks


def _get(client: httpx.Client, auth: dict[str, str]) -> int:
    try:
        return client.get("/v1/models", headers=auth).status_code
    except httpx.HTTPError:
        return 0


def _cacheable_request(alias: ModelAlias) -> tuple[str, dict]:
    """A request no client has sent before (so the first answer cannot come from the cache)."""
    text = f"hx-gateway verify {os.urandom(8).hex()}"
    if alias.kind == "embedding":
        return "/v1/embeddings", {"model": alias.name, "input": text}
    return "/v1/chat/completions", {"model": alias.name, "messages": [{"role": "user", "content": text}]}


def _from_cache(settings: Settings, path: str, body: dict, auth: dict[str, str]) -> str:
    """`hit`, `miss` (LiteLLM names the cache key only on an answer from the cache) or what went wrong."""
    try:
        response = httpx.post(f"{settings.gateway_url}{path}", json=body, headers=auth, timeout=60,
                              verify=trust(settings.ca_bundle))
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    return "hit" if response.headers.get("x-litellm-cache-key") else "miss"


def cache_checks(gateways: Sequence[tuple[str, Settings]], secrets: Secrets) -> list[Check]:
    """Each cached alias: a new request to the first gateway, then the same to every gateway."""
    auth = {"Authorization": f"Bearer {secrets.master_key}"}
    first_name, first = gateways[0]
    checks = []
    for alias in (a for a in first.model_aliases if a.cache_ttl):
        path, body = _cacheable_request(alias)
        answer = _from_cache(first, path, body, auth)
        repeats = {name: _from_cache(settings, path, body, auth) for name, settings in gateways}
        seen = f"{first_name} (first): {answer}, " + ", ".join(f"{k}: {v}" for k, v in repeats.items())
        checks.append(Check(first_name, f"cache_shared_by_every_gateway[{alias.name}]",
                            answer == "miss" and all(r == "hit" for r in repeats.values()),
                            "miss, then a hit on every gateway", seen,
                            "journalctl -u litellm (cache lines); is Redis reachable (redis_lets_the_gateway_in)?"))
    return checks
