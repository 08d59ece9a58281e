"""The fan-out check against a stand-in gateway (httpx.MockTransport): it passes only when every
backend serves part of a burst, retries a lopsided burst a bounded number of times, and fails on
errors or on a backend that never serves."""

from __future__ import annotations

import itertools
import threading

import httpx

from hx_gateway.model.settings import ModelAlias
from hx_gateway.proof.checks import BURST_ATTEMPTS, BURST_REQUESTS, _fan_out_check

BACKENDS = ("http://llm01:11434", "http://llm02:11434")
ALIAS = ModelAlias("phi3", "phi3:mini", "chat", BACKENDS)


def gateway(pick_backend) -> httpx.Client:
    """A client whose gateway answers each request with `pick_backend(n)` (n counts from 0);
    None means a 500."""
    counter, lock = itertools.count(), threading.Lock()

    def handle(request: httpx.Request) -> httpx.Response:
        with lock:
            n = next(counter)
        backend = pick_backend(n)
        if backend is None:
            return httpx.Response(500)
        return httpx.Response(200, json={}, headers={"x-litellm-model-api-base": backend})

    return httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(handle))


def fan_out(pick_backend, read_backend_counts=None):
    with gateway(pick_backend) as client:
        return _fan_out_check(client, None, "gw", ALIAS, {}, read_backend_counts)


def test_a_spread_burst_passes_at_once():
    check = fan_out(lambda n: BACKENDS[n % 2])
    assert check.ok
    assert check.figures["bursts"] == 1
    assert sum(check.figures["gateway_says"].values()) == BURST_REQUESTS


def test_a_lopsided_first_burst_is_retried():
    check = fan_out(lambda n: BACKENDS[0] if n < BURST_REQUESTS else BACKENDS[n % 2])
    assert check.ok
    assert check.figures["bursts"] == 2


def test_a_backend_that_never_serves_fails_after_the_last_burst():
    check = fan_out(lambda n: BACKENDS[0])
    assert not check.ok
    assert check.figures["bursts"] == BURST_ATTEMPTS
    assert check.figures["gateway_says"] == {BACKENDS[0]: BURST_REQUESTS}


def test_an_error_fails_without_retrying():
    check = fan_out(lambda n: None if n == 3 else BACKENDS[n % 2])
    assert not check.ok
    assert check.figures["bursts"] == 1
    assert check.figures["gateway_says"]["error"] == 1


def test_the_backends_own_count_must_agree():
    # The gateway header claims both, but llm02 holds no connection from the gateway.
    check = fan_out(lambda n: BACKENDS[n % 2], lambda: {BACKENDS[0]: 3, BACKENDS[1]: 0})
    assert not check.ok
    assert check.figures["backends_say"] == {BACKENDS[0]: 3, BACKENDS[1]: 0}
