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

from common import (  # first: it puts the repository on sys.path
    REPO,
    alternated_load,
    compared,
    lab_deploy,
    report,
    use_random_secrets,
)

from lab.lab import Lab, address_of, docker, exec_in


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
    try:
        rounds = alternated_load(url, key, args.rounds, args.seconds, HX_LAB_DB="1")
        writer = writer_rows_per_s(args.rows)
    finally:
        lab_deploy(HX_LAB_DB=None)  # the lab as ./hx lab leaves it
        docker("rm", "-f", "-v", "hx-db", check=False)

    report("usage", {"concurrency": 8, "seconds": args.seconds,
                     **compared(rounds, "off", "on", ("rps", "p50_ms")), "writer": writer, "rounds": rounds})

if __name__ == "__main__":
    main()
