"""Gateway auth without a database, loaded by LiteLLM from the config directory (it also installs
hx_speedups.py, beside it).

`general_settings.custom_auth: hx_auth.user_api_key_auth` and `litellm_settings.callbacks:
["hx_auth.limits"]` in config.yaml. What a client gets:

  no key, wrong key, expired key         401  (OpenAI-style error body)
  key not allowed to use the model       403
  over the key's requests per minute     429  with Retry-After (seconds until a slot frees)
  over the key's concurrent requests     429  with Retry-After: 1 (refused, not queued)
  the master key                         full access, no limits

Client keys are stored as sha256 digests only (HX_CLIENT_KEYS_FILE). Comparisons are constant-time.
Limits are counted where every process that serves the key sees them:
  - with a Redis host (REDIS_HOST in the env file): in Redis, shared by every worker of every
    gateway, each check one atomic Lua script on Redis's own clock;
  - without one, or while Redis cannot be reached: in one SQLite file under the service's
    RuntimeDirectory (HX_LIMITS_DB), shared by this gateway's workers. A gateway that loses Redis
    says so in its journal, keeps enforcing its own limits, and tries Redis again every few seconds:
    nothing restarts, no request is let in without a valid key, none gets a 500.

`hx_auth.caching` (listed only when an alias has a cache_ttl) opts those aliases' requests into
LiteLLM's Redis response cache, and no other request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time
import types
import uuid
from typing import Any

from fastapi import Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, ProxyException, UserAPIKeyAuth

KEYS_FILE = os.environ.get("HX_CLIENT_KEYS_FILE", "/etc/litellm/client_keys.json")
LIMITS_DB = os.environ.get("HX_LIMITS_DB", "/run/litellm/limits.sqlite")
# A lease whose request never reported back (worker killed) frees itself after this long.
LEASE_SECONDS = float(os.environ.get("HX_LEASE_SECONDS", "600"))
WINDOW_SECONDS = 60.0
OPEN_ROUTES = ("/health/liveliness", "/health/readiness")
METRICS_ROUTE = "/metrics"


class ClientKey:
    # A plain class: LiteLLM loads this file without registering it in sys.modules, which
    # dataclasses need.
    __slots__ = ("name", "sha256", "models", "rpm", "max_concurrent", "expires")

    def __init__(self, name: str, sha256: str, models: tuple[str, ...], rpm: int, max_concurrent: int,
                 expires: dt.date | None) -> None:
        self.name, self.sha256, self.models = name, sha256, models
        self.rpm, self.max_concurrent, self.expires = rpm, max_concurrent, expires


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _load_keys(path: str = KEYS_FILE) -> tuple[ClientKey, ...]:
    try:
        with open(path) as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return ()
    return tuple(
        ClientKey(k["name"], k["sha256"], tuple(k.get("models") or ()), int(k["rpm"]), int(k["max_concurrent"]),
                  dt.date.fromisoformat(k["expires"]) if k.get("expires") else None)
        for k in raw.get("client_keys", [])
    )


CLIENT_KEYS = _load_keys()
MASTER_DIGEST = _digest(os.environ.get("LITELLM_MASTER_KEY", "")) if os.environ.get("LITELLM_MASTER_KEY") else ""


def _metrics() -> tuple[Any, Any]:
    """The counters the gateway's metrics process serves (a `monitor` host scrapes them), or None
    without one: the unit names PROMETHEUS_MULTIPROC_DIR only then, and only what is written there is
    read. LiteLLM loads this file once for custom_auth and again for each callback it names (importlib's
    spec_from_file_location, never cached in sys.modules), and two counters of one name in one process
    would overwrite each other's samples: the first copy's counters are kept in sys.modules."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None, None
    shared = sys.modules.get(METRICS_MODULE)
    if shared is None:
        from prometheus_client import Counter

        shared = types.ModuleType(METRICS_MODULE)
        # Not registered in the process's default registry: the metrics process reads the samples' files.
        shared.refusals = Counter("hx_gateway_auth_refusals", "Requests refused by the gateway's auth "
                                  "(401/403/429), by key name", ["key", "status"], registry=None)
        shared.cooldowns = Counter("hx_gateway_failover_cooldowns", "Backends cooled down after a connection "
                                   "failure (hx_auth.failover)", ["model_group", "api_base"], registry=None)
        sys.modules[METRICS_MODULE] = shared
    return shared.refusals, shared.cooldowns


# What LiteLLM's own metrics do not count: refusals in auth (they never reach its callbacks), by the
# key's name ("(unknown)" for a key no client has, "(none)" without one), and our failover cool-downs.
METRICS_MODULE = "hx_auth_metrics"
REFUSALS, COOLDOWNS = _metrics()


