"""What a venv may run (issue 31), on a real host: the deploy's own install script refuses a venv that
holds a start-up hook the lock does not explain, before `current` moves; verify fails on a serving
venv where one appears later, naming the file."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import defaults, run_verify

from hx_gateway import lock
from hx_gateway.model.settings import load_settings
from hx_gateway.pyinfra_ext.render import CACHE_ON_TARGET
from lab.lab import exec_in
from tasks.locked_venv import install_script

pytestmark = pytest.mark.lab
SITE = "/opt/litellm/current/lib/python3.11/site-packages"


def planted_wheel() -> tuple[str, bytes]:
    """A valid wheel whose only payload is a .pth file at the top of site-packages."""
    name = "hx_planted-1.0-py3-none-any.whl"
    files = {"hx_planted.pth": b"import sys\n",
             "hx_planted-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hx-planted\nVersion: 1.0\n",
             "hx_planted-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                               b"Tag: py3-none-any\n"}
    record = "".join(f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for path, data in files.items()) + "hx_planted-1.0.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in {**files, "hx_planted-1.0.dist-info/RECORD": record.encode()}.items():
            archive.writestr(path, data)
    return name, buffer.getvalue()


def tampered_wheelhouse(tmp_path: Path) -> Path:
    """The lab's wheelhouse with the planted wheel added and pinned, hash and all, in its lock."""
    target = lock.TargetPython("3.11.2", "x86_64", "2.36")
    original = lock.build_wheelhouse(target, target.lock_path)
    wheel_name, wheel = planted_wheel()
    out = tmp_path / "wheelhouse-planted.tar"
    with tarfile.open(original) as source, tarfile.open(out, "w") as tar:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == "requirements.lock":
                data += f"hx-planted==1.0 --hash=sha256:{hashlib.sha256(wheel).hexdigest()}\n".encode()
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        info = tarfile.TarInfo(wheel_name)
        info.size = len(wheel)
        tar.addfile(info, io.BytesIO(wheel))
    return out


def test_a_venv_with_an_unexplained_pth_is_refused_before_current_moves(converged, tmp_path):
    archive = tampered_wheelhouse(tmp_path)
    subprocess.run(["docker", "cp", str(archive), f"hx-api:{CACHE_ON_TARGET}/{archive.name}"], check=True)
    settings = load_settings({**defaults(), "environment": "lab"}, "hx-api")
    before = exec_in("hx-api", "readlink", "/opt/litellm/current")
    script = install_script(settings.venv_root, archive.name, lock.file_sha256(archive), "planted0123456789abcdef")
    result = subprocess.run(["docker", "exec", "-i", "hx-api", "sh"], input=script.encode(), capture_output=True)
    error = result.stderr.decode()
    assert result.returncode != 0, error[-2000:]
    assert "/opt/litellm/venvs/planted012345678/lib/python3.11/site-packages/hx_planted.pth: a start-up hook " \
           "the lock does not explain" in error
    assert "refused: /opt/litellm/venvs/planted012345678 was not activated" in error
    assert exec_in("hx-api", "readlink", "/opt/litellm/current") == before
    assert exec_in("hx-api", "sh", "-c", "ls /opt/litellm/venvs/planted012345678 2>&1 || true").endswith(
        "No such file or directory")


def test_verify_fails_naming_a_hook_that_appears_later(converged, lab_secrets, tmp_path):
    exec_in("hx-api", "sh", "-c", f"echo 'import os' > {SITE}/hx_later.pth")
    try:
        result = run_verify(lab_secrets, tmp_path)
        assert result.returncode == 1, result.stdout[-3000:]
        (bundle,) = tmp_path.iterdir()
        checks = json.loads((bundle / "checks.json").read_text())["checks"]
        (policy,) = [c for c in checks if c["check"] == "venv_allowed_by_policy"]
        assert not policy["ok"] and policy["seen"].startswith(f"{SITE}/hx_later.pth: a start-up hook")
        assert [c["check"] for c in checks if not c["ok"]] == ["venv_allowed_by_policy"]
    finally:
        exec_in("hx-api", "rm", "-f", f"{SITE}/hx_later.pth")
