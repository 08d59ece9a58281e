"""The lab's production path: sshd in every container, a non-root admin with key-only login and
passwordless sudo, root login disabled. The key is generated per lab on the control node (outside
the repository) and never committed.

    python -m lab.ssh enable        after `python -m lab.lab up`; then `pyinfra lab/inventory_ssh.py deploy.py`
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.lab import DEFAULT_NAME, Lab, exec_in, write_file

ADMIN = "hxadmin"
SSH_DIR = Path(os.environ.get("HX_CACHE_DIR", "~/.cache/hx-gateway")).expanduser() / "lab-ssh"
SSHD_POLICY = """# hx-gateway lab: as production (seed documents): keys only, no root login.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
"""


def key_paths(lab_name: str = DEFAULT_NAME) -> tuple[Path, Path]:
    folder = SSH_DIR / lab_name
    return folder / "id_ed25519", folder / "known_hosts"


def ensure_key(lab_name: str = DEFAULT_NAME) -> tuple[Path, str]:
    """The lab's private key file (0600) and its public key line; generated once per lab."""
    private, _ = key_paths(lab_name)
    if not private.exists():
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + f" hx-lab-{lab_name}"


def enable(lab: Lab) -> Path:
    """Admin account, key, sudoers drop-in and sshd on every lab host; returns the private key path."""
    private, public = ensure_key(lab.name)
    for host in lab.hosts():
        name = host.name
        exec_in(name, "sh", "-c", f"id {ADMIN} >/dev/null 2>&1 || useradd -m -s /bin/bash {ADMIN}")
        exec_in(name, "install", "-d", "-m", "700", "-o", ADMIN, "-g", ADMIN, f"/home/{ADMIN}/.ssh")
        write_file(name, f"/home/{ADMIN}/.ssh/authorized_keys", public + "\n", mode="0600")
        exec_in(name, "chown", f"{ADMIN}:{ADMIN}", f"/home/{ADMIN}/.ssh/authorized_keys")
        write_file(name, f"/etc/sudoers.d/{ADMIN}", f"{ADMIN} ALL=(ALL) NOPASSWD:ALL\n", mode="0440")
        write_file(name, "/etc/ssh/sshd_config.d/hx-lab.conf", SSHD_POLICY)
        exec_in(name, "sh", "-c", "ssh-keygen -A >/dev/null && systemctl unmask ssh.service ssh.socket "
                                  ">/dev/null 2>&1; systemctl enable ssh.service >/dev/null 2>&1; "
                                  "systemctl restart ssh.service")
    return private


def main(argv: list[str]) -> int:
    if argv[:1] != ["enable"]:
        print(__doc__)
        return 2
    lab = Lab.from_env()
    print(enable(lab))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
