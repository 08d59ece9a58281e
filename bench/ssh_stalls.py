"""pyinfra over SSH with and without Nagle: with config.py (hx_gateway/patches/ssh_stalls.py sets TCP_NODELAY
on every connection) and with an empty `--config` (paramiko as shipped), alternating run by run.

    python bench/ssh_stalls.py [--runs 5]

Three workloads on one gateway, all over SSH+sudo (lab/inventory_ssh.py): the deploy's no-op (one
command per host), twelve facts on the gateway (twelve commands), and a fresh converge (the gateway
reset as bench/deploy_speed.py does, page cache dropped; the ~194 MB wheelhouse goes over SFTP).
Prints the medians and how much less each takes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from functools import partial

from common import REPO, report, seconds
from deploy_speed import PYINFRA, RESET, converged_lab, drop_page_cache, median

from lab.lab import exec_in
from lab.ssh import enable as enable_ssh

INVENTORY = "lab/inventory_ssh.py"
FACTS = ["server.Os", "server.Arch", "server.Hostname", "server.Kernel", "server.Home", "server.Path",
         "server.TmpDir", "server.Date", "server.Users", "server.Groups", "server.LinuxName", "server.Mounts"]
DEPLOY = ["-y", INVENTORY, "deploy.py"]
WORKLOADS = {"noop_deploy": DEPLOY, "twelve_facts": ["-y", INVENTORY, "--limit", "hx-api", "fact", *FACTS],
             "fresh_converge": DEPLOY}


def reset_gateway() -> None:
    exec_in("hx-api", "sh", "-c", RESET, check=False)
    drop_page_cache()


def run_pyinfra(argv: list[str], config: str) -> None:
    result = subprocess.run([PYINFRA, "--config", config, *argv], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    enable_ssh(converged_lab(1))
    os.environ["HX_LAB_GATEWAYS"] = "1"
    with tempfile.NamedTemporaryFile("w", suffix=".py") as empty:
        configs = {"with_nodelay": str(REPO / "config.py"), "paramiko_as_shipped": empty.name}
        figures: dict = {"runs": args.runs}
        for workload, argv in WORKLOADS.items():
            samples: dict[str, list[float]] = {label: [] for label in configs}
            for _ in range(args.runs):
                for label, config in configs.items():
                    if workload == "fresh_converge":
                        reset_gateway()
                    samples[label].append(seconds(partial(run_pyinfra, argv, config)))
            medians = {label: median(values) for label, values in samples.items()}
            figures[workload] = {**{f"{label}_median_s": m for label, m in medians.items()},
                                 "saved_s": round(medians["paramiko_as_shipped"] - medians["with_nodelay"], 2)}
            print(workload, figures[workload], flush=True)
    report("ssh_stalls", figures)


if __name__ == "__main__":
    main()
