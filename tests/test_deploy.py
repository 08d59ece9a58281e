"""Converge, idempotence, one-knob change, bad input, secrets kept out of every output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from conftest import gateway_url, host_state, main_pid, pyinfra, random_key

from lab.lab import exec_in

pytestmark = pytest.mark.lab

def test_fresh_converge_serves_the_aliases(converged, lab_secrets):
    assert exec_in("hx-api", "systemctl", "is-active", "litellm") == "active"
    assert exec_in("hx-api", "systemctl", "is-enabled", "litellm") == "enabled"
    assert ":4000 " in exec_in("hx-api", "ss", "-Htln") + " "
    auth = {"Authorization": f"Bearer {lab_secrets['HX_MASTER_KEY']}"}
    models = httpx.get(f"{gateway_url()}/v1/models", headers=auth)
    assert {m["id"] for m in models.json()["data"]} == {"phi3-3.8b", "llama3-8b", "emb-premium", "hx-chat"}


def test_service_user_and_file_modes(converged):
    assert exec_in("hx-api", "getent", "passwd", "litellm").split(":")[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    modes = exec_in("hx-api", "stat", "-c", "%n %a %U %G", "/etc/litellm/litellm.env", "/etc/litellm/config.yaml")
    assert "/etc/litellm/litellm.env 600 root root" in modes
    assert "/etc/litellm/config.yaml 640 root litellm" in modes
    cmdline = exec_in("hx-api", "sh", "-c", "cat /proc/$(systemctl show -p MainPID --value litellm)/cmdline")
    assert "/etc/litellm/hx_start.py\0--config\0" in cmdline and "sk-" not in cmdline  # templates/gateway/hx_start.py


def test_second_run_changes_nothing_and_does_not_restart(converged, lab_secrets):
    pid = main_pid()
    run = pyinfra(secrets_env=lab_secrets)
    assert run.returncode == 0 and run.changed_ops() == [], run.changed_ops()
    assert main_pid() == pid
    dry = pyinfra("--dry", secrets_env=lab_secrets)
    assert dry.returncode == 0 and dry.changed_ops() == [], dry.changed_ops()
    assert "--> Plan: no changes (3 hosts)" in dry.output


def test_one_knob_changes_only_the_config_and_restarts_once(converged, lab_secrets, tmp_path):
    pid = main_pid()
    (tmp_path / "litellm.py").write_text("cooldown_time = 45\n")
    run = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    changed = run.changed_ops()
    assert any("config.yaml" in op for op in changed) and any(op.startswith("Service | Restart") for op in changed)
    assert not any("Unit" in op or "env file" in op or "Install LiteLLM" in op for op in changed), changed
    assert "cooldown_time: 45" in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")
    assert main_pid() != pid
    back = pyinfra(secrets_env=lab_secrets)  # and back to the defaults
    assert back.returncode == 0 and "cooldown_time: 30" in exec_in("hx-api", "cat", "/etc/litellm/config.yaml")


BAD_GROUP_DATA = {
    "duplicate alias": ("all.py", "model_aliases = [{'name': 'a', 'ollama_model': 'm', 'kind': 'chat'}] * 2\n"),
    "unknown kind": ("all.py", "model_aliases = [{'name': 'a', 'ollama_model': 'm', 'kind': 'vision'}]\n"),
    "alias with no backend": ("all.py", "model_aliases = [{'name': 'a', 'ollama_model': 'm', 'kind': 'chat', "
                                        "'backends': ['http://elsewhere:11434']}]\n"),
    "malformed backend": ("all.py", "backends = ['hx-llm01:11434/path']\n"),
    "port out of range": ("litellm.py", "bind_port = 0\n"),
    "group with unknown alias": ("all.py", "model_groups = {'hx-chat': ['no-such-alias']}\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_GROUP_DATA) + ["missing key", "placeholder key", "short key"])
def test_bad_input_fails_before_any_change(converged, lab_secrets, tmp_path, case):
    secrets_env = dict(lab_secrets)
    if case in BAD_GROUP_DATA:
        name, text = BAD_GROUP_DATA[case]
        (tmp_path / name).write_text(text)
    else:
        (tmp_path / "all.py").write_text("environment = 'production'\nbackends = ['http://hx-llm01:11434', "
                                         "'http://hx-llm02:11434']\n")
        secrets_env["HX_MASTER_KEY"] = {"missing key": "", "placeholder key":
                                        "sk-1234567890abcdef-test-key-please-replace", "short key": "sk-short"}[case]
    before = host_state()
    run = pyinfra(secrets_env=secrets_env, group_data=tmp_path)
    assert run.returncode != 0
    assert re.search(r"invalid gateway settings", run.output), run.output[-2000:]
    assert host_state() == before


def test_a_port_held_by_another_service_fails_preflight_naming_it(converged, lab_secrets, tmp_path):
    # Another user's service on the port the gateway should take: LiteLLM would silently move away.
    exec_in("hx-api", "systemd-run", "--unit=hx-squatter", "--uid=nobody", "python3", "-m", "http.server", "4100")
    try:
        wait_for_listener = "for i in $(seq 50); do ss -Htln | grep -q ':4100 ' && exit 0; sleep 0.1; done; exit 1"
        exec_in("hx-api", "sh", "-c", wait_for_listener)
        (tmp_path / "litellm.py").write_text("bind_port = 4100\n")
        before = host_state()
        run = pyinfra(secrets_env=lab_secrets, group_data=tmp_path)
        assert run.returncode != 0
        assert re.search(r"port: 4100 is already taken by hx-squatter\.service, nobody", run.output), run.output[-2000:]
        assert host_state() == before
    finally:
        exec_in("hx-api", "systemctl", "stop", "hx-squatter", check=False)


def test_rotated_key_never_appears_in_dry_diff_verbose_output(converged, lab_secrets):
    rotated = {**lab_secrets, "HX_MASTER_KEY": random_key()}
    run = pyinfra("--dry", "--diff", "-v", secrets_env=rotated)
    assert run.returncode == 0, run.output[-3000:]
    assert "contents changed (hidden)" in run.output and "LITELLM_MASTER_KEY" in run.output
    for value in (*lab_secrets.values(), rotated["HX_MASTER_KEY"]):
        assert value not in run.output


def test_hardening_score_at_most_1_5(converged):
    out = exec_in("hx-api", "systemd-analyze", "security", "litellm.service", "--no-pager", check=False)
    score = float(re.search(r"Overall exposure level for litellm.service:\s*([\d.]+)", out).group(1))
    assert score <= 1.5, out[-1500:]


# Importing LiteLLM outside the unit would fetch the cost map from the internet; never from a test.
LOCAL_COST_MAP = "LITELLM_LOCAL_MODEL_COST_MAP=True"


def test_workers_run_the_measured_fast_paths(converged):
    """locks/litellm.in adds two distributions for speed (bench/README.md): uvicorn must parse HTTP
    with httptools in every worker, and LiteLLM's OTel logger module must import (without the SDK it
    fails, and LiteLLM retries that import on every request)."""
    workers = exec_in("hx-api", "pgrep", "-P", main_pid()).split()
    assert workers
    for pid in workers:
        assert "/httptools/" in exec_in("hx-api", "cat", f"/proc/{pid}/maps"), f"worker {pid} parses with h11"
    imported = exec_in("hx-api", "env", LOCAL_COST_MAP, "/opt/litellm/current/bin/python", "-I", "-c",
                       "import litellm.integrations.otel.logger; print('imported')", check=False)
    assert imported.endswith("imported"), imported[-2000:]


# Run by the venv's python on the gateway: hx_speedups.py refusing another LiteLLM version; hx_auth.py
# loaded the way LiteLLM loads it (which installs hx_speedups.py); then the patched answer compared
# with LiteLLM's own for cost-map names in any case, names it lacks, a key registered later, and a
# replaced map. Prints one JSON document.
SPEEDUP_PROBE = r"""
import importlib.util, json, os, sys
import litellm
from litellm.llms.ollama.common_utils import OllamaModelInfo
from litellm.proxy.types_utils.utils import get_instance_fn
beside_config = os.path.join(os.path.dirname(sys.argv[1]), "hx_speedups.py")
spec = importlib.util.spec_from_file_location("hx_speedups", beside_config)
speedups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(speedups)
speedups.MEASURED_ON = "0.0.0"  # as if LiteLLM had been upgraded under it
refused = speedups.install() is False and not hasattr(OllamaModelInfo._is_static_ollama_model, "hx_speedup")
get_instance_fn("hx_auth.user_api_key_auth", sys.argv[1])
patched = OllamaModelInfo._is_static_ollama_model
original = getattr(patched, "unpatched", None)
some = [k for k in litellm.model_cost if k.startswith("ollama")][:3]
names = [*some, *(k.upper() for k in some), "ollama_chat/phi3:3.8b-mini-128k-instruct-q8_0", "ollama/llama3",
         "hx-not-a-model", "ollama_chat/HX-NEW:1b"]