def _error(status: int, message: str, kind: str, retry_after: float | None = None,
           client: ClientKey | None = None, presented: bool = True) -> ProxyException:
    if REFUSALS is not None:
        REFUSALS.labels(key=client.name if client else "(unknown)" if presented else "(none)", status=str(status)).inc()
    headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))} if retry_after is not None else None
    error = ProxyException(message=message, type=kind, param=None, code=status, headers=headers)
    # The key's name, for the usage records (hx_usage.py): a refusal in auth has no key on the request yet.
    error.hx_client = client.name if client else None  # type: ignore[attr-defined]
    return error


def _strip_bearer(api_key: str | None) -> str:
    key = (api_key or "").strip()
    return key[7:].strip() if key.lower().startswith("bearer ") else key


def find_client(presented: str, keys: tuple[ClientKey, ...] = CLIENT_KEYS) -> ClientKey | None:
    """Compare against every key (constant time each), so timing does not say which one matched."""
    digest = _digest(presented)
    found = None
    for key in keys:
        if hmac.compare_digest(digest, key.sha256):
            found = key
    return found


class LimitStore:
    """Sliding-window request counts and in-flight leases, shared by all workers via SQLite."""

    def __init__(self, path: str = LIMITS_DB) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    def _db(self) -> sqlite3.Connection:
        # gunicorn imports this module in its master and forks: never share a connection across a fork.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        """Workers start together: switching to WAL takes a lock SQLite's busy timeout does not wait
        for ("database is locked" at once, seen as a 500 under load), so retry for a few seconds."""
        deadline = time.monotonic() + 5
        while True:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, ts REAL NOT NULL)")
                conn.execute("CREATE INDEX IF NOT EXISTS hits_key_ts ON hits (key, ts)")
                conn.execute("CREATE TABLE IF NOT EXISTS leases (id TEXT PRIMARY KEY, key TEXT NOT NULL, "
                             "expires REAL NOT NULL)")
                return conn
            except sqlite3.OperationalError:
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def take_request(self, key: str, rpm: int, now: float | None = None) -> float | None:
        """Count one request; None if allowed, else the seconds until the window has room."""
        now = time.time() if now is None else now
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM hits WHERE ts <= ?", (now - WINDOW_SECONDS,))
            rows = db.execute("SELECT ts FROM hits WHERE key = ? ORDER BY ts", (key,)).fetchall()
            if len(rows) >= rpm:
                db.execute("COMMIT")
                return rows[len(rows) - rpm][0] + WINDOW_SECONDS - now
            db.execute("INSERT INTO hits (key, ts) VALUES (?, ?)", (key, now))
            db.execute("COMMIT")
            return None
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def acquire(self, key: str, limit: int, lease_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM leases WHERE expires <= ?", (now,))
            (held,) = db.execute("SELECT COUNT(*) FROM leases WHERE key = ?", (key,)).fetchone()
            if held >= limit:
                db.execute("COMMIT")
                return False
            db.execute("INSERT OR REPLACE INTO leases (id, key, expires) VALUES (?, ?, ?)",
                       (lease_id, key, now + LEASE_SECONDS))
            db.execute("COMMIT")
            return True
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def release(self, key: str, lease_id: str) -> None:
        self._db().execute("DELETE FROM leases WHERE id = ? AND key = ?", (lease_id, key))


RATE_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
local held = redis.call('ZCARD', KEYS[1])
local limit = tonumber(ARGV[1])
if held >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], held - limit, held - limit, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - t)
end
redis.call('ZADD', KEYS[1], t, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return false
"""
LEASE_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], t + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
return 1
"""


class RedisLimitStore:
    """The same limits in Redis: a sorted set per key of request times (rpm) and of lease expiries
    (in flight), each check one script, so two gateways never both take the last slot."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._rate = client.register_script(RATE_SCRIPT)
        self._lease = client.register_script(LEASE_SCRIPT)

    def take_request(self, key: str, rpm: int, now: float | None = None) -> float | None:
        wait = self._rate(keys=[f"hx:rpm:{key}"], args=[rpm, WINDOW_SECONDS, uuid.uuid4().hex])
        return None if wait is None else max(0.0, float(wait))

    def acquire(self, key: str, limit: int, lease_id: str, now: float | None = None) -> bool:
        return bool(self._lease(keys=[f"hx:lease:{key}"], args=[limit, lease_id, LEASE_SECONDS]))

    def release(self, key: str, lease_id: str) -> None:
        self.client.zrem(f"hx:lease:{key}", lease_id)


# While Redis is unreachable a worker asks it again after this long (each failed try costs at most
# the client's timeout once, not on every request: the client does not retry by itself).
REDIS_RETRY_SECONDS = 5.0
REDIS_TIMEOUT_SECONDS = 0.25


