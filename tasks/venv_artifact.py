"""Build a venv once per platform, ship it built: who builds, who receives, and the host steps.

Gateways (a fleet): every gateway that needs a venv the control node's cache does not hold plans two operations: build,
then receive. pyinfra plans hosts concurrently, so the builder is chosen once every host is planned:
the first by name of those that need the same artifact (hx_gateway/venv_artifacts.py, `RunSources`).
It builds (tasks/gateway/install.py) and, when the run has other gateways (a fleet), packs, and the
deploy fetches the artifact into the cache; the others skip the build. The receive operation runs
after every build (pyinfra runs operations in the order of the code that plans them): the host checks
the digest, unpacks into `venvs/<id>`, checks the venv as a build is checked and switches `current`
the same atomic way. With the artifact already cached, only the receive is planned. An artifact that
is missing or damaged (the build failed, the cache or the transfer corrupted it) is refused and that
host builds from the wheelhouse instead.

Open WebUI (one host, tasks/webui/): its venv (2.9 GB, built in ~38 s) is packed after every build and
kept in the cache, so a rebuilt or re-created host of the same platform receives it (`build_and_keep`,
`unpack_or_build`).
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host, logger, state

from hx_gateway import venv_artifacts
from hx_gateway.pyinfra_ext.announce import VENV_SOURCES_ATTRIBUTE
from hx_gateway.pyinfra_ext.remote import get_as_root, put_as_root, run_as_root
from hx_gateway.pyinfra_ext.render import CACHE_ON_TARGET
from hx_gateway.venv_artifacts import Artifact, RunSources
from tasks.locked_venv import build_from_wheelhouse, fail

# zstd -1 on every core: 713 MB of venv become ~220 MB in ~1.7 s (gzip -1: 245 MB in 10 s of CPU).
# GNU format: names sorted, owners numeric, no per-run headers; the same tree packs to the same bytes.
PACK_OPTIONS = "--sort=name --format=gnu --owner=0 --group=0 --numeric-owner --use-compress-program='zstd -q -1 -T0'"
REFUSED = "hx-artifact-refused"  # what the unpack step says when the digest does not match


def run_sources() -> RunSources:
    """This run's record of who needs which venv (the preview prints it: announce.py)."""
    if not hasattr(state, VENV_SOURCES_ATTRIBUTE):
        setattr(state, VENV_SOURCES_ATTRIBUTE, RunSources())
    return getattr(state, VENV_SOURCES_ATTRIBUTE)


def pack_script(venv_root: str, venv_id: str, artifact: Artifact) -> str:
    """Appended to the install script of the host that builds: the venv as one artifact."""
    packed = f"{CACHE_ON_TARGET}/{artifact.name}"
    # Not packed: the venv still serves here; only the other hosts build their own.
    return (f"(tar {PACK_OPTIONS} -C {venv_root}/venvs -cf {packed}.partial {venv_id[:16]} "
            f"&& mv {packed}.partial {packed}) || echo 'the venv was not packed' >&2\n")


def unpack_script(venv_root: str, venv_id: str, artifact: Artifact, digest: str, activate: str) -> str:
    """Digest first; unpack beside the venvs, move into place, then `activate` (locked_venv.activation:
    the venv check a build passes, the atomic switch of `current`)."""
    venvs = f"{venv_root}/venvs"
    packed = f"{CACHE_ON_TARGET}/{artifact.name}"
    return f"""set -eu
venv={venvs}/{venv_id[:16]}
if [ "$(sha256sum {packed} | cut -d' ' -f1)" != "{digest}" ]; then
  rm -f {packed}; echo "{REFUSED}: {artifact.name} does not match its sha256 {digest[:16]}" >&2; exit 3
fi
rm -rf {venvs}/incoming.*  # left by an interrupted run
work=$(mktemp -d {venvs}/incoming.XXXXXX)
trap 'rm -rf "$work" {packed}' EXIT
zstd -dcq {packed} | tar -x -C "$work"
if [ "$(cat "$work/{venv_id[:16]}/.hx-venv-id" 2>/dev/null)" != "{venv_id}" ]; then
  echo "{REFUSED}: {artifact.name} does not hold venv {venv_id[:16]}" >&2; exit 3
fi
rm -rf "$venv" && mv "$work/{venv_id[:16]}" "$venv"
{activate}"""


