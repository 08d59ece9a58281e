"""Install: OS prerequisites, the service user, and the locked LiteLLM venv."""

from __future__ import annotations

import json

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, python, server

from hx_gateway import lock
from hx_gateway.model.plan import VenvPlan
from hx_gateway.model.settings import Settings
from hx_gateway.pyinfra_ext import changes, render
from hx_gateway.pyinfra_ext.facts import HOST_VENV_CHECK, shell_command
from hx_gateway.pyinfra_ext.operations import ensure_directory
from hx_gateway.pyinfra_ext.remote import TARGET_PYTHON
from hx_gateway.pyinfra_ext.render import CACHE_ON_TARGET
from hx_gateway.venv_artifacts import Artifact
from tasks.gateway import venv_artifact

NOLOGIN = "/usr/sbin/nologin"


# Bytecode is compiled here, as root, because the service cannot write it: measured in the lab, this
# made the converge faster (install +5 s, first start -8 s) and every later restart ~6 s shorter.
UV_INSTALL_OPTIONS = "--link-mode hardlink --compile-bytecode"

# Pull the uv binary out of its wheel (a zip): no pip needed on the target.
EXTRACT_UV = (
    "import glob,sys,zipfile; (w,)=glob.glob(sys.argv[1]+'/installer/uv-*.whl'); z=zipfile.ZipFile(w); "
    "(n,)=[i for i in z.namelist() if i.endswith('.data/scripts/uv')]; open(sys.argv[1]+'/uv','wb').write(z.read(n))"
)


def venv_check_command() -> str:
    """The host's venv check (hx_gateway/host/venv_check.py) with the policy; append the venv and --enforce."""
    return shell_command((HOST_VENV_CHECK, [json.dumps(lock.policy(), sort_keys=True)]))


def install_script(settings: Settings, archive_name: str, archive_sha256: str, venv_id: str) -> str:
    """Build the venv for this lock in its own directory, then switch `current` to it atomically.

    uv installs from the uploaded wheels only (offline, every hash checked) and compiles the bytecode
    as root, so the service never compiles (it could not write it anyway). An interrupted run leaves a
    directory without the marker; the next run removes and rebuilds it. Old venvs go when no kept
    generation uses them (see generations).
    """
    venv = f"{settings.venv_root}/venvs/{venv_id[:16]}"
    archive = f"{CACHE_ON_TARGET}/{archive_name}"
    return f"""set -eu
venv={venv}
echo '{archive_sha256}  {archive}' | sha256sum --check --quiet
# The unpacked wheels and uv's cache sit on the venv's filesystem: uv hardlinks from its cache into
# the venv there, and copies every file (twice the writes) across filesystems.
rm -rf {CACHE_ON_TARGET}/unpack.* {settings.venv_root}/unpack.*  # left by an interrupted run
work=$(mktemp -d {settings.venv_root}/unpack.XXXXXX)
trap 'rm -rf "$work"' EXIT
rm -rf "$venv"
tar -xf {archive} -C "$work"
{TARGET_PYTHON} -c "{EXTRACT_UV}" "$work" && chmod 700 "$work/uv"
{TARGET_PYTHON} -m venv --without-pip "$venv"
UV_CACHE_DIR="$work/cache" "$work/uv" pip install --no-config --offline --no-index --quiet --find-links "$work" \\
  --require-hashes -r "$work/requirements.lock" --python "$venv/bin/python" {UV_INSTALL_OPTIONS}
{activation(settings.venv_root, marker=f'echo {venv_id} > "$venv/.hx-venv-id"')}rm -f {archive}
"""


def activation(venv_root: str, marker: str = "") -> str:
    """The last steps for a new venv in "$venv", built here or received (work files in "$work"):
    `marker` (a build writes the venv's id; a received venv brings it), then `current` switches."""
    return f"""# Before `current` may point at it: only the start-up hooks the lock explains, and a LiteLLM the
# version policy allows (hx_gateway/host/venv_check.py); else the new venv goes and `current` stays.
if ! {venv_check_command()} "$venv" --enforce >"$work/venv-check.json"; then
  cat "$work/venv-check.json" >&2; rm -rf "$venv"; echo "refused: $venv was not activated" >&2; exit 1
fi
{marker}
ln -sfn "$venv" {venv_root}/current.new && mv -T {venv_root}/current.new {venv_root}/current
"""


