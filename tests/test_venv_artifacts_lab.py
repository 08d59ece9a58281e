"""A fleet builds each venv once per platform and ships it built (issue 28), in the lab: three fresh
gateways, one build, two receive; the shipped venvs are the built one file for file; a damaged
artifact (in the cache, or on its way to a host) is refused by its digest and nothing is half-installed."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest
from conftest import FRESH, pyinfra, ticket

from hx_gateway import lock, venv_artifacts
from lab.lab import Lab, docker, exec_in
from tasks.locked_venv import activation
from tasks.venv_artifact import REFUSED, unpack_script

pytestmark = pytest.mark.lab
THREE = {"HX_LAB_GATEWAYS": "3"}
GATEWAYS = ("hx-api", "hx-api2", "hx-api3")
# Every entry of the running venv: path, mode, owner, link target, whole-second mtime (what bytecode
# checks), and every file's sha256: what must be the same whether a host built the venv or received it.
MANIFEST = ("cd /opt/litellm/current/ && find . -printf '%p %m %u:%g %l %T@\\n' | awk '{$NF=int($NF); print}' "
            "| sort && find . -type f -print0 | sort -z | xargs -0 sha256sum")


def manifest(container: str) -> str:
    return exec_in(container, "sh", "-c", MANIFEST)


def leftovers(container: str) -> str:
    return exec_in(container, "sh", "-c", "ls -A /var/cache/hx-gateway; ls -d /opt/litellm/venvs/*.* "
                   "/opt/litellm/venvs/incoming.* /opt/litellm/unpack.* 2>/dev/null; true")


@pytest.fixture(scope="module")
def three(lab):
    fleet = Lab(gateways=3)
    fleet.up()
    yield fleet
    docker("rm", "-f", "-v", "hx-api2", "hx-api3")  # back to the single-gateway lab the other tests expect


def fresh(*containers: str) -> None:
    for container in containers:
        exec_in(container, "sh", "-c", FRESH)


def test_three_fresh_gateways_build_once_and_receive_twice_the_same_venv(three, lab_secrets, tmp_path):
    fresh(*GATEWAYS)
    shutil.rmtree(venv_artifacts.ARTIFACT_DIR, ignore_errors=True)
    _, data, _ = ticket(lab_secrets, tmp_path / "change.md", extra_env=THREE)
    says = {h.split("/")[-1]: plan["venv"] for h, plan in data["hosts"].items() if plan["venv"]}
    assert says["hx-api"].endswith("built here, then shipped to the other gateways of this platform that need it")
    assert says["hx-api2"].endswith("received, built on @docker/hx-api") and says["hx-api3"] == says["hx-api2"]
    dry = pyinfra("--dry", secrets_env=lab_secrets, extra_env=THREE)
    assert "@docker/hx-api3: venv received, built on @docker/hx-api (venv-" in dry.output, dry.output[-3000:]

    run = pyinfra(secrets_env=lab_secrets, extra_env=THREE)
    assert run.returncode == 0, run.output[-5000:]
    # the run's own record: one build, two receipts
    assert run.output.count("venv built here and fetched to the control node") == 1, run.output[-5000:]
    assert "[@docker/hx-api]" in next(line for line in run.output.splitlines() if "venv built here and" in line)
    received = [line for line in run.output.splitlines() if "venv received (" in line]
    assert len(received) == 2 and all("built on @docker/hx-api" in line for line in received), received
    cached = sorted(p.name for p in venv_artifacts.ARTIFACT_DIR.glob("venv-*.tar.zst"))
    assert len(cached) == 1, cached

    built = manifest("hx-api")
    assert manifest("hx-api2") == built and manifest("hx-api3") == built  # byte for byte, shebangs and RECORD too
    assert "#!/opt/litellm/venvs/" in exec_in("hx-api2", "head", "-1", "/opt/litellm/current/bin/litellm")
    # Bytecode valid for the receiving host's Python: importing as root (who could rewrite stale .pyc
    # files) changes nothing.
    exec_in("hx-api3", "/opt/litellm/current/bin/python", "-c", "import litellm.proxy.proxy_server")
    assert manifest("hx-api3") == built
    assert all(leftovers(c) == "" for c in GATEWAYS), {c: leftovers(c) for c in GATEWAYS}

    again = pyinfra(secrets_env=lab_secrets, extra_env=THREE)
    assert again.returncode == 0 and again.changed_ops() == [], again.changed_ops()


def test_a_damaged_artifact_in_the_cache_is_refused_and_built_again(three, lab_secrets):
    (artifact,) = venv_artifacts.ARTIFACT_DIR.glob("venv-*.tar.zst")
    with artifact.open("r+b") as fh:  # one byte in the middle: same size, another digest
        fh.seek(artifact.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    fresh("hx-api3")
    run = pyinfra(secrets_env=lab_secrets, extra_env=THREE)
    assert run.returncode == 0, run.output[-5000:]
    built = [line for line in run.output.splitlines() if "venv built here and fetched to the control node" in line]
    assert len(built) == 1 and "[@docker/hx-api3]" in built[0], run.output[-5000:]
    # (two builds of one lock differ in their bytecode and RECORD files, which hold the build's time)
    marker = "/opt/litellm/current/.hx-venv-id"
    assert exec_in("hx-api3", "cat", marker) == exec_in("hx-api", "cat", marker) and leftovers("hx-api3") == ""
    digest = artifact.with_name(artifact.name + ".sha256").read_text().strip()
    assert lock.file_sha256(artifact) == digest  # the cache holds an intact artifact again


def test_an_artifact_damaged_on_its_way_is_refused_on_the_host_which_keeps_its_venv(three, lab_secrets):
    (artifact,) = venv_artifacts.ARTIFACT_DIR.glob("venv-*.tar.zst")
    digest = artifact.with_name(artifact.name + ".sha256").read_text().strip()
    data = bytearray(artifact.read_bytes())
    data[len(data) // 3] ^= 0xFF
    docker("exec", "-i", "hx-api3", "sh", "-c", f"cat > /var/cache/hx-gateway/{artifact.name}", stdin=bytes(data))
    before = manifest("hx-api3")
    venv_id = exec_in("hx-api3", "cat", "/opt/litellm/current/.hx-venv-id")
    unpack = unpack_script("/opt/litellm", venv_id, SimpleNamespace(name=artifact.name), digest,
                           activation("/opt/litellm"))
    result = subprocess.run(["docker", "exec", "hx-api3", "sh", "-c", unpack], capture_output=True, text=True)
    assert result.returncode == 3 and REFUSED in result.stderr, (result.returncode, result.stderr)
    assert manifest("hx-api3") == before and leftovers("hx-api3") == ""  # nothing half-installed, nothing left
