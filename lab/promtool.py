"""promtool on the control node, for the rule and config tests (tests/test_monitor.py): the one on
PATH, else the one in the OS's `prometheus` package, unpacked once into the cache without installing
the package (which would start a Prometheus on the control node). apt reads the machine's own
sources, so no mirror is named here."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE = Path("~/.cache/hx-gateway/promtool").expanduser()


def promtool() -> Path:
    found = shutil.which("promtool")
    if found:
        return Path(found)
    unpacked = CACHE / "usr" / "bin" / "promtool"
    if not unpacked.exists():
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(["apt-get", "download", "-q", "prometheus"], cwd=scratch, check=True, capture_output=True)
            package = next(Path(scratch).glob("prometheus_*.deb"))
            staging = Path(scratch) / "root"
            subprocess.run(["dpkg-deb", "-x", str(package), str(staging)], check=True)
            CACHE.mkdir(parents=True, exist_ok=True)
            shutil.copy2(staging / "usr" / "bin" / "promtool", CACHE / "promtool.tmp")
            (CACHE / "usr" / "bin").mkdir(parents=True, exist_ok=True)
            (CACHE / "promtool.tmp").rename(unpacked)
    return unpacked
