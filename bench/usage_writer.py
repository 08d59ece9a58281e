"""Runs on a lab gateway (with its venv's python, as the `litellm` service would): how many rows per
second the usage recorder's writer sends to PostgreSQL, through its own queue, batches and COPY.

    python usage_writer.py ROWS     prints {"rows": N, "seconds": S, "rows_per_s": R}

The connection comes from the gateway's env file, as the service gets it; every row is marked with
the gateway name `bench-writer`, so bench/usage.py can delete them after.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import sys
import time


def load_env(path: str = "/etc/litellm/litellm.env") -> None:
    with open(path) as fh:
        for line in fh:
            name, _, value = line.strip().partition("=")
            if name.startswith("HX_USAGE_"):
                os.environ[name] = value


def main(rows: int) -> None:
    load_env()
    spec = importlib.util.spec_from_file_location("hx_usage", "/etc/litellm/hx_usage.py")
    hx_usage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hx_usage)
    writer = hx_usage.Writer(hx_usage._connect, capacity=rows + 1)
    now = dt.datetime.now(dt.timezone.utc)
    row = (now, None, "bench-writer", "bench", "phi3-3.8b", "http://hx-llm01:11434", 200, 12, 34, 50, False)
    started = time.perf_counter()
    for _ in range(rows):
        writer.offer(row)
    while writer.written < rows:
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