def answers():
    return [patched(n) for n in names], [original(n) for n in names] if original else []
before = answers()
litellm.register_model({"ollama_chat/hx-new:1b": {"litellm_provider": "ollama", "mode": "chat"}})  # as hx-new:1b
registered = answers()
litellm.model_cost = {"ollama/hx-only:1b": {}}
replaced = answers()
print(json.dumps({"patched": bool(getattr(patched, "hx_speedup", False)), "other_version_refused": refused,
                  "rounds": [before, registered, replaced]}))
"""


def test_the_speedup_is_installed_and_answers_what_litellm_answers(converged):
    """hx_speedups.py keeps LiteLLM's lower-cased cost-map keys between calls (~10 % of a worker's CPU,
    bench/README.md); its answers must stay LiteLLM's own, also after the map changes."""
    out = exec_in("hx-api", "env", LOCAL_COST_MAP, "/opt/litellm/current/bin/python", "-I", "-c", SPEEDUP_PROBE,
                  "/etc/litellm/config.yaml", check=False)
    found = json.loads(out.splitlines()[-1])
    assert found["patched"] and found["other_version_refused"], out[-2000:]
    for patched, original in found["rounds"]:
        assert patched == original
    before, registered, replaced = (p for p, _ in found["rounds"])
    assert before[:3] == [True] * 3 and before[-1] is False and registered[-1] is True  # a key registered later is seen
    assert replaced[:3] == [False] * 3  # a replaced map is read again
    assert "nothing patched" not in exec_in("hx-api", "journalctl", "-u", "litellm", "--no-pager", check=False)