class SharedLimits:
    """Redis when it answers, this gateway's own SQLite counts while it does not (said in the journal)."""

    def __init__(self, shared: Any, local: LimitStore) -> None:
        self.shared, self.local = shared, local
        self._retry_at = 0.0
        self._down_since: float | None = None

    def _call(self, method: str, *args: Any) -> Any:
        if time.monotonic() >= self._retry_at:
            try:
                result = getattr(self.shared, method)(*args)
            except Exception as exc:  # redis.RedisError, OSError: never a 500 for the client
                self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    _warn(f"Redis unreachable ({type(exc).__name__}: {exc}): this gateway enforces its own "
                          f"limits until it is back (retrying every {REDIS_RETRY_SECONDS:.0f} s)")
            else:
                if self._down_since is not None:
                    _warn(f"Redis is back after {time.monotonic() - self._down_since:.0f} s: limits are shared again")
                    self._down_since = None
                return result
        return getattr(self.local, method)(*args)

    def take_request(self, key: str, rpm: int) -> float | None:
        return self._call("take_request", key, rpm)

    def acquire(self, key: str, limit: int, lease_id: str) -> bool:
        return self._call("acquire", key, limit, lease_id)

    def release(self, key: str, lease_id: str) -> None:
        # Wherever it was taken: a lease missing from one store costs nothing to release there.
        self.local.release(key, lease_id)
        if time.monotonic() >= self._retry_at:
            try:
                self.shared.release(key, lease_id)
            except Exception:  # it expires by itself
                pass


def _warn(message: str) -> None:
    print(f"hx_auth WARNING: {message}", file=sys.stderr, flush=True)


def _store() -> Any:
    local = LimitStore()
    if not os.environ.get("REDIS_HOST"):
        return local
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # One try per call, never redis-py's default of 10 retries with up to 1 s backoff each: these calls
    # run on the worker's event loop, and seconds of retrying there stall every request and the
    # balancer's health check with it (both gateways out of rotation at once: 503s for clients).
    client = redis.Redis(host=os.environ["REDIS_HOST"], port=int(os.environ.get("REDIS_PORT", "6379")),
                         username=os.environ.get("REDIS_USERNAME") or None,
                         password=os.environ.get("REDIS_PASSWORD") or None,
                         socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                         retry=Retry(NoBackoff(), 0))
    return SharedLimits(RedisLimitStore(client), local)


STORE = _store()


async def _requested_model(request: Request) -> str | None:
    try:
        from litellm.proxy.common_utils.http_parsing_utils import _read_request_body

        body = await _read_request_body(request=request)
    except Exception:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    if request.url.path in OPEN_ROUTES:
        return UserAPIKeyAuth(user_role=LitellmUserRoles.INTERNAL_USER_VIEW_ONLY)
    presented = _strip_bearer(api_key)
    if not presented:
        raise _error(401, "Missing API key: send 'Authorization: Bearer <key>'.", "authentication_error",
                     presented=False)
    digest = _digest(presented)
    if MASTER_DIGEST and hmac.compare_digest(digest, MASTER_DIGEST):
        return UserAPIKeyAuth(api_key=digest, user_role=LitellmUserRoles.PROXY_ADMIN)
    client = find_client(presented)
    if client is None:
        raise _error(401, "Invalid API key.", "authentication_error")
    if request.url.path.rstrip("/") == METRICS_ROUTE:  # every key's names and counts: not for a client
        raise _error(403, f"API key '{client.name}' may not read the gateway's metrics.", "permission_error",
                     client=client)
    if client.expires is not None and dt.date.today() > client.expires:
        raise _error(401, f"API key '{client.name}' expired on {client.expires.isoformat()}.", "authentication_error",
                     client=client)
    model = await _requested_model(request)
    if model is not None and client.models and model not in client.models:
        raise _error(403, f"API key '{client.name}' may not use model '{model}'.", "permission_error", client=client)
    wait = STORE.take_request(client.name, client.rpm)
    if wait is not None:
        raise _error(429, f"API key '{client.name}' is over its limit of {client.rpm} requests per minute.",
                     "rate_limit_error", retry_after=wait, client=client)
    return UserAPIKeyAuth(api_key=digest, key_alias=client.name, key_name=client.name,
                          models=list(client.models), metadata={"hx_client": client.name},
                          user_role=LitellmUserRoles.INTERNAL_USER)


def _client_of(user_api_key_dict: UserAPIKeyAuth) -> ClientKey | None:
    name = (user_api_key_dict.metadata or {}).get("hx_client")
    return next((k for k in CLIENT_KEYS if k.name == name), None)


