"""Gateway throughput on the lab: the deploy's defaults against a seed-style config, and the same
requests straight to an Ollama double; fixed concurrency, time-bounded, medians of latencies.

    python bench/gateway_throughput.py [--seconds 15] [--concurrency 1 8 32]

Seed-style = what the operators' notes ran (bench/seed_style.py): 1 uvicorn worker, the `ollama/`
route, LiteLLM's own master-key auth, none of the deploy's tuning; it runs beside the deployed
gateway on the same host and the two are measured level by level. `tuned_one_uvicorn_worker` is the
deploy with only the seeds' server and route, to show what the server choice alone is worth.
Goal (issue: benchmarks): defaults >= 2x seed-style requests/s at c=8, p99 <= 3x p50, zero errors.
The lab's doubles answer after 50 ms, so the gateway's own cost is what differs between configs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, report, use_random_secrets  # first: it puts the repository on sys.path
from seed_style import start_seed_gateway, stop_seed_gateway

from hx_gateway.load import chat_body, run_load
from hx_gateway.plan import gateway_plan
from hx_gateway.settings import Settings
from hx_gateway.verify import load_inventory
from lab.lab import Lab, address_of, exec_in

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")
# Deploy profiles: group data on top of the lab's, converged before they are measured.
PROFILES = {
    "defaults": "",
    # The deploy with the seeds' server choices only: isolates server/route from the rest of the config.
    "tuned_one_uvicorn_worker": "workers = 1\nserver = 'uvicorn'\nchat_route = 'ollama'\n",
    "openai_route": "chat_route = 'openai'\n",  # the defaults with Ollama's OpenAI-compatible /v1
}
ALIAS, OLLAMA_MODEL = "phi3-3.8b", "phi3:3.8b-mini-128k-instruct-q8_0"
SEED_PORT = 4001


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


def lab_settings() -> Settings:
    state = load_inventory(str(REPO / "lab" / "inventory.py"))
    gateway = state.inventory.get_group("litellm")[0]
    return gateway_plan(gateway.data.dict(), gateway.name).settings


def measure(url: str, key: str, model: str, concurrency: int, seconds: float) -> dict:
    return run_load(url, key, chat_body(model), 10**9, concurrency, max_seconds=seconds).summary()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    key = use_random_secrets()
    Lab().up()
    host = address_of("hx-api")
    gateway, seed = f"http://{host}:4000", f"http://{host}:{SEED_PORT}"
    figures: dict = {"seconds_per_level": args.seconds}
    # The defaults and the seed-style gateway side by side on the same host, level by level, so
    # both see the same machine at the same time.
    converge(PROFILES["defaults"])
    run_load(gateway, key, chat_body(ALIAS), 20, 4)  # warm up every worker
    figures["defaults"] = {"rss_mb": service_rss_mb()}
    start_seed_gateway("hx-api", lab_settings(), key, SEED_PORT)
    try:
        run_load(seed, key, chat_body(ALIAS), 20, 4)
        figures["seed_style"] = {"rss_mb": round(service_rss_mb() - figures["defaults"]["rss_mb"], 1)}
        for concurrency in args.concurrency:
            for profile, url in (("defaults", gateway), ("seed_style", seed)):
                figures[profile][f"c{concurrency}"] = measure(url, key, ALIAS, concurrency, args.seconds)
                print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    finally:
        stop_seed_gateway("hx-api")
    for profile, group_data in PROFILES.items():
        if profile == "defaults":
            continue
        converge(group_data)
        run_load(gateway, key, chat_body(ALIAS), 20, 4)
        figures[profile] = {"rss_mb": service_rss_mb()}
        for concurrency in args.concurrency:
            figures[profile][f"c{concurrency}"] = measure(gateway, key, ALIAS, concurrency, args.seconds)
            print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    converge(PROFILES["defaults"])  # leave the lab on the defaults
    direct = f"http://{address_of('hx-llm01')}:11434"
    figures["direct_to_double"] = {f"c{c}": measure(direct, "unused", OLLAMA_MODEL, c, args.seconds)
                                   for c in args.concurrency}
    at8 = "c8" if "c8" in figures["defaults"] else f"c{args.concurrency[-1]}"
    ours, theirs = figures["defaults"][at8], figures["seed_style"][at8]
    figures["ratio_rps_defaults_over_seed"] = round(ours["rps"] / theirs["rps"], 2) if theirs["rps"] else None
    figures["defaults_p99_over_p50"] = round(ours["p99_ms"] / ours["p50_ms"], 2) if ours["p50_ms"] else None
    report("gateway_throughput", figures)


if __name__ == "__main__":
    main()
