"""A run the deploy refuses is a message for a person (issues 22, 30): every problem listed, of every
host at once, no traceback, no plan verdict; nothing is changed. No lab needed: the refusals below
come before any fact is read, against an `@local` gateway that is never touched."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, defaults, random_key

from hx_gateway.model.plan import fleet_plans
from hx_gateway.model.settings import SettingsError
from hx_gateway.pyinfra_ext.command_line import group_data_directories
from lab.tls import issue, make_ca, write_private


def refused_run(tmp_path: Path, group_data: dict[str, str], *options: str) -> str:
    (tmp_path / "inventory.py").write_text('litellm = ["@local"]\n')
    (tmp_path / "group_data").mkdir()
    for name, text in group_data.items():
        (tmp_path / "group_data" / name).write_text(text)
    env = {**os.environ, "HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
           "HX_SECRETS_FILE": "/nonexistent"}
    result = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), *options, str(tmp_path / "inventory.py"),
                             "deploy.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    return output


@pytest.mark.parametrize("options", [("--dry",), ("--dry", "-y"), ("-y",)])
def test_a_settings_refusal_lists_every_problem_without_traceback_or_verdict(tmp_path, options):
    output = refused_run(tmp_path, {
        "litellm.py": "request_timout = 45\nbind_host = 'localhost'\n",
        "all.py": "model_groups = {'hx-chat': ['phi3-3.8b', 'emb-premium']}\n",
    }, *options)
    assert "refused, nothing was changed on any host:" in output
    assert "request_timout: not a knob of this deploy (it would be ignored); did you mean `request_timeout`?" in output
    assert "bind_host: 'localhost' is not an IP address" in output
    assert "'emb-premium' is an embedding alias" in output
    assert "Traceback" not in output and "--> Plan:" not in output and "Starting operation" not in output


def test_no_wait_is_refused_behind_balancers_where_it_would_restart_every_gateway_at_once(tmp_path):
    (tmp_path / "inventory.py").write_text('litellm = ["@local"]\nlb = ["hx-lb.invalid"]\n')
    env = {**os.environ, "HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
           "HX_SECRETS_FILE": "/nonexistent"}
    result = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "--no-wait", "--dry", "-y",
                             str(tmp_path / "inventory.py"), "deploy.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "pyinfra --no-wait runs each host's operations on their own" in output, output[-3000:]
    assert "Traceback" not in output and "--> Plan:" not in output


def test_fleet_problems_name_the_hosts_they_apply_to_and_once_those_of_all(monkeypatch):
    good, bad = defaults(), {**defaults(), "bind_port": 0}
    for name, value in {"HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
                        "HX_SECRETS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        fleet_plans([("gw1", good, {"litellm"}), ("gw2", bad, {"litellm"}), ("llm01", {"ollama_prot": 1}, {"llm"})])
    assert err.value.problems == [
        "gw2: bind_port: 0 is out of range; set an integer from 1 to 65535",
        "llm01: ollama_prot: not a knob of this deploy (it would be ignored); did you mean `ollama_port`? Rename it",
    ]
    both_bad = [("gw1", {**bad, "workerz": 2}, {"litellm"}), ("gw2", {**bad, "workerz": 2}, {"litellm"})]
    with pytest.raises(SettingsError) as err:
        fleet_plans(both_bad)
    assert err.value.problems == [  # both gateways have both problems: no host prefix
        "workerz: not a knob of this deploy (it would be ignored); did you mean `workers`? Rename it",
        "bind_port: 0 is out of range; set an integer from 1 to 65535"]


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
           "HX_SECRETS_FILE": "/nonexistent"}
    return subprocess.run([sys.executable, "-m", f"hx_gateway.{name}", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("command", [("verify",), ("rollback",), ("rollback", "--list"),
                                     ("rollback", "--component", "webui"), ("destroy", "--dry"),
                                     ("ticket", "--out", "TMP/t.md")])
def test_every_tool_refuses_a_mistyped_inventory_instead_of_reporting_on_no_hosts(tmp_path, command):
    """Before: verify and rollback wrote a FAILED bundle of no checks, and the ticket said `Plan: no
    changes (0 hosts)` with exit 0, for an inventory path that does not exist (pyinfra only warns)."""
    name, *options = command
    run = tool(name, str(tmp_path / "inventry.py"), *(o.replace("TMP", str(tmp_path)) for o in options))
    assert run.returncode != 0 and "inventry.py: no hosts (no such file" in run.stderr, run
    assert "Traceback" not in run.stdout + run.stderr and "Plan:" not in run.stdout
    assert not (tmp_path / "t.md").exists()


def test_verify_refuses_bad_settings_and_an_unwritable_evidence_directory_before_connecting(tmp_path):
    """Before: a settings error was a SettingsError traceback, an evidence directory it could not create a
    FileNotFoundError traceback after every check had run. The gateway (@local) is never contacted."""
    (tmp_path / "inventory.py").write_text('litellm = ["hx-gw.invalid"]\n')
    (tmp_path / "gd").mkdir()
    (tmp_path / "gd" / "litellm.py").write_text("bind_port = 0\n")
    bad = tool("verify", str(tmp_path / "inventory.py"), "--group-data", str(tmp_path / "gd"))
    assert bad.returncode == 1 and "bind_port: 0 is out of range" in bad.stderr, bad
    (tmp_path / "file").write_text("")
    unwritable = tool("verify", str(tmp_path / "inventory.py"), "--evidence-dir", str(tmp_path / "file" / "ev"))
    assert unwritable.returncode == 1 and "--evidence-dir" in unwritable.stderr, unwritable
    for run in (bad, unwritable):
        assert "Traceback" not in run.stdout + run.stderr and "hx-gw.invalid" not in run.stdout + run.stderr, run


def test_rolling_back_open_webui_where_the_inventory_has_none_is_refused_before_connecting(tmp_path):
    (tmp_path / "inventory.py").write_text('litellm = ["hx-gw.invalid"]\n')
    run = tool("rollback", str(tmp_path / "inventory.py"), "--component", "webui", "--evidence-dir", str(tmp_path))
    assert run.returncode == 1 and "no host in group `webui`; nothing to roll back" in run.stderr, run
    assert "Traceback" not in run.stdout + run.stderr and not list(tmp_path.glob("*/checks.json"))


def test_the_deploy_runs_from_another_directory_and_says_when_the_repositorys_group_data_is_missing(tmp_path):
    """Before: `pyinfra INVENTORY /path/to/deploy.py` from another directory ended in ModuleNotFoundError
    (hx_gateway), and without the repository's group_data/ every knob was listed as missing, one per line."""
    (tmp_path / "inventory.py").write_text('litellm = ["@local"]\n')
    env = {**os.environ, "HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
           "HX_SECRETS_FILE": "/nonexistent"}
    run = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "--dry", str(tmp_path / "inventory.py"),
                          str(REPO / "deploy.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and "Traceback" not in output and "ModuleNotFoundError" not in output, output
    assert "knobs missing from the host data" in output and f"--group-data {REPO / 'group_data'}" in output, output
    assert output.count("missing from the host data") == 1


@pytest.mark.parametrize("name", ["verify", "rollback", "ticket", "destroy"])
def test_every_tool_refuses_a_group_data_directory_that_does_not_exist(tmp_path, name):
    """pyinfra skips a missing --group-data without a word; a tool would then check other settings than
    the ones deployed."""
    (tmp_path / "inventory.py").write_text('litellm = ["hx-gw.invalid"]\n')
    extra = ["--out", str(tmp_path / "t.md")] if name == "ticket" else []
    run = tool(name, str(tmp_path / "inventory.py"), "--group-data", str(tmp_path / "gd-typo"), *extra)
    assert run.returncode == 2 and "gd-typo: no such directory" in run.stderr, run


def test_a_group_data_directory_that_does_not_exist_is_refused_not_skipped(tmp_path):
    """pyinfra skips it without a word: the repository's defaults would be deployed in place of the
    operator's settings."""
    output = refused_run(tmp_path, {}, "--dry", "--group-data", str(tmp_path / "gd-typo"))
    assert f"--group-data {tmp_path / 'gd-typo'}: no such directory" in output, output[-3000:]
    assert "Traceback" not in output and "--> Plan:" not in output
    assert group_data_directories(["pyinfra", "--group-data", "a", "--group-data=b", "inv.py", "deploy.py"]) == [
        "a", "b"]



def tls_data(tmp_path: Path, ca_file: str) -> dict[str, str]:
    return {"litellm.py": f"tls_certificate = {str(tmp_path / 'chain.pem')!r}\n"
                          f"tls_key = {str(tmp_path / 'key.pem')!r}\nca_bundle = {str(tmp_path / ca_file)!r}\n"}


def test_bad_tls_files_are_refused_by_the_deploy_before_any_host_changes_each_named(tmp_path):
    """An expired certificate, a key others can read, a missing CA; then a key that does not match:
    each one refusal naming the knob, no traceback, no plan."""
    ca = make_ca("the operator's CA")
    year_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=365)
    (tmp_path / "chain.pem").write_bytes(issue(ca, ["localhost"], days=30, not_before=year_ago)[0])
    write_private(tmp_path / "key.pem", issue(ca, ["localhost"])[1])
    os.chmod(tmp_path / "key.pem", 0o644)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    for run in ("run", "run2"):
        (tmp_path / run).mkdir()
    output = refused_run(tmp_path / "run", tls_data(tmp_path, "missing-ca.pem"), "--dry")
    assert "refused, nothing was changed on any host:" in output
    assert "has mode 0644, so others on the control node can read the private key" in output
    assert "missing-ca.pem cannot be read" in output and "tls_certificate: expired on " in output
    assert "Traceback" not in output and "--> Plan:" not in output and "Starting operation" not in output
    os.chmod(tmp_path / "key.pem", 0o600)
    (tmp_path / "chain.pem").write_bytes(issue(ca, ["localhost"])[0])
    mismatch = refused_run(tmp_path / "run2", tls_data(tmp_path, "ca.pem"), "--dry")
    assert "tls_key: does not match the certificate in tls_certificate" in mismatch
    # The inventory's host is `@local`: its gateway_url names `local`, which the certificate does not.
    assert "tls_certificate: is for localhost, not 'local', the host clients use" in mismatch
    assert "Traceback" not in mismatch and "--> Plan:" not in mismatch


@pytest.mark.parametrize("password, expected", [
    ("", "HX_DB_PASSWORD (the `db` group's password): missing"),
    ("changeme-changeme-changeme-changeme", "HX_DB_PASSWORD (the `db` group's password): looks like a placeholder"),
])
def test_a_db_group_without_a_real_password_or_with_two_hosts_is_refused_before_any_host_changes(
        tmp_path, password, expected):
    (tmp_path / "inventory.py").write_text('litellm = ["@local"]\ndb = ["hx-db1.invalid", "hx-db2.invalid"]\n')
    env = {**os.environ, "HX_MASTER_KEY": random_key(), "HX_CLIENT_KEY_OPEN_WEBUI": random_key(),
           "HX_SECRETS_FILE": "/nonexistent", "HX_DB_PASSWORD": password}
    result = subprocess.run([str(Path(sys.executable).parent / "pyinfra"), "--dry", "-y",
                             str(tmp_path / "inventory.py"), "deploy.py"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "refused, nothing was changed on any host:" in output, output[-3000:]
    assert expected in output
    assert "db: 2 hosts (hx-db1.invalid, hx-db2.invalid); the gateways record usage in one database" in output
    assert "Traceback" not in output and "--> Plan:" not in output and "Starting operation" not in output
