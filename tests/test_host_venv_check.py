"""The host's venv check (issue 31), as the host runs it: start-up hooks and the version policy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hx_gateway import lock
from hx_gateway.host import venv_check as host_venv_check

PROGRAM = Path(host_venv_check.__file__)


def venv(tmp_path: Path, version: str = "1.106.2", extra: tuple[str, ...] = ()) -> Path:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / f"litellm-{version}.dist-info").mkdir(parents=True)
    (site / "litellm").mkdir()
    for name in extra:
        (site / name).write_text("import os\n")
    return tmp_path / "venv"


def run(path: Path) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, "-I", "-S", str(PROGRAM), json.dumps(lock.policy()), str(path),
                             "--enforce"], capture_output=True, text=True)
    return result.returncode, json.loads(result.stdout)


def test_a_clean_venv_with_an_allowed_litellm_passes(tmp_path):
    assert run(venv(tmp_path)) == (0, {"venv": str(tmp_path / "venv"), "problems": [], "startup_hooks": [],
                                       "litellm": "1.106.2"})


def test_every_kind_of_start_up_hook_is_named_by_its_path(tmp_path):
    path = venv(tmp_path, extra=("litellm_init.pth", "sitecustomize.py", "usercustomize.py", "harmless.py"))
    code, found = run(path)
    assert code == 1
    assert found["startup_hooks"] == [f"lib/python3.11/site-packages/{n}"
                                      for n in ("litellm_init.pth", "sitecustomize.py", "usercustomize.py")]
    assert [p.split(":")[0] for p in found["problems"]] == [str(path / h) for h in found["startup_hooks"]]


def test_an_allowed_hook_passes(tmp_path):
    policy = {**lock.policy(), "startup_hooks": {"allowed": ["distutils-precedence.pth"]}}
    path = venv(tmp_path, extra=("distutils-precedence.pth",))
    assert host_venv_check.problems(str(path), policy)[0] == []


def test_a_denied_or_too_old_litellm_is_refused_on_the_host(tmp_path):
    code, found = run(venv(tmp_path / "a", "1.82.8"))
    assert code == 1 and found["problems"] == ["litellm 1.82.8 is denied: PYSEC-2026-2 (backdoored release: "
                                               "credential stealer run from litellm_init.pth at every interpreter "
                                               "start)"]
    code, found = run(venv(tmp_path / "b", "1.84.0"))
    assert code == 1 and found["problems"][0].startswith("litellm 1.84.0 is below the minimum 1.86.2")


def test_no_litellm_at_all_is_a_problem(tmp_path):
    (tmp_path / "empty" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    assert run(tmp_path / "empty")[1]["problems"] == [f"{tmp_path / 'empty'}: no litellm distribution installed"]


def test_release_numbers_compare_as_numbers():
    assert host_venv_check.release("1.106.2") > host_venv_check.release("1.86.2")
    assert host_venv_check.release("1.86.2") == host_venv_check.release("1.86.2.0")
    assert host_venv_check.release("1.86.2rc1") < host_venv_check.release("1.86.2")
    assert host_venv_check.release("1.86.2.dev3") < host_venv_check.release("1.86.2")
    assert host_venv_check.release("1.86.2.post1") == host_venv_check.release("1.86.2")


def test_without_enforce_the_program_reports_and_returns_normally(tmp_path):
    result = subprocess.run([sys.executable, "-I", "-S", str(PROGRAM), json.dumps(lock.policy()),
                             str(venv(tmp_path, extra=("evil.pth",)))], capture_output=True, text=True)
    assert result.returncode == 0 and json.loads(result.stdout)["problems"]
