"""Commands run outside an operation (from python.call or a CLI) with the deploy's privileges.

Operations get `_sudo` from host data; `host.run_shell_command` does not, so over SSH as an admin
account every such command would run unprivileged. This is the one place that adds it.
"""

from __future__ import annotations

from pyinfra import host as current_host
from pyinfra.api import Host
from pyinfra.connectors.util import CommandOutput

# Every python3 the deploy starts on a host runs as root, over SSH from the admin's home directory.
# -I (isolated mode) keeps that directory, user site-packages and PYTHON* variables off sys.path:
# otherwise a json.py any of the admin's processes left there would run as root (a lab test plants one).
# -S: no site module and no site-packages either; every program the deploy sends needs only the
# standard library, and `site` is ~1.7 ms of the host's CPU per python3 started.
TARGET_PYTHON = "python3 -I -S"


def run_as_root(command: str, on: Host | None = None) -> tuple[bool, CommandOutput]:
    target = on or current_host
    privileges = {"_sudo": True} if target.data.get("_sudo") else {}
    return target.run_shell_command(command, **privileges)


def put_as_root(local: str, remote: str, on: Host | None = None) -> None:
    """Upload a file outside an operation (raises OSError if the connector cannot)."""
    target = on or current_host
    privileges = {"_sudo": True} if target.data.get("_sudo") else {}
    if not target.put_file(local, remote, **privileges):
        raise OSError(f"could not upload {local} to {target.name}:{remote}")


def get_as_root(remote: str, local: str, on: Host | None = None) -> None:
    """Download a file outside an operation (raises OSError if the connector cannot)."""
    target = on or current_host
    privileges = {"_sudo": True} if target.data.get("_sudo") else {}
    if not target.get_file(remote, local, **privileges):
        raise OSError(f"could not download {target.name}:{remote} to {local}")
