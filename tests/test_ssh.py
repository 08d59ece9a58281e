"""The production path in the lab: SSH as an admin with sudo, keys only, no root login."""

from __future__ import annotations

import json
import threading
import time

import paramiko
import pytest
from conftest import FRESH, pyinfra, random_key, run_verify

from lab import ssh
from lab.lab import address_of, exec_in

pytestmark = pytest.mark.lab
SSH_INVENTORY = "lab/inventory_ssh.py"

# Runs in the gateway container as root while a deploy uploads a new key: every file that holds the
# key, and whether an unprivileged account (nobody) could read it at that moment.
# Runs in the gateway as root while a deploy uploads a new key. As often as it can, it reads the two
# transient copies (the upload into the admin's private directory, the root-only file beside the
# destination) with their owner and mode; every 200 rounds it also walks the places a copy could
# land and asks whether `nobody` can read each file that holds the key. Prints one JSON document.
WATCHER = r'''
import glob, json, os, pwd, subprocess, sys, time
key, seconds = sys.argv[1].encode(), float(sys.argv[2])
transient, seen, readable = {}, set(), set()
def holds_key(path):
    try:
        return os.path.getsize(path) <= 65536 and key in open(path, "rb").read()
    except OSError:
        return False
def ownership(path):
    st = os.stat(path)
    return [pwd.getpwuid(st.st_uid).pw_name, oct(st.st_mode & 0o777)[2:]]
deadline, rounds = time.time() + seconds, 0
while time.time() < deadline:
    rounds += 1
    for path in glob.glob("/tmp/hx-upload-*/payload") + glob.glob("/etc/litellm/*.hx-new"):
        try:
            if holds_key(path):
                transient.setdefault(path, {"file": ownership(path), "dir": ownership(os.path.dirname(path))})
        except OSError:
            pass
    if rounds % 200:
        time.sleep(0.0005)
        continue
    for root in ("/tmp", "/var/tmp", "/etc/litellm", "/home/hxadmin"):
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if not holds_key(path):
                    continue
                seen.add(path)
                if subprocess.run(["runuser", "-u", "nobody", "--", "cat", path], capture_output=True).returncode == 0:
                    readable.add(path)
print(json.dumps({"transient": transient, "seen": sorted(seen), "readable": sorted(readable), "rounds": rounds}))
'''


@pytest.fixture(scope="module")
def ssh_lab(lab):
    lab.up()
    ssh.enable(lab)
    return lab


def over_ssh(secrets_env: dict[str, str], *args: str):
    return pyinfra(*args, secrets_env=secrets_env, inventory=SSH_INVENTORY)


def test_root_cannot_log_in_and_the_admin_needs_its_key(ssh_lab):
    key_file, _ = ssh.key_paths(ssh_lab.name)
    for user, key in (("root", str(key_file)), (ssh.ADMIN, None)):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(address_of("hx-api"), username=user, key_filename=key, look_for_keys=False,
                           allow_agent=False, password=None if key else "guess", timeout=10)


def test_fresh_converge_over_ssh_then_no_changes_then_checks_pass(ssh_lab, converged, lab_secrets, tmp_path):
    exec_in("hx-api", "sh", "-c", FRESH)
    first = over_ssh(lab_secrets)
    assert first.returncode == 0, first.output[-4000:]
    assert "Install LiteLLM 1.106.2" in first.output
    second = over_ssh(lab_secrets)
    assert second.returncode == 0 and second.changed_ops() == [], second.changed_ops()
    modes = exec_in("hx-api", "stat", "-c", "%n %a %U %G", "/etc/litellm/litellm.env", "/etc/litellm/config.yaml",
                    "/opt/litellm/current/bin/python")
    assert "/etc/litellm/litellm.env 600 root root" in modes and "/etc/litellm/config.yaml 640 root litellm" in modes
    verify = run_verify(lab_secrets, tmp_path, SSH_INVENTORY)
    assert verify.returncode == 0, verify.stdout[-4000:]


