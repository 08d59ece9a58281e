"""The destroy's host program on scratch paths: the plan lists only what exists, apply carries out
exactly the plan, a second run has nothing left to do, and --keep-data wipes only key copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hx_gateway.host import destroy


@pytest.fixture
def deployed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    (tmp_path / "bin").mkdir()
    for tool in ("systemctl", "userdel", "groupdel", "ss"):
        (tmp_path / "bin" / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {tmp_path}/calls\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    etc, opt, store = tmp_path / "etc", tmp_path / "opt", tmp_path / "lib" / "generations"
    for folder in (etc, opt / "venvs" / "abc", opt / "unpack.x1", tmp_path / "cache", store / "g1"):
        folder.mkdir(parents=True)
    (etc / "config.yaml").write_text("x")
    (etc / "litellm.env").write_text("LITELLM_MASTER_KEY=sk-secret")
    (etc / "config.yaml.hx-new").write_text("half")
    (etc / "hx_auth.py").write_text("")
    (etc / "__pycache__").mkdir()
    (etc / "__pycache__" / "hx_auth.cpython-311.pyc").write_text("")
    (opt / "current").symlink_to(opt / "venvs" / "abc")
    (store / "g1" / "f1").write_text("LITELLM_MASTER_KEY=sk-secret")
    (store / "g1" / "f0").write_text("x")
    (store / "g1" / "meta.json").write_text(json.dumps({"files": {str(etc / "litellm.env"): {"stored": "f1"},
                                                                  str(etc / "config.yaml"): {"stored": "f0"}}}))
    return {"unit": "litellm.service", "unit_path": str(etc / "litellm.service"), "port": 4000,
            "files": [str(etc / "config.yaml"), str(etc / "litellm.env"), str(etc / "litellm.service"),
                      str(etc / "hx_auth.py")],
            "secret_files": [str(etc / "litellm.env")], "config_dir": str(etc), "venv_root": str(opt),
            "cache_dir": str(tmp_path / "cache"), "store": str(store), "state_dir": str(store.parent),
            "keep_data": False, "account": {"user": "hx-no-such-user", "group": "hx-no-such-group"}}


def test_apply_carries_out_exactly_the_plan_and_leaves_nothing(deployed: dict, tmp_path: Path):
    planned = destroy.plan(deployed)
    assert [(a["action"], a["target"].replace(str(tmp_path), "")) for a in planned] == [
        ("remove file", "/etc/config.yaml"), ("remove file", "/etc/config.yaml.hx-new"),
        ("remove file", "/etc/litellm.env"), ("remove file", "/etc/hx_auth.py"),
        ("remove file", "/etc/__pycache__/hx_auth.cpython-311.pyc"), ("remove directory", "/etc/__pycache__"),
        ("remove tree", "/opt/venvs"), ("remove file", "/opt/current"),
        ("remove tree", "/opt/unpack.x1"), ("remove tree", "/cache"), ("remove tree", "/lib/generations"),
        ("remove directory", "/etc"), ("remove directory", "/opt"), ("remove directory", "/lib")]
    assert destroy.apply(deployed) == planned
    assert destroy.plan(deployed) == []
    assert not any(p.exists() for p in (tmp_path / "etc", tmp_path / "opt", tmp_path / "lib", tmp_path / "cache"))
    assert all(c["ok"] for c in destroy.proof(deployed)), destroy.proof(deployed)


def test_keep_data_wipes_only_the_key_copies(deployed: dict, tmp_path: Path):
    kept = {**deployed, "keep_data": True}
    planned = destroy.plan(kept)
    assert {"action": "wipe secret copy", "target": str(tmp_path / "lib/generations/g1/f1")} in planned
    assert not any(a["target"] == str(tmp_path / "lib/generations") for a in planned)
    destroy.apply(kept)
    assert (tmp_path / "lib/generations/g1/f0").exists() and not (tmp_path / "lib/generations/g1/f1").exists()
    assert destroy.secret_copies(kept) == [] and destroy.plan(kept) == []


def test_something_the_deploy_did_not_put_there_stays(deployed: dict, tmp_path: Path):
    (tmp_path / "opt" / "bin").mkdir()  # a venv made by hand at the venv root
    (tmp_path / "opt" / "bin" / "python").write_text("")
    assert {"action": "remove directory", "target": str(tmp_path / "opt")} not in destroy.plan(deployed)
    destroy.apply(deployed)
    assert (tmp_path / "opt" / "bin" / "python").exists() and not (tmp_path / "opt" / "venvs").exists()
    assert destroy.plan(deployed) == []


def test_the_operators_ca_leaves_the_trust_store_with_the_rest(deployed: dict, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    cas = tmp_path / "ca-certificates"
    cas.mkdir()
    (cas / "hx-gateway-ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "bin" / "update-ca-certificates").write_text(f"#!/bin/sh\necho update-ca >> {tmp_path}/calls\n")
    (tmp_path / "bin" / "update-ca-certificates").chmod(0o755)
    monkeypatch.setattr(destroy, "LOCAL_CAS", f"{cas}/")
    spec = {**deployed, "files": [*deployed["files"], str(cas / "hx-gateway-ca.crt")]}
    planned = destroy.plan(spec)
    assert {"action": "remove file", "target": str(cas / "hx-gateway-ca.crt")} in planned
    assert {"action": "refresh trust store", "target": "update-ca-certificates"} in planned
    destroy.apply(spec)
    assert not (cas / "hx-gateway-ca.crt").exists() and "update-ca" in (tmp_path / "calls").read_text()
    assert destroy.plan(spec) == []


def test_the_gateways_metrics_process_is_stopped_before_the_gateway(deployed: dict, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(destroy, "unit_present", lambda unit: unit in ("litellm-metrics.service", "litellm.service"))
    planned = destroy.plan({**deployed, "companions": ["litellm-metrics.service"]})
    assert planned[:2] == [{"action": "stop and disable", "target": "litellm-metrics.service"},
                           {"action": "stop and disable", "target": "litellm.service"}]
