"""Gateway throughput on the lab: the deploy's defaults against a seed-style config, and the same
requests straight to an Ollama double; fixed concurrency, time-bounded, medians of latencies.

    python bench/gateway_throughput.py [--seconds 15] [--concurrency 1 8 32]

Seed-style = what the operators' notes ran: 1 uvicorn worker, the `ollama/` route, no tuning.
Goal (issue: benchmarks): defaults >= 2x seed-style requests/s at c=8, p99 <= 3x p50, zero errors.
The lab's doubles answer after 50 ms, so the gateway's own cost is what differs between configs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, report

from hx_gateway.load import chat_body, run_load
from lab.lab import Lab, address_of, exec_in

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")
PROFILES = {
    "defaults": "",
    "seed_style": "workers = 1\nserver = 'uvicorn'\nchat_route = 'ollama'\n",
    "openai_route": "chat_route = 'openai'\n",  # the defaults with Ollama's OpenAI-compatible /v1
}
ALIAS, OLLAMA_MODEL = "phi3-3.8b", "phi3:3.8b-mini-128k-instruct-q8_0"


def converge(group_data: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "litellm.py").write_text(group_data)
        result = subprocess.run([PYINFRA, "-y", "--group-data", folder, "lab/inventory.py", "deploy.py"], cwd=REPO,
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-2000:])


def service_rss_mb() -> float:
    out = exec_in("hx-api", "sh", "-c", "ps -o rss= -u litellm || true")
    return round(sum(int(x) for x in out.split()) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    key = "sk-" + secrets.token_urlsafe(32)
    os.environ.update({"HX_MASTER_KEY": key, "HX_CLIENT_KEY_OPEN_WEBUI": "sk-" + secrets.token_urlsafe(32),
                       "HX_SECRETS_FILE": "/nonexistent"})
    Lab().up()
    gateway = f"http://{address_of('hx-api')}:4000"
    figures: dict = {"seconds_per_level": args.seconds}
    for profile, group_data in PROFILES.items():
        converge(group_data)
        run_load(gateway, key, chat_body(ALIAS), 20, 4)  # warm up every worker
        figures[profile] = {"rss_mb": service_rss_mb()}
        for concurrency in args.concurrency:
            result = run_load(gateway, key, chat_body(ALIAS), 10**9, concurrency, max_seconds=args.seconds)
            figures[profile][f"c{concurrency}"] = result.summary()
            print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    converge("")  # leave the lab on the defaults
    direct = f"http://{address_of('hx-llm01')}:11434"
    figures["direct_to_double"] = {}
    for concurrency in args.concurrency:
        result = run_load(direct, "unused", chat_body(OLLAMA_MODEL), 10**9, concurrency, max_seconds=args.seconds)
        figures["direct_to_double"][f"c{concurrency}"] = result.summary()
    at8 = "c8" if "c8" in figures["defaults"] else f"c{args.concurrency[-1]}"
    ours, seed = figures["defaults"][at8], figures["seed_style"][at8]
    figures["ratio_rps_defaults_over_seed"] = round(ours["rps"] / seed["rps"], 2) if seed["rps"] else None
    figures["defaults_p99_over_p50"] = round(ours["p99_ms"] / ours["p50_ms"], 2) if ours["p50_ms"] else None
    report("gateway_throughput", figures)


if __name__ == "__main__":
    main()
