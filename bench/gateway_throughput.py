"""Gateway throughput on the lab: the deploy's defaults against a seed-style config, and the same
requests straight to an Ollama double; fixed concurrency, time-bounded, medians over rounds.

    python bench/gateway_throughput.py [--seconds 15] [--concurrency 1 8 32] [--rounds 3]
                                       [--backend-delay-ms 0]

Seed-style = what the operators' notes ran (bench/seed_style.py): 1 uvicorn worker, the `ollama/`
route, LiteLLM's own master-key auth, none of the deploy's tuning; it runs beside the deployed
gateway on the same host and the two are measured level by level. `tuned_one_uvicorn_worker` is the
deploy with only the seeds' server and route, to show what the server choice alone is worth.
Goal (issue: benchmarks): defaults >= 2x seed-style requests/s at c=8, p99 <= 3x p50, zero errors.

The doubles answer at once by default (--backend-delay-ms 0), so what is measured is the gateway's
own capacity. With a backend delay B, 8 clients and a gateway spending c CPU-ms per request, one
event loop gives 8 / (B + 8c) and no config beats 8 / (B + c): a slow backend hides the gateway,
and the ratio between two gateways shrinks towards 1 as B grows (bench/README.md has both).
Defaults and seed-style alternate `--rounds` times per level (this VM drifts by 10-30 % over
minutes); each figure is the median over the rounds, with every round's requests/s listed.
"""

from __future__ import annotations

import argparse
import os
import resource
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
from lab.lab import DOUBLE_DELAY_MS, Lab, address_of, configure_double, exec_in

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
    """One time-bounded level, with the CPU the load generator itself used per request."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    summary = run_load(url, key, chat_body(model), 10**9, concurrency, max_seconds=seconds).summary()
    after = resource.getrusage(resource.RUSAGE_SELF)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {**summary, "client_cpu_ms_per_request": round(1000 * spent / max(1, summary["requests"]), 2)}


def median_round(rounds: list[dict]) -> dict:
    """The round with the median requests/s, plus every round's requests/s."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    return {**ordered[(len(ordered) - 1) // 2], "rps_rounds": [r["rps"] for r in rounds]}


def set_backend_delay(milliseconds: int) -> None:
    for backend in (h.name for h in Lab().hosts() if h.role == "backend"):
        configure_double(backend, {"delay_ms": milliseconds})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="defaults/seed-style alternations per level")
    parser.add_argument("--backend-delay-ms", type=int, default=0, help="how long the doubles wait to answer")
    args = parser.parse_args()
    os.chdir(REPO)  # pyinfra finds group_data/ from the working directory (lab_settings reads it)
    key = use_random_secrets()
    Lab().up()
    host = address_of("hx-api")
    gateway, seed = f"http://{host}:4000", f"http://{host}:{SEED_PORT}"
    figures: dict = {"seconds_per_level": args.seconds, "rounds": args.rounds,
                     "backend_delay_ms": args.backend_delay_ms}
    set_backend_delay(args.backend_delay_ms)
    try:
        measure_profiles(args, key, gateway, seed, figures)
    finally:
        set_backend_delay(DOUBLE_DELAY_MS)
    at8 = "c8" if "c8" in figures["defaults"] else f"c{args.concurrency[-1]}"
    ours, theirs = figures["defaults"][at8], figures["seed_style"][at8]
    figures["ratio_rps_defaults_over_seed"] = round(ours["rps"] / theirs["rps"], 2) if theirs["rps"] else None
    pairs = zip(ours["rps_rounds"], theirs["rps_rounds"], strict=True)
    figures["ratio_rounds"] = [round(a / b, 2) for a, b in pairs if b]
    figures["defaults_p99_over_p50"] = round(ours["p99_ms"] / ours["p50_ms"], 2) if ours["p50_ms"] else None
    report("gateway_throughput", figures)


def measure_profiles(args: argparse.Namespace, key: str, gateway: str, seed: str, figures: dict) -> None:
    # The defaults and the seed-style gateway side by side on the same host, alternating within
    # each level, so both see the same machine at the same time.
    converge(PROFILES["defaults"])
    run_load(gateway, key, chat_body(ALIAS), 40, 8)  # warm up every worker
    figures["defaults"] = {"rss_mb": service_rss_mb()}
    start_seed_gateway("hx-api", lab_settings(), key, SEED_PORT)
    try:
        run_load(seed, key, chat_body(ALIAS), 40, 8)
        figures["seed_style"] = {"rss_mb": round(service_rss_mb() - figures["defaults"]["rss_mb"], 1)}
        for concurrency in args.concurrency:
            rounds: dict[str, list[dict]] = {"defaults": [], "seed_style": []}
            for _ in range(args.rounds):
                for profile, url in (("defaults", gateway), ("seed_style", seed)):
                    rounds[profile].append(measure(url, key, ALIAS, concurrency, args.seconds))
            for profile, samples in rounds.items():
                figures[profile][f"c{concurrency}"] = median_round(samples)
                print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    finally:
        stop_seed_gateway("hx-api")
    for profile, group_data in PROFILES.items():  # informational: one round each
        if profile == "defaults":
            continue
        converge(group_data)
        run_load(gateway, key, chat_body(ALIAS), 40, 8)
        figures[profile] = {"rss_mb": service_rss_mb()}
        for concurrency in args.concurrency:
            figures[profile][f"c{concurrency}"] = measure(gateway, key, ALIAS, concurrency, args.seconds)
            print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    converge(PROFILES["defaults"])  # leave the lab on the defaults
    direct = f"http://{address_of('hx-llm01')}:11434"
    figures["direct_to_double"] = {f"c{c}": measure(direct, "unused", OLLAMA_MODEL, c, args.seconds)
                                   for c in args.concurrency}


if __name__ == "__main__":
    main()
