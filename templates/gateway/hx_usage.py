"""Usage records: one row per request in PostgreSQL, written off the request path (group `db`).

Loaded by LiteLLM from the config directory when config.yaml lists `hx_usage.recorder` in
`litellm_settings.callbacks` (only with a `db` host); where to write comes from the env file
(HX_USAGE_HOST, _PORT, _DATABASE, _USER, _PASSWORD, _QUEUE_ROWS).

What a row holds: when, the LiteLLM call id (the `x-litellm-call-id` header a client saw), the
gateway, the client key's *name* (never the key; `(master)` for the master key), the alias, the
backend that answered, the HTTP status, prompt and completion tokens, latency, streamed or not.
An answered request (streamed: once the stream ended) is recorded from LiteLLM's logging payload;
a refused or failed one (429, 403, a backend error) from the proxy's failure hook, without latency.

A request never waits for its row: the callback puts it in a bounded queue and returns. One writer
thread per worker process sends batches with COPY. While PostgreSQL is slow or down, rows wait in the
queue (db_queue_rows); beyond that they are dropped and the count goes to the journal at most once a
minute. When the database answers again, the writer reconnects and the queue drains: nothing restarts.
When the worker process exits (a stop or restart, after it has drained its requests), the writer is
given EXIT_SECONDS to write what it still holds, so a deploy's restart loses no row.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from litellm.integrations.custom_logger import CustomLogger

COLUMNS = ("at", "call_id", "gateway", "client_key", "alias", "backend", "status", "prompt_tokens",
           "completion_tokens", "latency_ms", "streamed")
COPY_SQL = f"COPY usage_requests ({', '.join(COLUMNS)}) FROM STDIN"
BATCH_ROWS = 500  # rows per COPY
FLUSH_SECONDS = 1.0  # a row waits at most this long for others to share its batch
RETRY_SECONDS = 2.0  # between attempts to reach a database that failed
WARN_EVERY_SECONDS = 60.0
EXIT_SECONDS = 5.0  # at a worker's exit, for the rows still queued (the unit's TimeoutStopSec leaves 15 s)
_WAKE: Any = object()  # put in the queue at exit, so the writer thread does not wait for a row that will not come
MASTER = "(master)"  # not a client key name: those never contain parentheses
UNKNOWN = "(none)"  # refused before a key was recognised
GATEWAY = socket.gethostname()


def _warn(message: str) -> None:
    print(f"hx_usage: {message}", file=sys.stderr, flush=True)


def connect_arguments(environ: Mapping[str, str]) -> dict[str, Any]:
    """psycopg.connect's keywords from the env file. The server's certificate is Debian's self-signed
    one, so the wire is encrypted (sslmode=require) but the server is not authenticated by it: the
    password never crosses it (SCRAM), and pg_hba admits only the gateways' addresses."""
    return {"host": environ["HX_USAGE_HOST"], "port": int(environ.get("HX_USAGE_PORT", "5432")),
            "dbname": environ["HX_USAGE_DATABASE"], "user": environ["HX_USAGE_USER"],
            "password": environ["HX_USAGE_PASSWORD"], "connect_timeout": 3, "sslmode": "require",
            "application_name": f"hx-gateway usage ({GATEWAY})"}


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else time.time()


def _key_name(alias: Any, is_admin: bool) -> str:
    if isinstance(alias, str) and alias:
        return alias
    return MASTER if is_admin else UNKNOWN


def backend_of(api_base: Any) -> str | None:
    """The backend as the settings name it (scheme://host:port): LiteLLM's api_base carries the endpoint's path."""
    if not isinstance(api_base, str) or not api_base:
        return None
    parts = urlsplit(api_base)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else api_base


def answered_row(payload: Mapping[str, Any], gateway: str = GATEWAY) -> tuple:
    """The row of an answered request, from LiteLLM's standard logging payload."""
    metadata = payload.get("metadata") or {}
    started, ended = _epoch(payload.get("startTime")), _epoch(payload.get("endTime"))
    # Every client key carries its name (hx_auth's key_alias); the master key is the only one without.
    is_admin = bool(metadata.get("user_api_key_hash"))
    backend = "(cache)" if payload.get("cache_hit") else backend_of(payload.get("api_base"))
    return (dt.datetime.fromtimestamp(started, dt.timezone.utc), payload.get("litellm_call_id") or payload.get("id"),
            gateway, _key_name(metadata.get("user_api_key_alias"), is_admin),
            payload.get("model_group") or payload.get("model"), backend, 200,
            int(payload.get("prompt_tokens") or 0), int(payload.get("completion_tokens") or 0),
            max(0, round((ended - started) * 1000)), bool(payload.get("stream")))


def refused_row(request_data: Mapping[str, Any], exception: Exception, key_alias: Any, is_admin: bool,
                gateway: str = GATEWAY) -> tuple:
    """The row of a request that got an error instead of an answer (no latency: the proxy's failure hook
    does not say when the request started)."""
    status = getattr(exception, "status_code", None) or getattr(exception, "code", None)
    try:
        status = int(status)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        status = 500
    model = request_data.get("model")
    return (dt.datetime.now(dt.timezone.utc), request_data.get("litellm_call_id"), gateway,
            _key_name(key_alias, is_admin), model if isinstance(model, str) else None, None, status, 0, 0, None,
            bool(request_data.get("stream")))


def copy_rows(connection: Any, rows: list[tuple]) -> None:
    """One batch in one transaction: all of it is written, or none (then it is tried again)."""
    with connection.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
        for row in rows:
            copy.write_row(row)
    connection.commit()