@pytest.mark.parametrize("mode", [(), ("--dry",)], ids=["no-op", "dry-run"])
def test_a_no_op_over_ssh_sends_one_command_with_one_short_line_in_the_auth_log(ssh_lab, converged, lab_secrets,
                                                                                  mode):
    # sudo logs every command line; the preflight's programs travel on stdin, not in it. A dry run
    # plans operations without evaluating their _if: none of them may read a fact of its own.
    # From the next whole second on: the previous test's sudo lines may share this one.
    since = int(exec_in("hx-api", "date", "+%s")) + 1
    time.sleep(1.1)
    run = over_ssh(lab_secrets, *mode)
    assert run.returncode == 0 and run.changed_ops() == [], run.output[-3000:]
    # Nothing the service reads changes, so what would follow a change is not even planned.
    assert "Canary" not in run.output and "Restart litellm" not in run.output, run.output[-3000:]
    logged = exec_in("hx-api", "journalctl", "-q", "-t", "sudo", "--since", f"@{since}", "-o", "cat")
    commands = [line for line in logged.splitlines() if "COMMAND=" in line]
    assert len(commands) == 1, logged[-2000:]
    assert len(commands[0]) < 400 and "(command continued)" not in logged, commands[0][:600]


def test_a_module_planted_in_the_admins_home_never_runs_as_root(ssh_lab, converged, lab_secrets, tmp_path):
    # The deploy's commands run as root from the admin's home: a python3 that put its working
    # directory on sys.path would import a json.py (the facts) or csv.py (importlib.metadata, which
    # verify runs in the venv) any process of the admin's could leave there. A change with a restart
    # runs the deploy's: preflight, canary, health probe, generations; then verify runs its own.
    planted = ["/home/hxadmin/json.py", "/home/hxadmin/csv.py"]
    plant = "; ".join(f"echo \"open('/tmp/hx-planted-ran', 'w')\" > {p} && chown hxadmin: {p}" for p in planted)
    exec_in("hx-api", "sh", "-c", f"rm -f /tmp/hx-planted-ran; {plant}")
    (tmp_path / "litellm.py").write_text("request_timeout = 45\n")

    def planted_module_ran() -> bool:
        return exec_in("hx-api", "sh", "-c", "test -e /tmp/hx-planted-ran && echo ran || echo never") == "ran"

    try:
        for group_data in (tmp_path, None):  # a change, then back to the defaults
            run = pyinfra(secrets_env=lab_secrets, inventory=SSH_INVENTORY, group_data=group_data)
            assert not planted_module_ran(), run.output[-2000:]
            assert run.returncode == 0 and any(op.startswith("Service | Restart") for op in run.changed_ops()), \
                run.output[-2000:]
        verify = run_verify(lab_secrets, tmp_path / "evidence", SSH_INVENTORY)
        assert not planted_module_ran(), verify.stdout[-2000:]
        assert verify.returncode == 0, verify.stdout[-4000:]
    finally:
        exec_in("hx-api", "rm", "-f", *planted, "/tmp/hx-planted-ran", check=False)


def test_the_secret_is_never_readable_by_another_account_during_upload(ssh_lab, converged, lab_secrets):
    """The watcher must prove it sampled: it has to see the upload's transient copy in the admin's
    0700 directory at least once (a few rotations give it the chance), and every copy it saw."""
    uploads: dict[str, dict] = {}
    for _ in range(3):
        rotated = {**lab_secrets, "HX_MASTER_KEY": random_key()}
        report: list[str] = []
        watcher = threading.Thread(target=lambda key=rotated["HX_MASTER_KEY"], into=report: into.append(exec_in(
            "hx-api", "python3", "-c", WATCHER, key, "25")))
        watcher.start()
        run = over_ssh(rotated, "-vvv")
        watcher.join()
        assert run.returncode == 0, run.output[-3000:]
        found = json.loads(report[0])
        print(f"files that held the new key during the deploy: {found}")
        assert found["rounds"] > 1000 and found["readable"] == [], found
        assert "/etc/litellm/litellm.env" in found["seen"]
        # The mechanism, from the commands pyinfra ran: a 0700 directory owned by the uploading account.
        assert 'install -d -m 700 -o "${SUDO_USER:-root}" /tmp/hx-upload-' in run.output
        assert rotated["HX_MASTER_KEY"] not in run.output and lab_secrets["HX_MASTER_KEY"] not in run.output
        for path, owner in found["transient"].items():
            if path.startswith("/tmp/hx-upload-"):
                assert owner["dir"] == ["hxadmin", "700"], (path, owner)
                uploads[path] = owner
            else:
                assert owner["file"] == ["root", "600"] and owner["dir"] == ["root", "750"], (path, owner)
        if uploads:
            break
    assert uploads, "the watcher never saw the upload's transient copy: it proved nothing"
    back = over_ssh(lab_secrets)  # the session's key again, for the tests after this one
    assert back.returncode == 0
