"""`./hx lab [--fleet] [--db] [--monitor] [--webui] [--tls]`: bring the lab up, deploy into it, and prove it (the
README's first command). With --fleet the lab is the whole service: hx-redis and hx-lb in front of two
gateways; with --db it has hx-db, the usage database (PostgreSQL); with --monitor hx-monitor
(Prometheus, scraping every host); with --webui hx-webui (Open WebUI on its own client key); with --tls
the gateways serve HTTPS with the lab's own CA (made once in ~/.config/hx-gateway/lab-tls/).

Secrets: HX_MASTER_KEY / HX_CLIENT_KEY_* from the environment, else a lab secrets file generated
once at ~/.config/hx-gateway/lab-secrets.env (mode 0600, outside the repository).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from lab.lab import Lab

REPO = Path(__file__).resolve().parent.parent
LAB_SECRETS = Path("~/.config/hx-gateway/lab-secrets.env").expanduser()
INVENTORY = "lab/inventory.py"
LAB_TLS = LAB_SECRETS.parent / "lab-tls"


LAB_SECRET_NAMES = ("HX_MASTER_KEY", "HX_CLIENT_KEY_OPEN_WEBUI", "HX_REDIS_PASSWORD", "HX_DB_PASSWORD",
                    "HX_WEBUI_SECRET_KEY", "HX_WEBUI_ADMIN_PASSWORD")


def ensure_lab_secrets(path: Path = LAB_SECRETS) -> Path:
    """Every secret the lab needs, generated once (a file from an earlier lab gets the new ones added)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "r+") as fh:
        present = {line.partition("=")[0] for line in fh.read().splitlines()}
        for name in LAB_SECRET_NAMES:
            if name not in present:
                fh.write(f"{name}=sk-{secrets.token_urlsafe(32)}\n")
    return path


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    if "--fleet" in argv:  # the whole service: hx-redis, hx-lb, two gateways
        argv = [a for a in argv if a != "--fleet"]
        env["HX_LAB_FLEET"] = os.environ["HX_LAB_FLEET"] = "1"
    if "--db" in argv:  # the usage database: hx-db (PostgreSQL)
        argv = [a for a in argv if a != "--db"]
        env["HX_LAB_DB"] = os.environ["HX_LAB_DB"] = "1"
    if "--monitor" in argv:  # Prometheus: hx-monitor
        argv = [a for a in argv if a != "--monitor"]
        env["HX_LAB_MONITOR"] = os.environ["HX_LAB_MONITOR"] = "1"
    if "--webui" in argv:  # Open WebUI: hx-webui, on its own client key
        argv = [a for a in argv if a != "--webui"]
        env["HX_LAB_WEBUI"] = os.environ["HX_LAB_WEBUI"] = "1"
    if "--tls" in argv:  # HTTPS on the gateways, with the lab's own CA (made once, beside the lab's secrets)
        argv = [a for a in argv if a != "--tls"]
        env["HX_LAB_TLS"] = str(LAB_TLS)
    Lab.from_env().up()
    if "HX_MASTER_KEY" not in env:
        env.setdefault("HX_SECRETS_FILE", str(ensure_lab_secrets()))
    bin_dir = Path(sys.executable).parent
    confirm = [] if "--dry" in argv else ["-y"]  # a preview shows pyinfra's own table of changes too
    deploy = subprocess.run([str(bin_dir / "pyinfra"), *confirm, INVENTORY, "deploy.py", *argv], cwd=REPO, env=env)
    if deploy.returncode != 0 or "--dry" in argv:
        return deploy.returncode
    return subprocess.run([sys.executable, "-m", "hx_gateway.verify", INVENTORY], cwd=REPO, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
