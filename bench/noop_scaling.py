"""No-op and dry-run time for 1 gateway against N gateways, over `docker exec` and over SSH+sudo.

    python bench/noop_scaling.py [--gateways 10] [--runs 3]

Goal (issue: benchmarks): no-op and dry run for 10 gateway hosts <= 1.5x the time for one; that part
waits on round trips, so parallelism should show. The lab converges N gateways once, then each
figure is the median of `--runs` runs against the first gateway only and against all N (the two
backends are in both), with the CPU-seconds the whole machine used and those of pyinfra's own
process (the control node's share; in the lab the hosts' share lands on the same two cores).
"""

from __future__ import annotations

import argparse
import os

from common import report
from deploy_speed import converged_lab, median, timed_run

from lab.ssh import enable as enable_ssh

INVENTORIES = {"docker": "lab/inventory.py", "ssh": "lab/inventory_ssh.py"}


def measure(inventory: str, gateways: int, runs: int, *extra: str) -> dict[str, float]:
    os.environ["HX_LAB_GATEWAYS"] = str(gateways)  # the lab inventories read it
    samples = [timed_run(*extra, inventory=inventory) for _ in range(runs)]
    return {"median_s": median([s.wall_s for s in samples]),
            "machine_cpu_s": median([s.machine_cpu_s for s in samples]),
            "control_node_cpu_s": median([s.control_cpu_s for s in samples])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    enable_ssh(converged_lab(args.gateways))  # converged over docker exec: the faster way in
    figures: dict = {"gateways": args.gateways, "runs": args.runs}
    for connector, inventory in INVENTORIES.items():
        for label, extra in (("noop", ()), ("dry", ("--dry",))):
            one = measure(inventory, 1, args.runs, *extra)
            many = measure(inventory, args.gateways, args.runs, *extra)
            figures[f"{connector}_{label}"] = {"1": one, str(args.gateways): many,
                                               "ratio": round(many["median_s"] / one["median_s"], 2)}
            print(connector, label, figures[f"{connector}_{label}"], flush=True)
    report("noop_scaling", figures)


if __name__ == "__main__":
    main()
