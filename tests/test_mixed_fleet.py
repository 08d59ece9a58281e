"""A mixed fleet: a Debian 12 (Python 3.11) and a Debian 13 (Python 3.13) gateway in one run, each
with LiteLLM from the lock resolved for its own interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import FRESH, LAB_INVENTORY, REPO, pyinfra

from hx_gateway import lock, venv_artifacts
from lab.lab import Lab, docker, exec_in

pytestmark = pytest.mark.lab
MIXED = {"HX_LAB_GATEWAY_SUITES": "bookworm,trixie"}


@pytest.fixture(scope="module")
def mixed_lab(lab):
    fleet = Lab(gateways=2, gateway_suites=("bookworm", "trixie"))
    fleet.up()
    yield fleet
    docker("rm", "-f", "-v", "hx-api2")  # back to the single-gateway lab the other tests expect


def venv_python(container: str) -> str:
    return exec_in(container, "/opt/litellm/current/bin/python", "-c",
                   "import platform, importlib.metadata as m; print(platform.python_version(), m.version('litellm'))")


def test_debian_12_and_13_converge_in_one_run_each_from_its_own_lock(mixed_lab, converged, lab_secrets, tmp_path):
    assert exec_in("hx-api2", "cat", "/etc/debian_version").startswith("13")
    exec_in("hx-api", "sh", "-c", FRESH)  # both gateways need a venv: one artifact for each platform
    shutil.rmtree(venv_artifacts.ARTIFACT_DIR, ignore_errors=True)
    run = pyinfra(secrets_env=lab_secrets, extra_env=MIXED)
    assert run.returncode == 0, run.output[-4000:]
    assert venv_python("hx-api") == "3.11.2 1.106.2" and venv_python("hx-api2") == "3.13.5 1.106.2"
    targets = {t.key for t in lock.committed_targets()}
    assert {"py3.11.2-x86_64-glibc2.36", "py3.13.5-x86_64-glibc2.41"} <= targets  # both locks are committed
    ids = {c: exec_in(c, "cat", "/opt/litellm/current/.hx-venv-id") for c in ("hx-api", "hx-api2")}
    assert ids["hx-api"] != ids["hx-api2"]
    # each platform built its own venv once, and the control node's cache keeps one artifact of each
    assert run.output.count("venv built here and fetched to the control node") == 2, run.output[-5000:]
    cached = sorted(p.name for p in venv_artifacts.ARTIFACT_DIR.glob("venv-*.tar.zst"))
    assert len(cached) == 2, cached
    assert any(f"-{ids['hx-api'][:16]}-py3.11.2-" in name for name in cached), cached
    assert any(f"-{ids['hx-api2'][:16]}-py3.13.5-" in name for name in cached), cached
    again = pyinfra(secrets_env=lab_secrets, extra_env=MIXED)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()
    env = {**os.environ, **lab_secrets, **MIXED, "HX_SECRETS_FILE": "/nonexistent"}
    verify = subprocess.run([sys.executable, "-m", "hx_gateway.verify", LAB_INVENTORY, "--evidence-dir",
                             str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout[-4000:]
    assert "@docker/hx-api2" in verify.stdout and "FAIL" not in verify.stdout
