"""What planning a deploy imports on the control node: every run pays for it, so the client checks'
httpx (~20 ms) stays out; it loads only for verify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PLANNING = ("import sys; import tasks.gateway, hx_gateway.model.plan, hx_gateway.pyinfra_ext.summary, "
            "hx_gateway.pyinfra_ext.generations; "
            "print(sorted(m for m in ('httpx', 'hx_gateway.proof.checks') if m in sys.modules))")


def test_planning_a_deploy_leaves_the_client_checks_unloaded():
    out = subprocess.run([sys.executable, "-c", PLANNING], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_verify_still_has_them():
    out = subprocess.run([sys.executable, "-c", "import sys, hx_gateway.verify; print('httpx' in sys.modules)"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
