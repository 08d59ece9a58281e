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
