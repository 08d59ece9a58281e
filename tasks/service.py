"""Service: the hardened unit, enabled and running; restarted only when something it reads changed."""

from __future__ import annotations

import json
from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import files, python, systemd
from pyinfra.operations.util import any_changed

from hx_gateway import render
from hx_gateway.settings import Settings

UNIT_DIR = "/etc/systemd/system"


class ServiceUnhealthy(RuntimeError):
    pass


def wait_for_health(settings: Settings) -> None:
    """Poll /health/liveliness on the host itself (bounded); fail with the last journal lines."""
    probe = (
        "import json,sys,time,urllib.request\n"
        "url,limit=json.loads(sys.argv[1]);deadline=time.time()+limit\n"
        "while time.time()<deadline:\n"
        "    try:\n"
        "        if urllib.request.urlopen(url,timeout=2).status==200: sys.exit(0)\n"
        "    except Exception: pass\n"
        "    time.sleep(0.5)\n"
        "sys.exit(1)\n"
    )
    url = f"http://127.0.0.1:{settings.bind_port}/health/liveliness"
    args = json.dumps([url, settings.health_timeout])
    ok, _ = host.run_shell_command(f"python3 -c '{probe}' '{args}'")
    if not ok:
        _, output = host.run_shell_command(f"journalctl -u {settings.service_name} -n 30 --no-pager")
        journal = "\n".join(f"    {line}" for line in output.stdout_lines)
        raise ServiceUnhealthy(f"{settings.service_name} did not answer {url} within {settings.health_timeout}s. "
                               f"Last journal lines:\n{journal}")


@deploy("Service")
def service(settings: Settings, workers: int, backend_addresses: list[str], restart_triggers: list) -> None:
    unit_path = f"{UNIT_DIR}/{settings.service_name}.service"
    unit = files.put(name=f"Unit {unit_path}", src=StringIO(render.render_unit(settings, workers, backend_addresses)),
                     dest=unit_path, user="root", group="root", mode="644")
    systemd.daemon_reload(name="systemd daemon-reload (unit changed)", _if=unit.did_change)
    started = systemd.service(name=f"{settings.service_name} enabled and running",
                              service=settings.service_name, running=True, enabled=True)
    restart_needed = any_changed(unit, *restart_triggers)
    restarted = systemd.service(name=f"Restart {settings.service_name} (unit, config, env or venv changed)",
                                service=settings.service_name, restarted=True,
                                _if=lambda: restart_needed() and not started.did_change())
    python.call(name=f"Wait for {settings.service_name} /health/liveliness",
                function=wait_for_health, settings=settings, _if=any_changed(started, restarted))
