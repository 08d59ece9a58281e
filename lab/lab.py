"""The Docker lab: systemd containers that stand in for the gateway and the Ollama hosts.

    python -m lab.lab up [--gateways N] [--suites bookworm,trixie]
                                            build/reuse the image(s), start the hosts (idempotent)
    python -m lab.lab status                one line per host
    python -m lab.lab down                  remove every container and the network

Every container carries the label `hx-lab=<name>`, so `down` finds exactly what `up` made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.image import Recipe, ensure_image

LAB_DIR = Path(__file__).resolve().parent
DOUBLE_SOURCE = LAB_DIR / "ollama_double.py"
LABEL = "hx-lab"
DEFAULT_NAME = os.environ.get("HX_LAB_NAME", "hx-lab")

# A real backend takes seconds per model request; the double answers those (not its version or
# tags) after this many ms, so requests overlap the way they do in production (least-busy routing
# sends an idle gateway's requests to the first backend). bench/gateway_throughput.py sets its own
# delay (configure_double) and puts this back.
DOUBLE_DELAY_MS = 50

# Models every backend double "has" unless a test says otherwise (the defaults of group_data/all.py).
DEFAULT_BACKEND_MODELS = (
    "phi3:3.8b-mini-128k-instruct-q8_0",
    "llama3:8b-instruct-q8_0",
    "mxbai-embed-large",
)

# The flags that run systemd as PID 1 on this machine (`--privileged` is not available).
SYSTEMD_FLAGS = (
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
)

DOUBLE_UNIT = """\
[Unit]
Description=Ollama API test double (lab only)
After=network.target

[Service]
ExecStart=/usr/bin/python3 /usr/local/lib/ollama-double/ollama_double.py --config /etc/ollama-double/config.json
DynamicUser=yes
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def docker(*args: str, check: bool = True, capture: bool = True, stdin: bytes | None = None) -> str:
    result = subprocess.run(["docker", *args], capture_output=capture, input=stdin, check=False)
    if check and result.returncode != 0:
        err = result.stderr.decode(errors="replace") if capture else ""
        raise RuntimeError(f"docker {' '.join(args)} failed: {err.strip()}")
    return result.stdout.decode(errors="replace") if capture else ""


@dataclass(frozen=True)
class LabHost:
    name: str
    role: str  # "gateway", "backend", "redis", "lb" or "db"
    suite: str = "bookworm"  # the Debian release the container runs


