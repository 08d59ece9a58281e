"""Usage records on the lab gateway: requests/s at c=8 with the recorder on (a `db` host) against off,
and the rows per second the recorder's writer sustains.

    python bench/usage.py [--seconds 15] [--rounds 3] [--rows 100000]

The two deploys alternate `--rounds` times (this VM drifts by 10-30 % over minutes; each redeploy
restarts the gateway, which is then warmed before it is measured); each figure is the median over
the rounds, every round listed. Goal (issue 26): with logging at most 5 % fewer requests/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import REPO, report, use_random_secrets  # first: it puts the repository on sys.path

from hx_gateway.load import chat_body, run_load
from lab.lab import Lab, address_of, docker, exec_in

PYINFRA = os.path.join(os.path.dirname(sys.executable), "pyinfra")


def deploy(db: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HX_LAB_DB"}
    if db:
        env["HX_LAB_DB"] = "1"
    result = subprocess.run([PYINFRA, "-y", "lab/inventory.py", "deploy.py"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        sys.exit(f"deploy failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def measure(url: str, key: str, seconds: float) -> dict:
    run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=3)  # warm the workers
    load = run_load(url, key, chat_body("phi3-3.8b"), 10**6, 8, max_seconds=seconds).summary()
    return {"rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"], "errors": load["errors"]}


def writer_rows_per_s(rows: int) -> dict:
    docker("cp", str(REPO / "bench" / "usage_writer.py"), "hx-api:/tmp/usage_writer.py")
    out = exec_in("hx-api", "/opt/litellm/current/bin/python", "/tmp/usage_writer.py", str(rows))
    exec_in("hx-db", "runuser", "-u", "postgres", "--", "psql", "-q", "-d", "hx_gateway", "-c",
            "DELETE FROM usage_requests WHERE gateway = 'bench-writer'")
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    key = use_random_secrets(HX_DB_PASSWORD=f"pg-{os.urandom(24).hex()}")
    Lab(db="1").up()
    url = f"http://{address_of('hx-api')}:4000"
    rounds: dict[str, list[dict]] = {"off": [], "on": []}
    try:
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                deploy(db=mode == "on")
                rounds[mode].append(measure(url, key, args.seconds))
        writer = writer_rows_per_s(args.rows)
    finally:
        deploy(db=False)  # the lab as ./hx lab leaves it
        docker("rm", "-f", "-v", "hx-db", check=False)

    def median(mode: str, figure: str) -> float:
        return round(statistics.median(r[figure] for r in rounds[mode]), 2)

    report("usage", {
        "concurrency": 8, "seconds": args.seconds,
        "off_rps": median("off", "rps"), "on_rps": median("on", "rps"),
        "on_over_off": round(median("on", "rps") / median("off", "rps"), 3),
        "off_p50_ms": median("off", "p50_ms"), "on_p50_ms": median("on", "p50_ms"),
        "writer": writer, "rounds": rounds,
    })


if __name__ == "__main__":
    main()
