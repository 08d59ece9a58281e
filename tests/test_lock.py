"""The committed lock: hashes everywhere, never a compromised LiteLLM, wheels for the target."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from hx_gateway import lock


def committed() -> str:
    (target,) = [t for t in lock.committed_targets() if t.version == "3.11.2"]
    return target.lock_path.read_text()


def test_committed_lock_pins_litellm_with_hashes():
    text = committed()
    assert lock.check_lock(text) == "1.106.2"
    assert len(lock.pins(text)) > 100


@pytest.mark.parametrize("bad", ["1.82.7", "1.82.8", "1.82.8.post1"])
def test_backdoored_versions_are_refused_naming_the_advisory(bad):
    """Breakage guarded: the refused versions changed (the expected ones are written here, issue 32)."""
    text = committed().replace("litellm==1.106.2", f"litellm=={bad}")
    with pytest.raises(lock.LockError, match=rf"litellm {bad} is denied: PYSEC-2026-2 \(backdoored release"):
        lock.check_lock(text)


@pytest.mark.parametrize("old, advisories", [
    ("1.82.6", ["GHSA-jjhc-v7c2-5hh6", "MCP test-endpoint command injection", "GHSA-4xpc-pv4p-pm3w"]),
    ("1.83.7", ["GHSA-4xpc-pv4p-pm3w", "MCP authentication bypass"]),
    ("1.86.1", []),
])
def test_versions_below_the_floor_are_refused_naming_what_they_miss(old, advisories):
    text = committed().replace("litellm==1.106.2", f"litellm=={old}")
    with pytest.raises(lock.LockError, match=rf"litellm {old} is below the minimum 1\.86\.2") as refused:
        lock.check_lock(text)
    for advisory in advisories:
        assert advisory in str(refused.value)
    if not advisories:
        assert "GHSA" not in str(refused.value)


@pytest.mark.parametrize("allowed", ["1.86.2", "1.106.2", "2.0"])
def test_versions_at_or_above_the_floor_pass(allowed):
    assert lock.check_lock(committed().replace("litellm==1.106.2", f"litellm=={allowed}")) == allowed


def make_wheel(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, "import os\n")
    return path


def test_a_wheel_with_a_start_up_hook_is_refused_naming_it(tmp_path):
    clean = make_wheel(tmp_path / "clean-1.0-py3-none-any.whl", ["clean/__init__.py", "clean-1.0.dist-info/RECORD"])
    lock.check_startup_hooks([clean])
    for hook in ("litellm_init.pth", "sitecustomize.py", "usercustomize/__init__.py"):
        bad = make_wheel(tmp_path / "bad-1.0-py3-none-any.whl", ["bad/__init__.py", hook])
        with pytest.raises(lock.LockError, match=rf"bad-1.0-py3-none-any.whl: {hook.split('/')[0]}"):
            lock.check_startup_hooks([clean, bad])


def test_lock_without_hashes_is_refused():
    with pytest.raises(lock.LockError, match="no hashes"):
        lock.check_lock("litellm==1.106.2\n")


def test_a_glibc_newer_than_uv_knows_resolves_as_the_newest_it_knows():
    assert lock.TargetPython("3.13.5", "x86_64", "2.41").uv_manylinux == "2_40"
    assert lock.TargetPython("3.11.2", "x86_64", "2.36").uv_manylinux == "2_36"


def test_pip_platforms_cover_older_manylinux_tags():
    tags = lock.TargetPython("3.11.2", "x86_64", "2.36").pip_platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux2014_x86_64" in tags and "manylinux_2_17_x86_64" in tags
