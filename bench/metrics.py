"""Metrics on the lab gateway: requests/s at c=8 with LiteLLM's `prometheus` callback on (a `monitor`
host scraping it every 2 s, the lab's interval) against off.

    python bench/metrics.py [--seconds 15] [--rounds 3]

The two deploys alternate `--rounds` times (this VM drifts by 10-30 % over minutes; each redeploy
restarts the gateway, which is then warmed before it is measured); each figure is the median over
the rounds, every round listed. Goal (issue 27): with metrics at most 5 % fewer requests/s.
"""

from __future__ import annotations

import argparse

from common import alternated_load, compared, lab_deploy, report, use_random_secrets  # first: puts the repo on sys.path

from lab.lab import Lab, address_of, docker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    key = use_random_secrets()
    Lab(monitor=True).up()
    url = f"http://{address_of('hx-api')}:4000"
    try:
        rounds = alternated_load(url, key, args.rounds, args.seconds, HX_LAB_MONITOR="1")
    finally:
        lab_deploy(HX_LAB_MONITOR=None)  # the lab as ./hx lab leaves it (the exporters removed)
        docker("rm", "-f", "-v", "hx-monitor", check=False)

    report("metrics", {"concurrency": 8, "seconds": args.seconds,
                       **compared(rounds, "off", "on", ("rps", "p50_ms")), "rounds": rounds})


if __name__ == "__main__":
    main()