def service_account(settings: Settings, seen: dict) -> None:
    """The `litellm` system user and group; pyinfra's operations run only where the GatewayHost fact
    (`seen`) differs, since their facts cost several round trips on every run."""
    if not seen.get("group_exists"):
        server.group(name=f"Service group {settings.service_group}", group=settings.service_group, system=True)
    wanted = {"group": settings.service_group, "shell": NOLOGIN, "home": "/nonexistent", "system": True}
    if seen.get("user") != wanted:
        server.user(
            name=f"Service user {settings.service_user} (no login, no home)",
            user=settings.service_user, group=settings.service_group, system=True,
            shell=NOLOGIN, home="/nonexistent", create_home=False, ensure_home=False,
        )


@deploy("Install")
def install(settings: Settings, facts: dict, venv: VenvPlan) -> dict:
    """Returns the operations whose change means the service must restart, by what they manage."""
    # zstd packs and unpacks venv artifacts: needed only by a host that gets a new venv.
    wanted = {"python3-venv": facts["has_venv"], "iproute2": facts["has_ss"],
              **({} if venv.installed else {"zstd": facts.get("has_zstd")})}
    missing = [package for package, present in wanted.items() if not present]
    if missing:
        changes.record("packages", "apt", f"install {', '.join(missing)} (missing)")
        apt.packages(name="Install OS prerequisites", packages=list(wanted), update=True, cache_time=3600)
    service_account(settings, facts["account"])
    directories = render.managed_directories(settings)
    for key in ("venv_root", "venvs", "cache"):
        ensure_directory(directories[key], facts["directories"])
    artifact = Artifact(venv.venv_id, venv.target.key, f"{settings.venv_root}/venvs/{venv.venv_id[:16]}")
    sources = venv_artifact.run_sources()
    summary = f"venv {venv.venv_id[:16]} (LiteLLM {venv.litellm_version}, {venv.target.key})"
    if venv.installed:
        sources.kept[host.name] = summary
        changes.record("venv-source", f"{settings.venv_root}/current", f"keeps {summary}")
        return {}
    sources.need(host.name, artifact)
    cached = bool(sources.cached[artifact.name])
    broken = facts.get("venv_runnable") is False
    before = ("a venv that cannot run (bin/python or bin/litellm missing)" if broken
              else f"LiteLLM {facts['installed_litellm']}" if facts.get("installed_litellm") else "no venv")
    changes.record("venv", f"{settings.venv_root}/current",
                   f"{before} -> LiteLLM {venv.litellm_version} (venv {venv.venv_id[:16]}, {venv.target.key})")
    # Who builds is known once every host is planned: the ticket works it out from these records.
    changes.record("venv-source", f"{settings.venv_root}/current", summary, artifact=artifact.name, cached=cached)
    archive = venv.wheelhouse()
    script = install_script(settings, archive.name, lock.file_sha256(archive), venv.venv_id)
    why = "; the deployed one cannot run" if broken else ""
    if not cached:
        python.call(name=f"Install LiteLLM {venv.litellm_version}: build venv {venv.venv_id[:16]} "
                         f"({venv.target.key}, uv) on the first gateway by name that needs it; in a fleet, pack it "
                         f"and fetch it to the control node",
                    function=venv_artifact.build, artifact=artifact, wheelhouse=archive, install=script,
                    pack=venv_artifact.pack_script(settings, venv.venv_id, artifact))
    # Planned after the build above: pyinfra runs it once every builder has built and fetched.
    received = python.call(name=f"Install LiteLLM {venv.litellm_version}: receive venv {venv.venv_id[:16]} "
                                f"({venv.target.key}) from "
                                f"{'the control node' if cached else 'the gateway that built it'}{why}",
                           function=venv_artifact.receive, settings=settings, venv_id=venv.venv_id,
                           artifact=artifact, activate=activation(settings.venv_root), wheelhouse=archive,
                           install_script=script)
    return {"venv": received}