class Writer:
    """A bounded queue and the thread that empties it into the database (started in the process that
    records: a gunicorn worker is forked after this module loads, and threads do not survive a fork)."""

    def __init__(self, connect: Callable[[], Any], capacity: int, write: Callable[[Any, list[tuple]], None] = copy_rows,
                 warn: Callable[[str], None] = _warn) -> None:
        self.connect, self.write, self.warn = connect, write, warn
        self.rows: queue.Queue[tuple] = queue.Queue(capacity)
        self.capacity = capacity
        self.written = 0
        self.dropped = 0  # since the last warning about it
        self._pid = 0
        self._lock = threading.Lock()
        self._last_drop_warning = 0.0
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    def offer(self, row: tuple) -> None:
        """Queue a row without ever waiting; a full queue drops it (counted)."""
        if self._pid != os.getpid():
            self._start()
        try:
            self.rows.put_nowait(row)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            self._warn_drops()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            if self.rows.qsize():  # rows the parent had queued before the fork are the parent's to write
                self.rows = queue.Queue(self.capacity)
            threading.Thread(target=self._run, name="hx-usage-writer", daemon=True).start()
            # Interpreter exit: gunicorn's workers leave with sys.exit, uvicorn's spawned ones too. The
            # thread is a daemon, so it still runs while atexit's handlers do.
            atexit.register(self.stop)

    def stop(self, timeout: float = EXIT_SECONDS) -> bool:
        """At exit: write what is queued (waiting at most `timeout` seconds); True when nothing is left."""
        if self._pid != os.getpid():
            return True  # no writer thread in this process: it never recorded
        self._stopping.set()
        try:
            self.rows.put_nowait(_WAKE)
        except queue.Full:
            pass  # the thread has rows to take: it is not waiting
        if self._stopped.wait(timeout):
            return True
        self.warn(f"exit: {self.rows.qsize()} usage rows or more not written within {timeout:g} s")
        return False

    def _warn_drops(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if not self.dropped or now - self._last_drop_warning < WARN_EVERY_SECONDS:
                return
            dropped, self.dropped, self._last_drop_warning = self.dropped, 0, now
        self.warn(f"dropped {dropped} usage rows: the queue of {self.capacity} is full while the usage "
                  f"database does not take rows (requests are served as usual)")

    def take_batch(self, first_wait: float | None = None) -> list[tuple]:
        """The next batch: waits for one row (`first_wait` seconds at most), then up to BATCH_ROWS more
        that arrive within FLUSH_SECONDS; once stopping, only what is queued, without waiting."""
        try:
            batch = [self.rows.get(timeout=0 if self._stopping.is_set() else first_wait)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(batch) < BATCH_ROWS:
            try:
                if self._stopping.is_set():
                    batch.append(self.rows.get_nowait())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                batch.append(self.rows.get(timeout=left))
            except queue.Empty:
                break
        return [row for row in batch if row is not _WAKE]

    def flush_once(self, connection: Any, batch: list[tuple]) -> tuple[Any, list[tuple], str]:
        """Try to write `batch`: (the connection to keep, what is still to write, the error or "")."""
        try:
            connection = connection or self.connect()
            self.write(connection, batch)
        except Exception as error:  # the database's trouble must never reach a request
            if connection is not None:
                try:
                    connection.close()
                except Exception:
                    pass
            return None, batch, f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
        self.written += len(batch)
        return connection, [], ""

    def _run(self) -> None:
        connection, pending, failing_since = None, [], 0.0
        while True:
            pending = pending or self.take_batch()
            if not pending:  # only the wake-up at exit: nothing is left
                if self._stopping.is_set() and self.rows.empty():
                    self._stopped.set()
                    return
                continue
            connection, pending, error = self.flush_once(connection, pending)
            if error and not failing_since:
                failing_since = time.monotonic()
                self.warn(f"the usage database does not take rows ({error}); rows wait in a queue of "
                          f"{self.capacity}, retried every {RETRY_SECONDS:g} s")
            elif not error and failing_since:
                self.warn(f"the usage database takes rows again after {time.monotonic() - failing_since:.0f} s")
                failing_since = 0.0
            self._warn_drops()
            if error:
                time.sleep(RETRY_SECONDS)


def _connect() -> Any:
    import psycopg  # only in the worker that writes: the gateway starts without it when no `db` exists

    return psycopg.connect(**connect_arguments(os.environ))


def _is_admin(user_api_key_dict: Any) -> bool:
    return "admin" in str(getattr(user_api_key_dict, "user_role", "") or "").lower()


class UsageRecorder(CustomLogger):
    def __init__(self, writer: Writer) -> None:
        super().__init__()
        self.writer = writer

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        payload = kwargs.get("standard_logging_object")
        if isinstance(payload, Mapping):
            self.writer.offer(answered_row(payload))

    async def async_post_call_failure_hook(self, request_data: dict, original_exception: Exception,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> None:
        # A refusal in auth (hx_auth: 401 expired, 403, 429 over rpm) names its key on the exception.
        name = getattr(original_exception, "hx_client", None) or getattr(user_api_key_dict, "key_alias", None)
        self.writer.offer(refused_row(request_data or {}, original_exception, name, _is_admin(user_api_key_dict)))
        return None


recorder = UsageRecorder(Writer(_connect, int(os.environ.get("HX_USAGE_QUEUE_ROWS", "10000"))))
