"""Install: OS prerequisites, the service user, and the locked LiteLLM venv."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import apt, files, server

from hx_gateway.lock import TargetPython
from hx_gateway.settings import Settings

CACHE_ON_TARGET = "/var/cache/hx-gateway"
KEEP_VENVS = 3


def install_script(settings: Settings, archive_name: str, lock_digest: str) -> str:
    """Build the venv for this lock in its own directory, then switch `current` to it atomically.

    An interrupted run leaves a directory without the marker; the next run removes and rebuilds it.
    """
    venv = f"{settings.venv_root}/venvs/{lock_digest[:16]}"
    return f"""set -eu
venv={venv}
work=$(mktemp -d {CACHE_ON_TARGET}/unpack.XXXXXX)
trap 'rm -rf "$work"' EXIT
rm -rf "$venv"
python3 -m venv "$venv"
tar -xf {CACHE_ON_TARGET}/{archive_name} -C "$work"
"$venv/bin/pip" install --isolated --quiet --no-index --find-links "$work" --require-hashes -r "$work/requirements.lock"
"$venv/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null
echo {lock_digest} > "$venv/.hx-lock-sha256"
ln -sfn "$venv" {settings.venv_root}/current.new && mv -T {settings.venv_root}/current.new {settings.venv_root}/current
ls -1dt {settings.venv_root}/venvs/* | grep -vx "$venv" | tail -n +{KEEP_VENVS} | xargs -r rm -rf
rm -f {CACHE_ON_TARGET}/{archive_name}
"""


@deploy("Install")
def install(settings: Settings, facts: dict, target: TargetPython, archive: Path | None, lock_digest: str) -> list:
    """Returns the operations whose change means the service must restart."""
    if not facts["has_venv"] or not facts["has_ss"]:
        apt.packages(name="Install OS prerequisites", packages=["python3-venv", "iproute2"], update=True,
                     cache_time=3600)
    server.group(name=f"Service group {settings.service_group}", group=settings.service_group, system=True)
    server.user(
        name=f"Service user {settings.service_user} (no login, no home)",
        user=settings.service_user, group=settings.service_group, system=True,
        shell="/usr/sbin/nologin", home="/nonexistent", create_home=False, ensure_home=False,
    )
    for path in (settings.venv_root, f"{settings.venv_root}/venvs", CACHE_ON_TARGET):
        files.directory(name=f"Directory {path}", path=path, user="root", group="root", mode="755")
    if archive is None:  # this lock is installed already
        return []
    archive_name = archive.name
    files.put(name=f"Upload wheelhouse {archive_name} (one archive)", src=str(archive),
              dest=f"{CACHE_ON_TARGET}/{archive_name}", mode="644")
    venv = server.shell(name=f"Install LiteLLM from lock {lock_digest[:16]} ({target.key})",
                        commands=[install_script(settings, archive_name, lock_digest)])
    return [venv]
