"""Shared by the benchmarks: timing, medians, and the JSON line every script prints last."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def use_random_secrets(**extra_env: str) -> str:
    """Fresh keys for this run, through the environment the deploy reads (never a file); returns
    the master key."""
    master_key = "sk-" + secrets.token_urlsafe(32)
    os.environ.update({"HX_MASTER_KEY": master_key, "HX_CLIENT_KEY_OPEN_WEBUI": "sk-" + secrets.token_urlsafe(32),
                       "HX_SECRETS_FILE": "/nonexistent", **extra_env})
    return master_key


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return round(time.perf_counter() - started, 2)


def median_of(runs: int, action: Callable[[], object]) -> dict[str, float | list[float]]:
    samples = [seconds(action) for _ in range(runs)]
    return {"median_s": round(statistics.median(samples), 2), "samples_s": samples}


def report(name: str, figures: dict) -> None:
    print(json.dumps({"bench": name, **figures}))


def lab_deploy(**env: str | None) -> None:
    """`pyinfra -y lab/inventory.py deploy.py` with these environment variables set (None: unset);
    a failed deploy ends the benchmark with its output."""
    import subprocess

    wanted = {**os.environ, **{k: v for k, v in env.items() if v is not None}}
    for name in (k for k, v in env.items() if v is None):
        wanted.pop(name, None)
    pyinfra = os.path.join(os.path.dirname(sys.executable), "pyinfra")
    result = subprocess.run([pyinfra, "-y", "lab/inventory.py", "deploy.py"], cwd=REPO, env=wanted,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.exit(f"deploy failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def chat_load_at_8(url: str, key: str, seconds: float, ca_bundle: str | None = None) -> dict:
    """Requests/s, p50/p99 and errors of chats at c=8 over keep-alive connections, after 3 s of warming
    the gateway's workers (a redeploy restarted them)."""
    from hx_gateway.load import chat_body, run_load

    run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=3, ca_bundle=ca_bundle)
    load = run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=seconds, ca_bundle=ca_bundle).summary()
    return {"rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "errors": load["errors"]}


def alternated_load(url: str, key: str, rounds: int, seconds: float, **on_env: str) -> dict[str, list[dict]]:
    """chat_load_at_8 after a lab deploy without (`off`) and with (`on`) the environment `on_env`,
    alternating `rounds` times; the lab is left as the last `on` deploy made it."""
    found: dict[str, list[dict]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            lab_deploy(**{name: value if mode == "on" else None for name, value in on_env.items()})
            found[mode].append(chat_load_at_8(url, key, seconds))
    return found


def round_median(rounds: list[dict], figure: str) -> float:
    """One figure's median over alternating rounds (this VM drifts by 10-30 % over minutes)."""
    return round(statistics.median(r[figure] for r in rounds), 2)


def compared(rounds: dict[str, list[dict]], before: str, after: str, figures: tuple[str, ...]) -> dict:
    """Two alternated setups' medians, `<setup>_<figure>` each, and `<after>_over_<before>` of requests/s."""
    medians = {f"{setup}_{figure}": round_median(rounds[setup], figure)
               for setup in (before, after) for figure in figures}
    return {**medians, f"{after}_over_{before}": round(medians[f"{after}_rps"] / medians[f"{before}_rps"], 3)}
