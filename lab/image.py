"""Build the lab's base image: debootstrap Debian from the host's own apt mirror, then `docker import`.

The image tag carries a digest of the recipe, so a changed recipe builds a new image and an
unchanged one is reused (`ensure_image` is a no-op when the tag exists).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGE_REPO = "hx-lab-base"

# What a stand-in host needs: systemd as PID 1, the Python the deploy targets, the tools its facts
# read (ss from iproute2, ps from procps), and sshd + sudo for the SSH path of the lab.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    "iproute2",
    "ca-certificates",
    "procps",
    "openssh-server",
    "sudo",
)

# Units that make no sense in a container and slow or break boot.
MASKED_UNITS = (
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "getty@tty1.service",
    "console-getty.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_reap.service",
    "ssh.service",  # the SSH lab enables it explicitly; docker-exec hosts do not need it
)


@dataclass(frozen=True)
class Recipe:
    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = PACKAGES
    masked_units: tuple[str, ...] = MASKED_UNITS

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{IMAGE_REPO}:{self.suite}-{self.digest()}"


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt already uses (deb822 or one-line format)."""
    candidates = sorted((sources_dir / "sources.list.d").glob("*.sources"))
    for path in candidates:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            uris = fields.get("URIs", "").split()
            suites = fields.get("Suites", "").split()
            if uris and any(not s.endswith("-security") for s in suites):
                return uris[0].strip()
    one_line = sources_dir / "sources.list"
    if one_line.exists():
        for line in one_line.read_text().splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and not match.group(2).endswith("-security"):
                return match.group(1)
    raise RuntimeError("no Debian mirror found in /etc/apt sources; configure apt first")


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _require_debootstrap() -> None:
    if shutil.which("debootstrap") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True)


def build_image(recipe: Recipe) -> str:
    """debootstrap into a temp dir, prepare it for systemd-in-docker, and import it."""
    _require_debootstrap()
    mirror = apt_mirror()
    with tempfile.TemporaryDirectory(prefix="hx-lab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        _prepare_rootfs(rootfs, recipe)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-c", "ENV container=docker", "-", recipe.tag],
            stdin=tar.stdout,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the rootfs failed")
    return recipe.tag


def _prepare_rootfs(rootfs: Path, recipe: Recipe) -> None:
    systemd_dir = rootfs / "etc/systemd/system"
    for unit in recipe.masked_units:
        link = systemd_dir / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # A fresh machine-id per container is written by systemd when the file is empty.
    (rootfs / "etc/machine-id").write_text("")
    # Keep the image small: the package cache is not needed, the lists are (apt works inside).
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def ensure_image(recipe: Recipe | None = None) -> str:
    recipe = recipe or Recipe()
    if not image_exists(recipe.tag):
        build_image(recipe)
    return recipe.tag


if __name__ == "__main__":
    print(ensure_image())
