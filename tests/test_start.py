"""templates/gateway/hx_start.py, the gateway's start: LiteLLM's proxy imported with the garbage collector
paused, then frozen, then LiteLLM's own `litellm` command with the same arguments. A stand-in `litellm`
distribution (its proxy module and its console-script entry point) records what it saw."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import defaults

from hx_gateway.model.settings import load_settings
from hx_gateway.pyinfra_ext import render
from hx_gateway.pyinfra_ext.health import canary_command

START = render.TEMPLATE_DIR / "hx_start.py"

PROXY_SERVER = """\
import gc, json, os
cycles = [[] for _ in range(50_000)]
for cycle in cycles:
    cycle.append(cycle)  # as a big import does: many objects, some in cycles
IMPORTED = {"gc_enabled_during_import": gc.isenabled(), "imports": int(os.environ.get("HX_IMPORTS", "0")) + 1}
os.environ["HX_IMPORTS"] = str(IMPORTED["imports"])
"""

CLI = """\
import gc, json, sys
from litellm.proxy import proxy_server  # as LiteLLM's command does: already loaded, not run again

def run_server():
    print(json.dumps({**proxy_server.IMPORTED, "argv": sys.argv, "gc_enabled": gc.isenabled(),
                      "frozen": gc.get_freeze_count()}))
    sys.exit(3)
"""


def stand_in_litellm(root: Path) -> Path:
    """A `litellm` package with `litellm.proxy.proxy_server` and a `litellm` console script, on a path."""
    package = root / "litellm"
    (package / "proxy").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "proxy" / "__init__.py").write_text("")
    (package / "proxy" / "proxy_server.py").write_text(PROXY_SERVER)
    (package / "cli.py").write_text(CLI)
    info = root / "litellm-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: litellm\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nlitellm = litellm.cli:run_server\n")
    return root


def test_the_proxy_is_imported_once_with_the_collector_paused_then_frozen_and_the_command_runs(tmp_path):
    site = stand_in_litellm(tmp_path / "site")
    run = subprocess.run([sys.executable, "-P", str(START), "--config", "/etc/litellm/config.yaml", "--port", "4000"],
                         capture_output=True, text=True, env={"PYTHONPATH": str(site)}, cwd=tmp_path, timeout=60)
    assert run.returncode == 3, run.stderr  # the command's own exit status
    seen = json.loads(run.stdout)
    assert seen["gc_enabled_during_import"] is False and seen["imports"] == 1
    assert seen["argv"] == ["litellm", "--config", "/etc/litellm/config.yaml", "--port", "4000"]
    assert seen["gc_enabled"] is True and seen["frozen"] >= 50_000


def test_a_failing_import_turns_the_collector_back_on_and_is_not_swallowed(tmp_path):
    site = stand_in_litellm(tmp_path / "site")
    (site / "litellm" / "proxy" / "proxy_server.py").write_text("import a_module_the_venv_lacks\n")
    probe = (f"import gc, runpy, sys; sys.argv = ['hx_start.py']\n"
             f"try:\n    runpy.run_path({str(START)!r}, run_name='__main__')\n"
             f"except ModuleNotFoundError as e:\n    print(e.name, gc.isenabled())\n")
    run = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True,
                         env={"PYTHONPATH": str(site)}, timeout=60)
    assert run.stdout.split() == ["a_module_the_venv_lacks", "True"], run.stderr


def test_the_unit_and_the_canary_start_litellm_through_it():
    settings = load_settings(defaults(), "hx-api")
    start = "/opt/litellm/current/bin/python -P /etc/litellm/hx_start.py --config /etc/litellm/config.yaml"
    assert f"\nExecStart={start} --host 0.0.0.0 --port 4000 " in render.render_unit(settings, 2, [])
    assert f" {start} --host 127.0.0.1 --port " in canary_command(settings, "canary", 4100)
    start_module = render.managed_files(settings)["start"]
    assert (start_module.path, start_module.user, start_module.group, start_module.mode) == (
        "/etc/litellm/hx_start.py", "root", "litellm", "640")
