"""Gateway throughput on the lab: the deploy's defaults against a seed-style config, and the same
requests straight to an Ollama double; fixed concurrency, time-bounded, medians over rounds.

    python bench/gateway_throughput.py [--seconds 15] [--concurrency 1 8 32] [--rounds 3]
                                       [--backend-delay-ms 0] [--seed-venv seeds|deploy]

Seed-style = what the operators' notes ran (bench/seed_style.py): `litellm[proxy]` alone, 1 uvicorn
worker, the `ollama/` route, LiteLLM's own master-key auth, none of the deploy's tuning; it runs
beside the deployed gateway on the same host and the two are measured level by level.
`tuned_one_uvicorn_worker` is the deploy with only the seeds' server and route, to show what the
server choice alone is worth.
Goal (issue: benchmarks): defaults >= 2x seed-style requests/s at c=8, p99 <= 3x p50, zero errors.

The doubles answer at once by default (--backend-delay-ms 0), so what is measured is the gateway's
own capacity. With a backend delay B, 8 clients and a gateway spending c CPU-ms per request, one
event loop gives 8 / (B + 8c) and no config beats 8 / (B + c): a slow backend hides the gateway,
and the ratio between two gateways shrinks towards 1 as B grows (bench/README.md has both).
Defaults and seed-style alternate `--rounds` times per level (this VM drifts by 10-30 % over
minutes); each figure is the median over the rounds, with every round's requests/s listed. The
gateway's CPU per request (its processes' user + system time over the requests served) is the
steadier figure: it does not depend on how much of the shared cores the gateway was given.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, report, use_random_secrets  # first: it puts the repository on sys.path
from seed_style import UNIT as SEED_UNIT
from seed_style import start_seed_gateway, stop_seed_gateway

from hx_gateway.load import chat_body, run_load
from hx_gateway.model.plan import gateway_plan
from hx_gateway.model.settings import Settings
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


# CPU-seconds (user + system) of a unit's main process and its descendants (gunicorn's workers).
UNIT_CPU_SECONDS = """
import os, subprocess, sys
main = int(subprocess.run(["systemctl", "show", "-P", "MainPID", sys.argv[1]], capture_output=True, text=True).stdout)
stats = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    except OSError:
        continue
    stats[int(pid)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
tree, grew = {main}, True
while grew:  # until no process is added: a child's pid is not always larger than its parent's
    grew = False
    for pid, (parent, _) in stats.items():
        if parent in tree and pid not in tree:
            tree.add(pid)
            grew = True
print(sum(stats[pid][1] for pid in tree if pid in stats) / os.sysconf("SC_CLK_TCK"))
"""


def unit_cpu_seconds(unit: str) -> float:
    return float(exec_in("hx-api", "python3", "-I", "-c", UNIT_CPU_SECONDS, unit))


def measure(url: str, key: str, model: str, concurrency: int, seconds: float, unit: str | None = None) -> dict:
    """One time-bounded level, with the CPU per request of the load generator and of the gateway's
    processes (the steadier figure on a noisy machine: it does not depend on the share of the cores
    the gateway got)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    gateway_before = unit_cpu_seconds(unit) if unit else 0.0
    summary = run_load(url, key, chat_body(model), 10**9, concurrency, max_seconds=seconds).summary()
    gateway_spent = unit_cpu_seconds(unit) - gateway_before if unit else 0.0
    after = resource.getrusage(resource.RUSAGE_SELF)
    spent = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    requests = max(1, summary["requests"])
    figures = {**summary, "client_cpu_ms_per_request": round(1000 * spent / requests, 2)}
    if unit:
        figures["gateway_cpu_ms_per_request"] = round(1000 * gateway_spent / requests, 2)
    return figures


def median_round(rounds: list[dict]) -> dict:
    """The round with the median requests/s, plus every round's requests/s and gateway CPU per request
    (and that figure's own median)."""
    ordered = sorted(rounds, key=lambda r: r["rps"])
    cpu = [r["gateway_cpu_ms_per_request"] for r in rounds]
    return {**ordered[(len(ordered) - 1) // 2], "rps_rounds": [r["rps"] for r in rounds],
            "gateway_cpu_ms_rounds": cpu, "gateway_cpu_ms_median": statistics.median(cpu)}


def set_backend_delay(milliseconds: int) -> None:
    for backend in (h.name for h in Lab().hosts() if h.role == "backend"):
        configure_double(backend, {"delay_ms": milliseconds})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="defaults/seed-style alternations per level")
    parser.add_argument("--backend-delay-ms", type=int, default=0, help="how long the doubles wait to answer")
    parser.add_argument("--seed-venv", choices=("seeds", "deploy"), default="seeds",
                        help="seed-style from litellm[proxy] alone (what the seeds installed) or the deploy's venv")
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
    # Each round is a back-to-back pair, so its ratio cancels the VM's drift between rounds.
    figures["ratio_rounds_median"] = statistics.median(figures["ratio_rounds"]) if figures["ratio_rounds"] else None
    figures["ratio_gateway_cpu_per_request_seed_over_defaults"] = round(
        theirs["gateway_cpu_ms_median"] / ours["gateway_cpu_ms_median"], 2)
    figures["defaults_p99_over_p50"] = round(ours["p99_ms"] / ours["p50_ms"], 2) if ours["p50_ms"] else None
    report("gateway_throughput", figures)


def measure_profiles(args: argparse.Namespace, key: str, gateway: str, seed: str, figures: dict) -> None:
    # The defaults and the seed-style gateway side by side on the same host, alternating within
    # each level, so both see the same machine at the same time.
    converge(PROFILES["defaults"])
    run_load(gateway, key, chat_body(ALIAS), 40, 8)  # warm up every worker
    figures["defaults"] = {"rss_mb": service_rss_mb()}
    settings = lab_settings()
    without = start_seed_gateway("hx-api", settings, key, SEED_PORT, venv=args.seed_venv)
    try:
        run_load(seed, key, chat_body(ALIAS), 40, 8)
        figures["seed_style"] = {"rss_mb": round(service_rss_mb() - figures["defaults"]["rss_mb"], 1),
                                 "venv": args.seed_venv, "venv_lacks": without}
        units = {"defaults": settings.service_name, "seed_style": SEED_UNIT}
        for concurrency in args.concurrency:
            rounds: dict[str, list[dict]] = {"defaults": [], "seed_style": []}
            for _ in range(args.rounds):
                for profile, url in (("defaults", gateway), ("seed_style", seed)):
                    rounds[profile].append(measure(url, key, ALIAS, concurrency, args.seconds, units[profile]))
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
            figures[profile][f"c{concurrency}"] = measure(gateway, key, ALIAS, concurrency, args.seconds,
                                                          settings.service_name)
            print(profile, concurrency, figures[profile][f"c{concurrency}"], flush=True)
    converge(PROFILES["defaults"])  # leave the lab on the defaults
    direct = f"http://{address_of('hx-llm01')}:11434"
    figures["direct_to_double"] = {f"c{c}": measure(direct, "unused", OLLAMA_MODEL, c, args.seconds)
                                   for c in args.concurrency}


if __name__ == "__main__":
    main()