def build(artifact: Artifact, wheelhouse: Path, install: str, pack: str) -> None:
    """Runs on every host that needs the venv; only the builder (`RunSources.builder`) builds, and
    packs and fetches it when the run has other gateways (`RunSources.ships`); the others receive in
    the next operation."""
    sources = run_sources()
    if sources.builder(artifact) != host.name:
        return
    ships = sources.ships()
    build_from_wheelhouse(wheelhouse, install + pack if ships else install)
    if ships:
        fetch(artifact)
    else:
        host.log("venv built here from the wheelhouse (the run's only gateway: not packed)")


def fetch(artifact: Artifact) -> None:
    """On the host that built: bring its artifact into the control node's cache. A failure here
    costs the other hosts a build of their own, not this host its new venv: a warning, not an error."""
    remote = f"{CACHE_ON_TARGET}/{artifact.name}"
    try:
        ok, output = run_as_root(f"sha256sum {remote}")
        if not ok:
            raise OSError(output.stderr.strip() or f"{remote} was not packed")
        fetched = venv_artifacts.partial_path(artifact, host.name)
        get_as_root(remote, str(fetched))
        venv_artifacts.store(artifact, fetched, output.stdout.split()[0])
        host.log(f"venv built here and fetched to the control node: {artifact.name} "
                 f"({artifact.path.stat().st_size / 1e6:.0f} MB)")
    except (OSError, venv_artifacts.ArtifactError) as failure:
        host.log(f"venv artifact not cached ({failure}): the hosts that need it build their own", logger.warning)
    finally:
        run_as_root(f"rm -f {remote}")


def receive(venv_root: str, venv_id: str, artifact: Artifact, activate: str, wheelhouse: Path,
            install_script: str) -> None:
    """Unpack the artifact (built earlier in this run or cached); if it is missing or refused by its
    digest, build here from the wheelhouse as a host without artifacts would. The builder skips it."""
    if run_sources().builder(artifact) == host.name:
        return
    builder = run_sources().builder(artifact)
    unpack_or_build(venv_root, venv_id, artifact, activate, wheelhouse, install_script,
                    f"built on {builder}" if builder else "from the control node cache")


def unpack_or_build(venv_root: str, venv_id: str, artifact: Artifact, activate: str, wheelhouse: Path,
                    install_script: str, origin: str = "from the control node cache") -> None:
    """Unpack the artifact the cache holds; if it is missing or refused by its digest, build here from
    the wheelhouse. A venv the check refuses fails the host (a build would give the same venv)."""
    # The digest its builder reported: a file damaged since is refused on the host, like one damaged in transit.
    digest = artifact.recorded_digest() if artifact.path.is_file() else ""
    if digest:
        put_as_root(str(artifact.path), f"{CACHE_ON_TARGET}/{artifact.name}")
        ok, output = run_as_root(unpack_script(venv_root, venv_id, artifact, digest, activate))
        if ok:
            host.log(f"venv received ({artifact.name}, sha256 checked), {origin}")
            return
        if REFUSED not in output.stderr:
            fail(f"the venv from {artifact.name} was refused:\n{output.stderr.strip()[-2000:]}")
        host.log(f"{output.stderr.strip().splitlines()[-1]}: building the venv here instead", logger.warning)
    else:
        host.log(f"no intact artifact {artifact.name} (its build failed or the cache lost it): "
                 "building the venv here instead", logger.warning)
    build_from_wheelhouse(wheelhouse, install_script)
    host.log("venv built here from the wheelhouse")


def build_and_keep(artifact: Artifact, wheelhouse: Path, install: str, pack: str, what: str) -> None:
    """A lone host's build (Open WebUI): build from the wheelhouse, pack, and keep the artifact in the
    control node's cache for the next host of this platform that needs it."""
    build_from_wheelhouse(wheelhouse, install + pack, what)
    fetch(artifact)