def test_a_redis_going_away_costs_a_limit_check_one_try_not_seconds_of_retries(converged):
    """hx_auth's limit checks run on the worker's event loop: redis-py's own retries (10, with up to
    1 s backoff each) once stalled both gateways past the balancer's health check, and clients got
    503s while Redis stopped (CI, 2026-12-02). One try, bounded by the client's timeout."""
    probe = (Path(__file__).parent / "probes" / "redis_outage.py").read_bytes()
    out = exec_in("hx-api", "env", LOCAL_COST_MAP, "/opt/litellm/current/bin/python", "-I", "-",
                  "/etc/litellm/config.yaml", stdin=probe, check=False)
    found = json.loads(out.splitlines()[-1])
    assert found["closes"]["connections"] == 1 and found["closes"]["seconds"] < 0.2, found
    assert found["hangs"]["connections"] == 1 and found["hangs"]["seconds"] < 0.5, found


def test_a_bind_host_the_host_does_not_have_is_refused_before_any_change(converged, lab_secrets, tmp_path):
    """Issue 22: found by preflight from the host's addresses, not by a failed restart and a rollback."""
    (tmp_path / "litellm.py").write_text("bind_host = '192.0.2.10'\n")
    before = host_state()
    pid = main_pid()
    for options in ((), ("--dry",)):
        run = pyinfra(*options, secrets_env=lab_secrets, group_data=tmp_path)
        assert run.returncode != 0
        assert "bind_host: 192.0.2.10 is not an address of this host (it has " in run.output, run.output[-2000:]
        assert "Traceback" not in run.output and "--> Plan:" not in run.output
    assert host_state() == before and main_pid() == pid
