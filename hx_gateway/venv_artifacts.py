"""The control node's cache of built venvs: one artifact per venv id, target platform and venv path.

A gateway that builds a venv packs it (tar, zstd) and the deploy fetches it here; every other gateway
of the same platform that needs the same venv receives it instead of installing ~120 wheels and
compiling their bytecode again. Open WebUI's one host packs its venv the same way, for the next host
of its platform (a rebuilt one) to receive. An artifact is stored only with its sha256 and used only while it
still matches it: a corrupted one is removed and built again. The cache holds venvs (code from the
lock, no secret: config and keys live under /etc/litellm) and keeps the newest `KEEP` artifacts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hx_gateway import lock

ARTIFACT_DIR = lock.CACHE_DIR / "venvs"
# LiteLLM's ~220 MB each, Open WebUI's ~920 MB: room for a fleet's platforms and the previous release's
# (~2.5 GB at most with Open WebUI's two).
KEEP = 6


class ArtifactError(Exception):
    """An artifact that does not match its digest (fetched or cached)."""


@dataclass(frozen=True)
class Artifact:
    venv_id: str
    target_key: str  # lock.TargetPython.key: Python version, architecture, glibc
    venv_dir: str  # where the venv lives on the host: console scripts and pyvenv.cfg name it

    @property
    def name(self) -> str:
        where = lock.digest(self.venv_dir.encode())[:8]
        return f"venv-{self.venv_id[:16]}-{self.target_key}-{where}.tar.zst"

    @property
    def path(self) -> Path:
        return ARTIFACT_DIR / self.name

    @property
    def digest_path(self) -> Path:
        return ARTIFACT_DIR / f"{self.name}.sha256"

    def recorded_digest(self) -> str:
        try:
            return self.digest_path.read_text().strip()
        except FileNotFoundError:
            return ""


def usable(artifact: Artifact) -> str:
    """The artifact's digest if the cache holds it intact; a damaged or unrecorded one is removed
    (so it is built again) and the answer is ""."""
    recorded = artifact.recorded_digest()
    if recorded and artifact.path.is_file() and lock.file_sha256(artifact.path) == recorded:
        os.utime(artifact.path)  # recently used: the last to be pruned
        return recorded
    forget(artifact)
    return ""


def forget(artifact: Artifact) -> None:
    artifact.path.unlink(missing_ok=True)
    artifact.digest_path.unlink(missing_ok=True)


def store(artifact: Artifact, fetched: Path, expected: str) -> None:
    """Move a fetched file into the cache if it has the digest its builder reported; else refuse it."""
    actual = lock.file_sha256(fetched)
    if actual != expected:
        fetched.unlink(missing_ok=True)
        raise ArtifactError(f"{artifact.name}: fetched sha256 {actual[:16]}, the builder reported {expected[:16]}")
    artifact.digest_path.write_text(expected + "\n")
    fetched.rename(artifact.path)
    prune()


def partial_path(artifact: Artifact, host_name: str) -> Path:
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACT_DIR / f"{artifact.name}.{host_name.replace('/', '_')}.partial"


def prune(keep: int | None = None) -> list[str]:
    """Remove all but the `keep` (KEEP) most recently built or used artifacts; the names removed."""
    artifacts = sorted(ARTIFACT_DIR.glob("venv-*.tar.zst"), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for path in artifacts[KEEP if keep is None else keep:]:
        path.unlink(missing_ok=True)
        Path(f"{path}.sha256").unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def builder_among(hosts: Iterable[str]) -> str:
    """Of the hosts that need an artifact the cache does not hold, the one that builds it: the first
    by name, so the preview, the ticket and the run agree (pyinfra plans hosts concurrently)."""
    return min(hosts)


def shipped(gateways_in_run: int) -> bool:
    """Whether the builder packs its venv and the control node caches it: in a fleet, where other
    gateways receive it now or when they are rebuilt or added. The run's only gateway builds exactly
    as before: packing and fetching added 1.7 s (8 %) to its fresh converge (bench/README.md)."""
    return gateways_in_run > 1


def source_words(host_name: str, builder: str, ships: bool) -> str:
    if not builder:
        return "received from the control node's cache"
    if builder == host_name:
        return ("built here, then shipped to the other gateways of this platform that need it" if ships
                else "built here from the wheelhouse (the run's only gateway: not packed)")
    return f"received, built on {builder}"


@dataclass
class RunSources:
    """Which gateways of one run need which artifact, and which the cache already holds."""

    needs: dict[str, set[str]] = field(default_factory=dict)  # artifact name -> hosts
    cached: dict[str, str] = field(default_factory=dict)  # artifact name -> digest ("": not cached)
    kept: dict[str, str] = field(default_factory=dict)  # host -> the venv it keeps

    def need(self, host_name: str, artifact: Artifact) -> None:
        self.needs.setdefault(artifact.name, set()).add(host_name)
        if artifact.name not in self.cached:
            self.cached[artifact.name] = usable(artifact)

    def builder(self, artifact: Artifact) -> str:
        return self._builder_of(artifact.name)

    def ships(self) -> bool:
        return shipped(len(self.kept.keys() | {h for hosts in self.needs.values() for h in hosts}))

    def _builder_of(self, name: str) -> str:
        """"" when the cache held it while the run was planned; else the host that builds it."""
        return "" if self.cached.get(name) else builder_among(self.needs[name])

    def lines(self) -> list[str]:
        """Per gateway, where its venv comes from (for the preview)."""
        said = {h: f"kept: {what}" for h, what in self.kept.items()}
        for name, hosts in self.needs.items():
            said.update({h: f"{source_words(h, self._builder_of(name), self.ships())} ({name})" for h in hosts})
        return [f"{h}: venv {said[h]}" for h in sorted(said)]