@dataclass
class Lab:
    name: str = DEFAULT_NAME
    gateways: int = 1
    backends: int = 2
    recipe: Recipe = field(default_factory=Recipe)
    # Debian release per gateway, in order (a mixed fleet); gateways beyond the list run recipe.suite.
    gateway_suites: tuple[str, ...] = ()
    # The whole service: a Redis host and a balancer in front of (at least two) gateways.
    fleet: bool = False
    # The usage database: hx-db (PostgreSQL), running this Debian release ("": none).
    db: str = ""
    # Prometheus: hx-monitor, scraping every other host.
    monitor: bool = False
    # Open WebUI: hx-webui, a client of the gateways.
    webui: bool = False

    @classmethod
    def from_env(cls) -> Lab:
        """HX_LAB_GATEWAYS (count), HX_LAB_GATEWAY_SUITES (e.g. "bookworm,trixie": a mixed fleet),
        HX_LAB_FLEET=1 (hx-redis and hx-lb in front of at least two gateways) and HX_LAB_DB=1 (hx-db, or
        HX_LAB_DB=trixie: hx-db on that release), HX_LAB_MONITOR=1 (hx-monitor, Prometheus), HX_LAB_WEBUI=1
        (hx-webui, Open WebUI)."""
        suites = tuple(s for s in os.environ.get("HX_LAB_GATEWAY_SUITES", "").split(",") if s)
        fleet = os.environ.get("HX_LAB_FLEET") == "1"
        count = max(int(os.environ.get("HX_LAB_GATEWAYS", "1")), len(suites), 2 if fleet else 1)
        db = os.environ.get("HX_LAB_DB", "")
        return cls(gateways=count, gateway_suites=suites, fleet=fleet, db="" if db in ("", "0") else db,
                   monitor=os.environ.get("HX_LAB_MONITOR") == "1", webui=os.environ.get("HX_LAB_WEBUI") == "1")

    @property
    def network(self) -> str:
        return self.name

    def hosts(self) -> list[LabHost]:
        suites = list(self.gateway_suites) + [self.recipe.suite] * self.gateways
        gateways = [LabHost("hx-api" if i == 1 else f"hx-api{i}", "gateway", suites[i - 1])
                    for i in range(1, self.gateways + 1)]
        backends = [LabHost(f"hx-llm{i:02d}", "backend", self.recipe.suite) for i in range(1, self.backends + 1)]
        service = [LabHost("hx-redis", "redis", self.recipe.suite), LabHost("hx-lb", "lb", self.recipe.suite)]
        database = [LabHost("hx-db", "db", self.recipe.suite if self.db == "1" else self.db)] if self.db else []
        monitor = [LabHost("hx-monitor", "monitor", self.recipe.suite)] if self.monitor else []
        webui = [LabHost("hx-webui", "webui", self.recipe.suite)] if self.webui else []
        return gateways + backends + (service if self.fleet else []) + database + monitor + webui

    # -- lifecycle -------------------------------------------------------------------------
    def up(self) -> None:
        images = {suite: ensure_image(replace(self.recipe, suite=suite)) for suite in {h.suite for h in self.hosts()}}
        self._ensure_network()
        started = [h for h in self.hosts() if self._ensure_container(h, images[h.suite])]
        for host in self.hosts():
            wait_for_systemd(host.name)
        for host in self.hosts():
            if host.role == "backend" and (host in started or not self._double_current(host.name)):
                self.install_double(host.name)
        for host in self.hosts():
            if host.role == "backend":
                wait_for_port(host.name, 11434)

    def down(self) -> None:
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.name}").split()
        if ids:
            docker("rm", "-f", "-v", *ids)
        if docker("network", "ls", "-q", "--filter", f"name=^{self.network}$").strip():
            docker("network", "rm", self.network)

    def status(self) -> list[dict[str, str]]:
        rows = []
        for host in self.hosts():
            info = container_info(host.name)
            rows.append({
                "host": host.name,
                "role": host.role,
                "state": info["State"]["Status"] if info else "absent",
                "address": address_of(host.name, self.network) if info else "",
            })
        return rows

    # -- pieces ----------------------------------------------------------------------------
    def _ensure_network(self) -> None:
        if not docker("network", "ls", "-q", "--filter", f"name=^{self.network}$").strip():
            docker("network", "create", "--label", f"{LABEL}={self.name}", self.network)

    def _ensure_container(self, host: LabHost, image: str) -> bool:
        """Start the container if needed; True when it was (re)created."""
        info = container_info(host.name)
        if info and info["Config"]["Image"] == image and info["State"]["Running"]:
            return False
        if info:
            docker("rm", "-f", "-v", host.name)
        docker(
            "run", "-d", "--name", host.name, "--hostname", host.name,
            "--network", self.network, "--network-alias", host.name,
            "--label", f"{LABEL}={self.name}", "--label", f"hx-lab-role={host.role}",
            *SYSTEMD_FLAGS, image, "/sbin/init",
        )
        return True

    def _double_current(self, container: str) -> bool:
        """Running, and the same code and configuration `install_double` would put there."""
        installed = exec_in(container, "sh", "-c", "systemctl is-active ollama; sha256sum "
                            "/usr/local/lib/ollama-double/ollama_double.py; cat /etc/ollama-double/config.json",
                            check=False)
        wanted = hashlib.sha256(DOUBLE_SOURCE.read_bytes()).hexdigest()
        return installed.startswith("active") and wanted in installed and _double_config() in installed

    def install_double(self, container: str, models: tuple[str, ...] = DEFAULT_BACKEND_MODELS) -> None:
        exec_in(container, "mkdir", "-p", "/usr/local/lib/ollama-double", "/etc/ollama-double")
        docker("cp", str(DOUBLE_SOURCE), f"{container}:/usr/local/lib/ollama-double/ollama_double.py")
        write_file(container, "/etc/ollama-double/config.json", _double_config(models))
        write_file(container, "/etc/systemd/system/ollama.service", DOUBLE_UNIT)
        exec_in(container, "systemctl", "daemon-reload")
        exec_in(container, "systemctl", "enable", "--now", "ollama")
        exec_in(container, "systemctl", "restart", "ollama")


