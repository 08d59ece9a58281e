"""The committed lock: hashes everywhere, never a compromised LiteLLM, wheels for the target."""

from __future__ import annotations

import pytest

from hx_gateway import lock


def committed() -> str:
    (target,) = [t for t in lock.committed_targets() if t.version == "3.11.2"]
    return target.lock_path.read_text()


def test_committed_lock_pins_litellm_with_hashes():
    text = committed()
    assert lock.check_lock(text) == "1.106.2"
    assert len(lock.pins(text)) > 100


@pytest.mark.parametrize("bad", sorted(lock.COMPROMISED_LITELLM))
def test_compromised_versions_are_refused(bad):
    text = committed().replace("litellm==1.106.2", f"litellm=={bad}")
    with pytest.raises(lock.LockError, match="compromised"):
        lock.check_lock(text)


def test_lock_without_hashes_is_refused():
    with pytest.raises(lock.LockError, match="no hashes"):
        lock.check_lock("litellm==1.106.2\n")


def test_a_glibc_newer_than_uv_knows_resolves_as_the_newest_it_knows():
    assert lock.TargetPython("3.13.5", "x86_64", "2.41").uv_manylinux == "2_40"
    assert lock.TargetPython("3.11.2", "x86_64", "2.36").uv_manylinux == "2_36"


def test_pip_platforms_cover_older_manylinux_tags():
    tags = lock.TargetPython("3.11.2", "x86_64", "2.36").pip_platforms()
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux2014_x86_64" in tags and "manylinux_2_17_x86_64" in tags
