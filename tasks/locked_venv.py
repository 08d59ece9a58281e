"""A service's locked venv, built on its host: the install script (uv from the uploaded wheelhouse,
offline, every hash checked), the check a new venv passes before `current` points at it, and the
service's system account. The gateway (tasks/gateway/install.py) and Open WebUI (tasks/webui/) use it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api.exceptions import NestedOperationError
from pyinfra.operations import apt, server

from hx_gateway import lock
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.facts import HOST_VENV_CHECK, shell_command
from hx_gateway.pyinfra_ext.remote import TARGET_PYTHON, put_as_root, run_as_root
from hx_gateway.pyinfra_ext.render import CACHE_ON_TARGET

NOLOGIN = "/usr/sbin/nologin"


# Bytecode is compiled here, as root, because the service cannot write it: measured in the lab, this
# made the converge faster (install +5 s, first start -8 s) and every later restart ~6 s shorter.
UV_INSTALL_OPTIONS = "--link-mode hardlink --compile-bytecode"

# Pull the uv binary out of its wheel (a zip): no pip needed on the target.
EXTRACT_UV = (
    "import glob,sys,zipfile; (w,)=glob.glob(sys.argv[1]+'/installer/uv-*.whl'); z=zipfile.ZipFile(w); "
    "(n,)=[i for i in z.namelist() if i.endswith('.data/scripts/uv')]; open(sys.argv[1]+'/uv','wb').write(z.read(n))"
)


def venv_check_command(product: lock.Product = lock.LITELLM) -> str:
    """The host's venv check (hx_gateway/host/venv_check.py) with the policy (for another product than
    LiteLLM, its start-up hook part only); append the venv and --enforce."""
    policy = lock.policy() if product.version_policy else {"startup_hooks": lock.policy()["startup_hooks"],
                                                           "venv_of": product.name}
    return shell_command((HOST_VENV_CHECK, [json.dumps(policy, sort_keys=True)]))


def install_script(venv_root: str, archive_name: str, archive_sha256: str, venv_id: str,
                   product: lock.Product = lock.LITELLM) -> str:
    """Build the venv for this lock in its own directory, then switch `current` to it atomically.

    uv installs from the uploaded wheels only (offline, every hash checked) and compiles the bytecode
    as root, so the service never compiles (it could not write it anyway). An interrupted run leaves a
    directory without the marker; the next run removes and rebuilds it. Old venvs go when no kept
    generation uses them (see generations).
    """
    venv = f"{venv_root}/venvs/{venv_id[:16]}"
    archive = f"{CACHE_ON_TARGET}/{archive_name}"
    return f"""set -eu
venv={venv}
echo '{archive_sha256}  {archive}' | sha256sum --check --quiet
# The unpacked wheels and uv's cache sit on the venv's filesystem: uv hardlinks from its cache into
# the venv there, and copies every file (twice the writes) across filesystems.
rm -rf {CACHE_ON_TARGET}/unpack.* {venv_root}/unpack.*  # left by an interrupted run
work=$(mktemp -d {venv_root}/unpack.XXXXXX)
trap 'rm -rf "$work"' EXIT
rm -rf "$venv"
tar -xf {archive} -C "$work"
{TARGET_PYTHON} -c "{EXTRACT_UV}" "$work" && chmod 700 "$work/uv"
{TARGET_PYTHON} -m venv --without-pip "$venv"
UV_CACHE_DIR="$work/cache" "$work/uv" pip install --no-config --offline --no-index --quiet --find-links "$work" \\
  --require-hashes -r "$work/requirements.lock" --python "$venv/bin/python" {UV_INSTALL_OPTIONS}
{activation(venv_root, marker=f'echo {venv_id} > "$venv/.hx-venv-id"', product=product)}rm -f {archive}
"""


def activation(venv_root: str, marker: str = "", product: lock.Product = lock.LITELLM) -> str:
    """The last steps for a new venv in "$venv", built here or received (work files in "$work"):
    `marker` (a build writes the venv's id; a received venv brings it), then `current` switches."""
    return f"""# Before `current` may point at it: only the start-up hooks the lock explains, and a LiteLLM the
# version policy allows (hx_gateway/host/venv_check.py); else the new venv goes and `current` stays.
if ! {venv_check_command(product)} "$venv" --enforce >"$work/venv-check.json"; then
  cat "$work/venv-check.json" >&2; rm -rf "$venv"; echo "refused: $venv was not activated" >&2; exit 1
fi
{marker}
ln -sfn "$venv" {venv_root}/current.new && mv -T {venv_root}/current.new {venv_root}/current
"""


def os_prerequisites(facts: dict, venv_installed: bool, also: dict[str, bool] | None = None) -> None:
    """python3-venv, `also` (package -> present), and zstd, which packs and unpacks venv artifacts: needed
    only by a host that gets a new venv. Installed together when any is missing."""
    wanted = {"python3-venv": facts["has_venv"], **(also or {}),
              **({} if venv_installed else {"zstd": facts.get("has_zstd")})}
    missing = [package for package, present in wanted.items() if not present]
    if missing:
        changes.record("packages", "apt", f"install {', '.join(missing)} (missing)")
        apt.packages(name="Install OS prerequisites", packages=list(wanted), update=True, cache_time=3600)


def service_account(user: str, group: str, seen: dict) -> None:
    """The service's system user and group; pyinfra's operations run only where the GatewayHost fact
    (`seen`) differs, since their facts cost several round trips on every run."""
    if not seen.get("group_exists"):
        server.group(name=f"Service group {group}", group=group, system=True)
    wanted = {"group": group, "shell": NOLOGIN, "home": "/nonexistent", "system": True}
    if seen.get("user") != wanted:
        server.user(
            name=f"Service user {user} (no login, no home)",
            user=user, group=group, system=True,
            shell=NOLOGIN, home="/nonexistent", create_home=False, ensure_home=False,
        )


def fail(message: str) -> None:
    """End this host's operation with `message` (in red: the run's output says why)."""
    host.log_styled(message, fg="red", log_func=logger.error)
    raise NestedOperationError(message)


def build_from_wheelhouse(wheelhouse: Path, script: str, what: str = "the venv") -> None:
    """Upload the wheelhouse and run `script` (install_script's, perhaps with more steps after it)
    here; a failure fails the operation, `current` unchanged."""
    put_as_root(str(wheelhouse), f"{CACHE_ON_TARGET}/{wheelhouse.name}")
    ok, output = run_as_root(script)
    if not ok:
        fail(f"building {what} failed:\n{output.stderr.strip()[-2000:]}")
