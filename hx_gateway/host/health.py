"""Runs on the gateway host as root (python3 -I -S, the standard library only): is the service (or a
canary) healthy after a (re)start? Sent as this file's text by hx_gateway/pyinfra_ext/health.py.

    python3 -I -S host_health.py '[BASE_URL, LIMIT_S, ENV_FILE, UNIT, [MODEL, ...]]'

Polls /health/liveliness, giving up early when systemd had to restart the unit (it exited at start),
then a smoke check: /v1/models with the master key, read from the env file here so it never travels
or shows on a command line. Prints "" when healthy, else what failed.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.request


def loopback_tls() -> ssl.SSLContext:
    """For HTTPS on loopback: the certificate names the host clients use, not 127.0.0.1, and this probe
    asks only whether this host's service is up and serves its models; whether clients can trust the
    certificate is verify's check, from outside, against the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no trust store loaded: nothing is verified here
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# Straight to the gateway: a proxy from the environment is never the path.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                     urllib.request.HTTPSHandler(context=loopback_tls()))


def unit_property(unit: str, name: str) -> str:
    return subprocess.run(["systemctl", "show", "-p", name, "--value", unit], capture_output=True, text=True,
                          check=False).stdout.strip()


def exited_at_start(unit: str) -> str:
    """What systemd says when the unit's main process exited and it restarts or gave up; else ""."""
    state = unit_property(unit, "ActiveState")
    sub = unit_property(unit, "SubState")
    if unit_property(unit, "NRestarts") not in ("", "0") or state in ("failed", "inactive") or sub == "auto-restart":
        return f"{unit} exited at start (systemd state {state}/{sub})"
    return ""


def live(base: str) -> bool:
    try:
        with DIRECT.open(base + "/health/liveliness", timeout=2) as answer:
            return answer.status == 200
    except Exception:
        return False


def master_key(env_file: str) -> str:
    with open(env_file) as fh:
        entries = dict(line.split("=", 1) for line in fh.read().splitlines() if "=" in line)
    return entries["LITELLM_MASTER_KEY"]


def smoke_problem(base: str, env_file: str, models: list[str]) -> str:
    ask = urllib.request.Request(base + "/v1/models", headers={"Authorization": "Bearer " + master_key(env_file)})
    try:
        with DIRECT.open(ask, timeout=10) as answer:
            listed = {m["id"] for m in json.load(answer)["data"]}
    except Exception as exc:
        return f"smoke check: /v1/models failed: {type(exc).__name__}: {exc}"
    missing = sorted(set(models) - listed)
    return f"smoke check: /v1/models lacks {missing}" if missing else ""


def health_problem(base: str, limit: float, env_file: str, unit: str, models: list[str]) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        exited = exited_at_start(unit)
        if exited:
            return exited
        if live(base):
            return smoke_problem(base, env_file, models)
        time.sleep(0.5)
    return f"/health/liveliness did not answer 200 within {limit}s"


if __name__ == "__main__":
    print(health_problem(*json.loads(sys.argv[1])))
