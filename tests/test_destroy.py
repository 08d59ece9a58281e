"""Destroy (issue 29): the dry run lists exactly what the real run removes; the host is proven clean;
the backends are never touched; --keep-data keeps the generations without a key in them; a destroy
left half-way finishes on the next run; a deploy afterwards gives a working gateway again."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import LAB_INVENTORY, REPO, host_state, pyinfra, run_verify

from lab.lab import exec_in

pytestmark = pytest.mark.lab
LEFT_BEHIND = ("ls -d /etc/litellm /opt/litellm /var/cache/hx-gateway /etc/systemd/system/litellm.service "
               "/tmp/hx-upload-* 2>/dev/null; getent passwd litellm; getent group litellm; "
               "ss -Htln '( sport = :4000 )'; systemctl list-unit-files --no-legend 'litellm*'")


def destroy(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HX_")}  # destroy needs no key
    return subprocess.run([sys.executable, "-m", "hx_gateway.destroy", LAB_INVENTORY, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def removals(output: str) -> list[str]:
    return re.findall(r"^    (.+: .+)$", output, re.MULTILINE)


def backends_untouched() -> str:
    return "".join(exec_in(b, "sh", "-c", "systemctl is-active ollama; ls -la --time-style=+ /etc/ollama-double")
                   for b in ("hx-llm01", "hx-llm02"))


@pytest.fixture
def converged_again(converged, lab_secrets):
    yield
    again = pyinfra(secrets_env=lab_secrets)  # the gateway back for the tests after this one
    assert again.returncode == 0, again.output[-3000:]


def test_dry_lists_what_the_real_destroy_removes_and_the_host_is_clean(converged_again, lab_secrets, tmp_path):
    backends = backends_untouched()
    before = host_state()
    dry = destroy("--dry")
    assert dry.returncode == 0, dry.stderr
    assert host_state() == before and "dry run: nothing was changed" in dry.stdout
    planned = removals(dry.stdout)
    for expected in ("stop and disable: litellm.service", "remove file: /etc/litellm/litellm.env",
                     "remove file: /etc/systemd/system/litellm.service", "remove tree: /opt/litellm/venvs",
                     "remove tree: /var/lib/hx-gateway/generations", "remove account: litellm"):
        assert expected in planned, (expected, planned)

    refused = destroy()  # no terminal to confirm in, no -y: nothing happens
    assert refused.returncode == 1 and "add -y" in refused.stderr and host_state() == before

    real = destroy("-y", "--evidence-dir", str(tmp_path))
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-2000:]
    assert removals(real.stdout) == planned
    assert exec_in("hx-api", "sh", "-c", LEFT_BEHIND, check=False) == ""
    assert backends_untouched() == backends
    (bundle,) = tmp_path.iterdir()
    summary = (bundle / "summary.md").read_text()
    assert "hx-gateway destroy" in summary and "ALL CHECKS PASSED" in summary
    assert all(v not in summary for v in lab_secrets.values())

    again = pyinfra(secrets_env=lab_secrets)  # re-deploy after a destroy: a working gateway again
    assert again.returncode == 0, again.output[-3000:]
    verify = run_verify(lab_secrets, tmp_path / "verify")
    assert verify.returncode == 0, verify.stdout[-3000:]


def test_a_destroy_left_half_way_finishes_and_keep_data_keeps_the_generations_without_any_key(
        converged_again, lab_secrets, tmp_path):
    """Two promises in one destroy (each costs a fresh install afterwards): a destroy killed after its
    first removals finishes on the next run, and --keep-data keeps the generations, wiped of keys."""
    key = lab_secrets["HX_MASTER_KEY"]
    assert exec_in("hx-api", "grep", "-rl", key, "/var/lib/hx-gateway/generations")  # copies are there before
    # What a destroy killed after its first removals leaves: the unit stopped, some files gone.
    exec_in("hx-api", "sh", "-c", "systemctl disable --now litellm && rm -f /etc/litellm/config.yaml "
                                  "/etc/litellm/litellm.env")
    run = destroy("--keep-data", "-y", "--evidence-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "remove file: /etc/litellm/config.yaml" not in run.stdout  # already gone: not listed, not an error
    assert exec_in("hx-api", "sh", "-c", LEFT_BEHIND, check=False) == ""
    assert "wipe secret copy: /var/lib/hx-gateway/generations/" in run.stdout
    assert exec_in("hx-api", "sh", "-c", "ls /var/lib/hx-gateway/generations | wc -l") != "0"
    assert exec_in("hx-api", "grep", "-rl", key, "/var/lib/hx-gateway", "/etc", "/opt", "/tmp", check=False) == ""


@pytest.mark.parametrize("limit", ["hx-nope", "@docker/hx-llm01"])
def test_a_limit_naming_no_gateway_is_refused_and_changes_nothing(converged, limit):
    before = host_state()
    run = destroy("--limit", limit, "-y")
    assert run.returncode == 2
    assert f"--limit {limit}: no such gateway or Open WebUI host in lab/inventory.py" in run.stderr
    assert "Traceback" not in run.stderr
    assert host_state() == before