class ConcurrencyLimits(CustomLogger):
    """Holds a lease per in-flight request of a client key; refuses the one over the limit."""

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict,
                                  call_type: Any) -> dict:
        client = _client_of(user_api_key_dict)
        if client is None:
            return data
        lease_id = data.setdefault("litellm_call_id", str(uuid.uuid4()))
        if not STORE.acquire(client.name, client.max_concurrent, lease_id):
            raise _error(429, f"API key '{client.name}' already has {client.max_concurrent} requests in flight.",
                         "rate_limit_error", retry_after=1, client=client)
        return data

    def _release(self, data: dict, user_api_key_dict: UserAPIKeyAuth) -> None:
        # Only client keys hold leases: the master key's requests never touch the database.
        client = _client_of(user_api_key_dict)
        if client is None:
            return
        lease_id = data.get("litellm_call_id") if isinstance(data, dict) else None
        if lease_id:
            STORE.release(client.name, lease_id)

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: UserAPIKeyAuth, response: Any) -> Any:
        self._release(data, user_api_key_dict)
        return response

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: UserAPIKeyAuth, traceback_str: str | None = None):
        self._release(request_data, user_api_key_dict)
        return None

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: UserAPIKeyAuth, response: Any,
                                                      request_data: dict):
        try:
            async for item in response:
                yield item
        finally:
            self._release(request_data, user_api_key_dict)


limits = ConcurrencyLimits()


class ConnectionFailover(CustomLogger):
    """Cool down a deployment whose backend cannot be reached, so retries go to another one.

    LiteLLM 1.106 exempts APIConnectionError from cooldown (router_utils/cooldown_handlers.py,
    `_is_cooldown_required`): with a backend down, a request's retries can all land on it again
    and the client sees a 500. Only for groups with another deployment to go to.
    """

    def _cool_down(self, kwargs: dict) -> None:
        exception = kwargs.get("exception")
        if type(exception).__name__ != "APIConnectionError":
            return
        try:
            from litellm.proxy.proxy_server import llm_router

            litellm_params = kwargs.get("litellm_params") or {}
            model_id = (litellm_params.get("model_info") or {}).get("id")
            group = (litellm_params.get("metadata") or {}).get("model_group") or kwargs.get("model_group")
            if llm_router is None or not model_id or len(llm_router.get_model_list(model_name=group) or []) < 2:
                return
            llm_router.cooldown_cache.add_deployment_to_cooldown(model_id=model_id, original_exception=exception,
                                                                  exception_status=503, cooldown_time=None)
            if COOLDOWNS is not None:
                COOLDOWNS.labels(model_group=str(group), api_base=str(litellm_params.get("api_base") or "")).inc()
        except Exception:  # never let the workaround break a request
            pass

    def log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._cool_down(kwargs)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._cool_down(kwargs)


failover = ConnectionFailover()


def parse_cache_ttls(value: str) -> dict[str, int]:
    """HX_CACHE_TTLS, `alias=seconds,...` (rendered by the deploy from model_aliases' cache_ttl)."""
    pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
    return {alias: int(seconds) for alias, seconds in pairs}


CACHE_TTLS = parse_cache_ttls(os.environ.get("HX_CACHE_TTLS", ""))
# What a client may still say about an opted-in alias: skip reading, or skip writing, the cache.
CLIENT_CACHE_CONTROLS = ("no-cache", "no-store")


def cache_request(data: dict, ttls: dict[str, int] = CACHE_TTLS) -> dict:
    """Opt the request into LiteLLM's cache (mode default_off) when its alias has a cache_ttl.

    Only the operator opts an alias in: a client's own `cache` parameter is dropped for any other
    alias (it would otherwise cache there with no expiry); for a cached alias the client may send
    no-cache / no-store, never a longer ttl. The cache key is the request (alias, messages,
    parameters), not the key: identical requests share a response whichever key sent them."""
    asked = data.pop("cache", None)
    ttl = ttls.get(data.get("model") or "")
    if ttl:
        controls = {name: True for name in CLIENT_CACHE_CONTROLS if isinstance(asked, dict) and asked.get(name) is True}
        data["cache"] = {"use-cache": True, "ttl": ttl, **controls}
    return data


class ResponseCache(CustomLogger):
    """Loaded only when some alias has a cache_ttl (config.yaml's callbacks)."""

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict,
                                  call_type: Any) -> dict:
        return cache_request(data)


caching = ResponseCache()


def _load_sibling(name: str) -> Any:
    """A module beside this file, loaded the way LiteLLM loads this one (by path, not sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


# LiteLLM loads this module from the config directory at start; the speed-ups ride along.
_load_sibling("hx_speedups").install()
