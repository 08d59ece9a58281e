"""Deploy speed on the lab: fresh converge, no-op re-run and dry run (medians of several runs).

    python bench/deploy_speed.py [--runs 3]
Goals (issue: the deploy): no-op re-run <= 4 s for the three hosts; converge <= 25 s excluding
the one-time wheelhouse download (the wheelhouse is built before timing starts).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys

from common import REPO, median_of, report

from lab.lab import Lab, exec_in

PYINFRA = [str(os.path.join(os.path.dirname(sys.executable), "pyinfra")), "lab/inventory.py", "deploy.py"]


def run(*extra: str) -> None:
    confirm = [] if "--dry" in extra else ["-y"]
    result = subprocess.run([PYINFRA[0], *confirm, *PYINFRA[1:], *extra], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-2000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.update({"HX_MASTER_KEY": "sk-" + secrets.token_urlsafe(32),
                       "HX_CLIENT_KEY_OPEN_WEBUI": "sk-" + secrets.token_urlsafe(32),
                       "HX_SECRETS_FILE": "/nonexistent"})
    lab = Lab()
    lab.up()
    run()  # builds the wheelhouse once (cached on the control node), and a first converge

    def fresh_converge() -> None:
        exec_in("hx-api", "sh", "-c", "systemctl disable --now litellm; rm -rf /opt/litellm /etc/litellm "
                "/etc/systemd/system/litellm.service; systemctl daemon-reload", check=False)
        run()

    report("deploy_speed", {
        "fresh_converge": median_of(args.runs, fresh_converge),
        "noop_rerun": median_of(args.runs, run),
        "dry_run": median_of(args.runs, lambda: run("--dry")),
        "hosts": len(lab.hosts()),
    })


if __name__ == "__main__":
    main()
