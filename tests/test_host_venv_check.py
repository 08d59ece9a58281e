"""The host's venv check (issue 31), as the host runs it: start-up hooks and the version policy."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    """The program's main, in this process (so mutation testing sees it), with --enforce."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = host_venv_check.main([json.dumps(lock.policy()), str(path), "--enforce"])
    return code, json.loads(printed.getvalue())


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


@pytest.mark.host_process
@pytest.mark.parametrize("enforce, code", [((), 0), (("--enforce",), 1)])
def test_as_the_host_runs_it_only_enforce_sets_the_exit_code(tmp_path, enforce, code):
    result = subprocess.run([sys.executable, "-I", "-S", str(PROGRAM), json.dumps(lock.policy()),
                             str(venv(tmp_path, extra=("evil.pth",))), *enforce], capture_output=True, text=True)
    assert result.returncode == code and json.loads(result.stdout)["problems"]


POLICY = {"minimum": "1.86.2",
          "minimum_because": [{"advisory": "A-1", "summary": "first", "fixed": "1.83.0"},
                              {"advisory": "A-2", "summary": "second", "fixed": "1.84.0"}],
          "denied": [{"version": "1.90.1", "advisory": "BAD-1", "summary": "backdoored"}]}


@pytest.mark.parametrize("version, expected", [
    ("1.90.1", ["litellm 1.90.1 is denied: BAD-1 (backdoored)"]),
    ("1.90.1.post2", ["litellm 1.90.1.post2 is denied: BAD-1 (backdoored)"]),
    ("1.90.2", []), ("1.86.2", []), ("2.0", []),
    ("1.83.5", ["litellm 1.83.5 is below the minimum 1.86.2: A-2: second (fixed in 1.84.0)"]),
    ("1.82.0", ["litellm 1.82.0 is below the minimum 1.86.2: A-1: first (fixed in 1.83.0); A-2: second "
                "(fixed in 1.84.0)"]),
    ("1.85.0", ["litellm 1.85.0 is below the minimum 1.86.2"]),
    ("1.86.2rc1", ["litellm 1.86.2rc1 is below the minimum 1.86.2"]),
])
def test_the_version_rule_word_for_word(version, expected):
    assert host_venv_check.version_problems(version, POLICY) == expected


def test_no_floor_and_no_deny_list_allow_anything():
    assert host_venv_check.version_problems("0.1", {}) == []


@pytest.mark.parametrize("text, expected", [
    ("1.2", (1, 2, 0)), ("v1.2.0.0", (1, 2, 0)), ("1.2.3", (1, 2, 3, 0)), ("1.2.3RC1", (1, 2, 3, -1)),
    ("1.2a1", (1, 2, -1)), ("1.2.3-beta", (1, 2, 3, -1)), ("10", (10, 0)), ("0", (0, 0)),
])
def test_release_tuples(text, expected):
    assert host_venv_check.release(text) == expected


def test_a_version_that_is_no_version_is_an_error():
    with pytest.raises(ValueError, match="not a version: 'latest'"):
        host_venv_check.release("latest")


def test_every_python3_site_packages_is_read_and_nothing_else(tmp_path):
    for python in ("python3.11", "python3.13", "pypy3"):
        (tmp_path / "lib" / python / "site-packages").mkdir(parents=True)
    (tmp_path / "lib" / "python3.12").mkdir()  # no site-packages in it
    (tmp_path / "lib" / "python3.13" / "site-packages" / "LiteLLM-1.99.0.dist-info").mkdir()
    (tmp_path / "lib" / "python3.13" / "site-packages" / "a.pth").write_text("")
    (tmp_path / "lib" / "pypy3" / "site-packages" / "b.pth").write_text("")
    (tmp_path / "lib" / "python3.11" / "site-packages" / "notahook.pthx").write_text("")
    (tmp_path / "lib" / "python3.11" / "site-packages" / "sitecustomize").mkdir()
    assert host_venv_check.site_packages(str(tmp_path)) == [str(tmp_path / "lib" / p / "site-packages")
                                                            for p in ("python3.11", "python3.13")]
    assert host_venv_check.startup_hooks(str(tmp_path)) == ["lib/python3.11/site-packages/sitecustomize",
                                                            "lib/python3.13/site-packages/a.pth"]
    assert host_venv_check.installed_version(str(tmp_path), "litellm") == "1.99.0"
    assert host_venv_check.installed_version(str(tmp_path / "nothing"), "litellm") == ""
    found, hooks, version = host_venv_check.problems(str(tmp_path), {"startup_hooks": {"allowed": ["a.pth"]},
                                                                     "litellm": {}})
    assert version == "1.99.0" and len(hooks) == 2
    assert found == [f"{tmp_path}/lib/python3.11/site-packages/sitecustomize: a start-up hook the lock does not "
                     f"explain (runs at every interpreter start); remove it and find out how it got there"]


def test_only_litellms_own_dist_info_gives_the_version(tmp_path):
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "litellm_enterprise-9.9.dist-info").mkdir(parents=True)
    (site / "other-1.0.dist-info").mkdir()
    (site / "litellm-1.106.2.data").mkdir()
    assert host_venv_check.installed_version(str(tmp_path), "litellm") == ""
    (site / "litellm-1.106.2.dist-info").mkdir()
    assert host_venv_check.installed_version(str(tmp_path), "litellm") == "1.106.2"


def test_a_policy_without_sections_checks_hooks_and_version_all_the_same(tmp_path):
    path = venv(tmp_path, "1.0", extra=("x.pth",))
    found, hooks, version = host_venv_check.problems(str(path), {})
    assert version == "1.0" and hooks == ["lib/python3.11/site-packages/x.pth"] and len(found) == 1
    assert host_venv_check.version_problems("1.83.0", {"minimum": "1.84", "minimum_because": [
        {"advisory": "A", "summary": "s", "fixed": "1.83.0"}]}) == ["litellm 1.83.0 is below the minimum 1.84"]
    assert host_venv_check.version_problems("1.0", {"minimum": "2"}) == ["litellm 1.0 is below the minimum 2"]
