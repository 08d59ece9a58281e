"""The host side of generations, run here against a scratch tree (it is plain Python on the host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hx_gateway.host import generations as tool

SECRET = "sk-" + "s3cret" * 8


@pytest.fixture
def host(tmp_path: Path) -> dict:
    etc, venvs = tmp_path / "etc", tmp_path / "opt" / "venvs"
    etc.mkdir()
    venvs.mkdir(parents=True)
    spec = {"store": str(tmp_path / "generations"), "keep": 2, "venv_root": str(tmp_path / "opt"),
            "files": [{"path": str(etc / "config.yaml"), "user": "root", "group": "root", "mode": "640"},
                      {"path": str(etc / "litellm.env"), "user": "root", "group": "root", "mode": "600"}]}
    return spec


def deploy(spec: dict, config: str, venv: str) -> None:
    Path(spec["files"][0]["path"]).write_text(config)
    Path(spec["files"][1]["path"]).write_text(f"LITELLM_MASTER_KEY={SECRET}\n")
    path = Path(spec["venv_root"]) / "venvs" / venv
    path.mkdir(exist_ok=True)
    (path / ".hx-venv-id").write_text(venv)
    current = Path(spec["venv_root"]) / "current"
    if current.is_symlink():
        current.unlink()
    current.symlink_to(path)


def test_nothing_deployed_means_nothing_kept(host):
    assert tool.snapshot(host, "before deploy")["created"] is None
    assert tool.main([json.dumps(host), "status"]) == {"live": None, "generations": []}


def test_snapshot_once_per_state_then_restore_previous(host):
    deploy(host, "timeout: 30\n", "venv-a")
    first = tool.snapshot(host, "deployed")["created"]
    assert first and tool.snapshot(host, "deployed")["created"] is None  # same state: no duplicate
    deploy(host, "timeout: 45\n", "venv-b")
    second = tool.snapshot(host, "deployed")["created"]
    assert second and second != first
    os.chmod(host["files"][0]["path"], 0o666)

    restored = tool.restore(host, "previous")
    assert restored["restored"] == first
    assert Path(host["files"][0]["path"]).read_text() == "timeout: 30\n"
    assert oct(os.stat(host["files"][0]["path"]).st_mode & 0o777) == "0o640"
    assert os.path.realpath(Path(host["venv_root"]) / "current").endswith("venv-a")
    assert tool.restore(host, second)["restored"] == second  # a named generation, forward again
    assert Path(host["files"][0]["path"]).read_text() == "timeout: 45\n"


def test_restored_files_keep_the_time_they_were_first_written(host):
    """A restore puts back what a running service may already have read (a canary that failed): the
    files keep their first time, or the next deploy would take them for new ones and restart."""
    deploy(host, "timeout: 30\n", "venv-a")
    config, venv_a = host["files"][0]["path"], str(Path(host["venv_root"]) / "venvs" / "venv-a")
    os.utime(config, (1_000_000, 1_000_000))
    os.utime(venv_a, (2_000_000, 2_000_000))
    tool.snapshot(host, "deployed")
    deploy(host, "timeout: 45\n", "venv-b")
    assert tool.restore(host, "previous")["restored"]
    assert os.stat(config).st_mtime == 1_000_000
    assert os.lstat(Path(host["venv_root"]) / "current").st_mtime == 2_000_000


def test_a_generation_keeps_a_file_that_did_not_exist_as_absent(host):
    deploy(host, "timeout: 30\n", "venv-a")
    os.unlink(host["files"][1]["path"])
    tool.snapshot(host, "partial")
    deploy(host, "timeout: 31\n", "venv-a")
    tool.snapshot(host, "full")
    tool.restore(host, "previous")
    assert not os.path.exists(host["files"][1]["path"])


def test_prune_keeps_the_newest_and_the_venvs_they_use(host):
    for n, venv in enumerate(["venv-a", "venv-b", "venv-c"]):
        deploy(host, f"timeout: {n}\n", venv)
        tool.snapshot(host, "deployed")
    names = [g["name"] for g in tool.generations(host)]
    assert len(names) == 2  # keep = 2
    assert sorted(os.listdir(Path(host["venv_root"]) / "venvs")) == ["venv-b", "venv-c"]
    assert "no generation" in tool.restore(host, "nope")["why"]


def test_output_and_store_never_expose_the_key(host):
    deploy(host, "timeout: 30\n", "venv-a")
    # Exactly as the deploy runs it on a host: the file's text through python3 -c.
    result = subprocess.run([sys.executable, "-c", Path(tool.__file__).read_text(), json.dumps(host), "snapshot",
                             "deployed"], capture_output=True, text=True, check=True)
    assert SECRET not in result.stdout + result.stderr
    store = Path(host["store"])
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    for copy in store.rglob("f*"):
        assert oct(copy.stat().st_mode & 0o777) == "0o600"