def configure_double(container: str, change: dict) -> None:
    """Change a running double's delay, failure status or models (POST /_double/config, from inside
    the host, the way the gateway reaches it)."""
    program = ("import sys,urllib.request; urllib.request.urlopen(urllib.request.Request("
               "'http://127.0.0.1:11434/_double/config', data=sys.argv[1].encode()), timeout=5)")
    exec_in(container, "python3", "-c", program, json.dumps(change))


def double_stats(container: str) -> dict:
    """A running double's counters: {"host", "counts": {"POST /api/chat": 3, ...}, "in_flight"}."""
    program = ("import sys,urllib.request; print(urllib.request.urlopen("
               "'http://127.0.0.1:11434/_double/stats', timeout=5).read().decode())")
    return json.loads(exec_in(container, "python3", "-c", program))


def _double_config(models: tuple[str, ...] = DEFAULT_BACKEND_MODELS) -> str:
    return json.dumps({"models": list(models), "delay_ms": DOUBLE_DELAY_MS})


def container_info(name: str) -> dict | None:
    out = docker("container", "inspect", name, check=False)
    data = json.loads(out) if out.strip() else []
    return data[0] if data else None


def address_of(container: str, network: str = DEFAULT_NAME) -> str:
    return addresses_of([container], network)[container]


def addresses_of(containers: list[str], network: str = DEFAULT_NAME) -> dict[str, str]:
    """Each container's address on the lab network, from one `docker container inspect` (the
    inventories ask for every host on every run; one inspect per host costs ~60 ms each, in turn)."""
    found = json.loads(docker("container", "inspect", *containers, check=False) or "[]")
    addresses = {info["Name"].lstrip("/"): info["NetworkSettings"]["Networks"][network]["IPAddress"]
                 for info in found if network in info["NetworkSettings"]["Networks"]}
    missing = [c for c in containers if c not in addresses]
    if missing:
        raise RuntimeError(f"lab hosts {', '.join(missing)} are not running: run `python -m lab.lab up`")
    return addresses


def exec_in(container: str, *argv: str, check: bool = True, stdin: bytes | None = None) -> str:
    args = ["exec", "-i", container, *argv] if stdin is not None else ["exec", container, *argv]
    return docker(*args, check=check, stdin=stdin).strip()


def write_file(container: str, path: str, content: str, mode: str = "0644") -> None:
    exec_in(container, "sh", "-c", f"umask 077 && cat > {path} && chmod {mode} {path}", stdin=content.encode())


def wait_for_systemd(container: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = exec_in(container, "systemctl", "is-system-running", check=False)
        if state in ("running", "degraded"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{container}: systemd did not finish booting within {timeout:.0f}s (state: {state})")


def wait_for_port(container: str, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in exec_in(container, "ss", "-Htln", check=False) + " ":
            return
        time.sleep(0.2)
    raise RuntimeError(f"{container}: nothing listens on :{port} after {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The hx-gateway Docker lab")
    parser.add_argument("command", choices=("up", "status", "down"))
    parser.add_argument("--gateways", type=int, help="default: HX_LAB_GATEWAYS, or 1")
    parser.add_argument("--suites", help="Debian release per gateway, e.g. bookworm,trixie (HX_LAB_GATEWAY_SUITES)")
    parser.add_argument("--fleet", action="store_true", help="hx-redis and hx-lb too, 2+ gateways (HX_LAB_FLEET=1)")
    parser.add_argument("--name", default=DEFAULT_NAME)
    args = parser.parse_args(argv)
    lab = Lab.from_env()
    suites = tuple(s for s in (args.suites or "").split(",") if s) or lab.gateway_suites
    fleet = args.fleet or lab.fleet
    lab = replace(lab, name=args.name, gateway_suites=suites, fleet=fleet,
                  gateways=max(args.gateways or lab.gateways, len(suites), 2 if fleet else 1))
    if args.command == "up":
        started = time.monotonic()
        lab.up()
        print(f"lab {lab.name} up in {time.monotonic() - started:.1f}s")
        args.command = "status"
    if args.command == "status":
        for row in lab.status():
            print(f"{row['host']:<10} {row['role']:<8} {row['state']:<8} {row['address']}")
    elif args.command == "down":
        lab.down()
        print(f"lab {lab.name} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
