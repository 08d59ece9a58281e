"""The fleet on the lab (issue 23): HAProxy against straight to one gateway, the Redis limiter against
SQLite, and a rolling restart's duration.

    python bench/fleet.py [--gateways 2] [--seconds 15]

Converges the fleet lab (hx-redis, hx-lb, N gateways) with fresh random secrets first. Load levels
alternate direct / balancer in one run, so the two are compared on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import REPO, report, use_random_secrets

from hx_gateway.load import chat_body, run_load
from lab.lab import Lab, address_of, exec_in

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")
ALIAS = "phi3-3.8b"
# Runs on a gateway with its venv's python, as root with the env file loaded: N limit checks against
# Redis (the shared store) and against SQLite (the single-gateway store), the auth module's own classes.
LIMITER_PROBE = """
import importlib.util, json, os, statistics, time, uuid
spec = importlib.util.spec_from_file_location("hx_auth", "/etc/litellm/hx_auth.py")
auth = importlib.util.module_from_spec(spec); spec.loader.exec_module(auth)
def timed(store, n=2000):
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        store.take_request("bench-" + str(os.getpid()), 10**9)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return {"p50_us": round(samples[n // 2], 1), "p99_us": round(samples[int(n * 0.99)], 1)}
local = auth.LimitStore("/tmp/hx-bench-limits.sqlite")
shared = auth.STORE.shared
print(json.dumps({"redis": timed(shared), "sqlite": timed(local)}))
"""


def deploy(group_data: Path | None = None) -> float:
    extra = ["--group-data", str(group_data)] if group_data else []
    started = time.perf_counter()
    result = subprocess.run([PYINFRA, "-y", *extra, "lab/inventory.py", "deploy.py"], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:])
    return round(time.perf_counter() - started, 1)


def limiter_figures(gateway: str) -> dict:
    exec_in(gateway, "sh", "-c", "cat > /tmp/hx-limiter-probe.py", stdin=LIMITER_PROBE.encode())
    out = exec_in(gateway, "sh", "-c", "set -a; . /etc/litellm/litellm.env; set +a; cd /tmp; "
                  "/opt/litellm/current/bin/python /tmp/hx-limiter-probe.py 2>/dev/null | tail -1")
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    os.environ.update({"HX_LAB_FLEET": "1", "HX_LAB_GATEWAYS": str(args.gateways)})
    key = use_random_secrets(HX_REDIS_PASSWORD="sk-" + os.urandom(24).hex())
    replace(Lab.from_env(), fleet=True).up()
    deploy()
    direct, balancer = f"http://{address_of('hx-api')}:4000", f"http://{address_of('hx-lb')}:4000"
    run_load(balancer, key, chat_body(ALIAS), 80, 8)  # warm every worker of every gateway
    figures: dict = {"gateways": args.gateways, "load_seconds": args.seconds}
    for concurrency in (8, 32):
        for name, url in (("direct_one_gateway", direct), ("through_haproxy", balancer)):
            summary = run_load(url, key, chat_body(ALIAS), 10**9, concurrency, max_seconds=args.seconds).summary()
            figures[f"{name}_c{concurrency}"] = {k: summary[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
    figures["limiter_per_request"] = limiter_figures("hx-api")
    rolls = []
    with tempfile.TemporaryDirectory() as scratch:
        for cooldown in (31, 30):  # two restarting changes, back to the default
            (Path(scratch) / "litellm.py").write_text(f"cooldown_time = {cooldown}\n")
            rolls.append(deploy(Path(scratch)))
    figures["rolling_restart_deploy_s"] = rolls
    figures["noop_deploy_s"] = deploy()
    report("fleet", figures)


if __name__ == "__main__":
    main()
