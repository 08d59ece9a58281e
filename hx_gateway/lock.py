"""The locks (hash-pinned, one per product and target Python) and the wheelhouse built from each.

    python -m hx_gateway.lock update            re-resolve every committed lock (locks/*.in)
    python -m hx_gateway.lock add 3.13.5 x86_64 2.41 [--product open-webui]
                                                resolve a lock for another target interpreter
    python -m hx_gateway.lock wheelhouse LOCK   download the wheels and build the upload archive

Two products have locks: LiteLLM (the gateways, `litellm.in`) and Open WebUI (the `webui` group,
`open-webui.in`).

The lock is resolved with `uv pip compile --python-version` for the target's exact interpreter
(markers such as python_full_version < "3.11.3" change the set); wheels are fetched on the
control node and installed on the target with `--no-index --require-hashes`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hx_gateway.host import venv_check as host_venv_check
from hx_gateway.model.refusal import Refusal

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_DIR = REPO_ROOT / "locks"
# uv installs the venv on the target (seconds; pip needs ~30 s for the same wheels). It travels in the
# wheelhouse, hash-locked like everything else, and never ends up in the service's venv.
INSTALLER_INPUT = LOCK_DIR / "installer.in"
INSTALLER_LOCK = LOCK_DIR / "installer.txt"
# Part of every venv's identity: bump it when the way a venv is built changes, so hosts rebuild.
VENV_BUILD = "uv, bytecode compiled"
CACHE_DIR = Path(os.environ.get("HX_CACHE_DIR", "~/.cache/hx-gateway")).expanduser()

# Which LiteLLM releases may run (a floor with its advisories, a deny-list) and which start-up hooks
# a venv may hold: data, not code (see the file). `python -m hx_gateway.lock check` applies it.
POLICY_FILE = LOCK_DIR / "policy.json"

UV_NEWEST_MANYLINUX_MINOR = 40
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


class LockError(Refusal):
    pass


@dataclass(frozen=True)
class Product:
    """What a lock installs: `locks/<name>.in` resolves to `locks/<name>-<target>.txt`."""

    name: str
    distribution: str  # the pinned distribution the lock must carry
    # Its releases are checked against policy.json's part of this name (LiteLLM's advisories).
    version_policy: bool = False

    @property
    def input(self) -> Path:
        return LOCK_DIR / f"{self.name}.in"

    def lock_path(self, target: TargetPython) -> Path:
        return LOCK_DIR / f"{self.name}-{target.key}.txt"


LITELLM = Product("litellm", "litellm", version_policy=True)
OPEN_WEBUI = Product("open-webui", "open-webui")
PRODUCTS = (LITELLM, OPEN_WEBUI)


@dataclass(frozen=True)
class TargetPython:
    """What decides which wheels a target can install."""

    version: str  # full, e.g. 3.11.2
    arch: str  # uname -m, e.g. x86_64
    glibc: str  # e.g. 2.36

    @property
    def key(self) -> str:
        return f"py{self.version}-{self.arch}-glibc{self.glibc}"

    @property
    def minor(self) -> str:
        return "".join(self.version.split(".")[:2])

    @property
    def lock_path(self) -> Path:
        """The LiteLLM lock (Product.lock_path for the others)."""
        return LITELLM.lock_path(self)

    @property
    def uv_manylinux(self) -> str:
        """uv names manylinux tags up to 2_40 (0.13): a newer glibc resolves as 2_40 (no wheel needs more)."""
        major, minor = (int(x) for x in self.glibc.split(".")[:2])
        return f"{major}_{min(minor, UV_NEWEST_MANYLINUX_MINOR)}"

    def pip_platforms(self) -> list[str]:
        """pip does not expand manylinux tags for a foreign --platform: list every compatible one."""
        major, minor = (int(x) for x in self.glibc.split(".")[:2])
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
        tags += [f"{name}_{self.arch}" for name, needs in legacy.items() if minor >= needs]
        return tags


def pins(lock_text: str) -> dict[str, str]:
    return {name.lower().replace("_", "-"): version for name, version in PIN_RE.findall(lock_text)}


def policy() -> dict:
    return json.loads(POLICY_FILE.read_text())


@functools.lru_cache(maxsize=8)  # every gateway of a run checks the same ~3,000-line lock
def check_lock(lock_text: str, product: Product = LITELLM) -> str:
    """Refuse a lock without hashes or with a release the policy refuses; return the product's version."""
    pinned = pins(lock_text)
    version = pinned.get(product.distribution)
    if version is None:
        raise LockError(f"the lock pins no {product.distribution} version")
    refused = host_venv_check.version_problems(version, policy()[product.name]) if product.version_policy else []
    if refused:
        raise LockError(f"the lock pins {refused[0]}; pin an allowed version in {product.input.name} and run "
                        f"`python -m hx_gateway.lock update` ({POLICY_FILE.relative_to(REPO_ROOT)} says which)")
    if "--hash=sha256:" not in lock_text:
        raise LockError("the lock has no hashes; regenerate it with `python -m hx_gateway.lock update`")
    return version


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _configured_index() -> list[str]:
    """The package index and the local wheel folders (find-links) this machine's pip is configured
    with: where a CPU-only torch build is offered, it is found the way pip finds it."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        match = re.search(r"^(?:global|:env:)\.index-url='([^']+)'", out, re.MULTILINE)
        url = match.group(1) if match else None
    links = os.environ.get("PIP_FIND_LINKS", "")
    if not links:
        match = re.search(r"^(?:global|:env:)\.find-links='([^']+)'", out, re.MULTILINE)
        links = match.group(1) if match else ""
    return ["--index-url", url] * bool(url) + [arg for link in links.split() for arg in ("--find-links", link)]


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise LockError("uv is not installed on the control node; run the README's setup (./hx setup)")
    return found


def offered_for(distribution: str, version: str, target: TargetPython) -> bool | None:
    """Whether this machine's index offers `distribution==version` to the target's Python: False when
    the index has that release but its Requires-Python excludes that Python (uv's resolution ignores
    such upper bounds, pip's index query does not), None when the index cannot tell."""
    def listed(*python: str) -> list[str] | None:
        result = subprocess.run([sys.executable, "-m", "pip", "index", "versions", distribution, *python,
                                 "--only-binary=:all:"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if "No matching distribution found" in result.stderr:
            return []
        found = re.search(r"^Available versions: (.+)$", result.stdout, re.MULTILINE)
        return found.group(1).split(", ") if found else None

    for_target = listed("--python-version", target.version)
    if for_target is None or version in for_target:
        return None if for_target is None else True
    return False if version in (listed() or []) else None


def compile_lock(target: TargetPython, product: Product = LITELLM) -> Path:
    """Resolve locks/<product>.in for the target's exact interpreter, with hashes."""
    LOCK_DIR.mkdir(exist_ok=True)
    version = pins(product.input.read_text()).get(product.distribution, "")
    if version and offered_for(product.distribution, version, target) is False:
        raise LockError(f"{product.distribution} {version} does not support Python {target.version}: its "
                        f"Requires-Python excludes it (this machine's index offers no release of it for that Python)")
    platform = f"{target.arch}-manylinux_{target.uv_manylinux}"
    path = product.lock_path(target)
    result = subprocess.run(
        [_uv(), "pip", "compile", str(product.input), "--quiet", "--generate-hashes", "--no-header",
         "--python-version", target.version, "--python-platform", platform,
         *_configured_index(), "-o", str(path)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        path.unlink(missing_ok=True)
        raise LockError(f"{product.input.name} cannot be resolved for {target.key} from this machine's package "
                        f"index:\n{result.stderr.strip()[-2000:]}")
    header = f"# {product.name} lock for {target.key}: `python -m hx_gateway.lock update` rewrites it.\n"
    path.write_text(header + path.read_text())
    check_lock(path.read_text(), product)
    return path


def lock_for(target: TargetPython, product: Product = LITELLM) -> Path:
    """The committed lock for this target, resolved now (and cached in locks/) if there is none."""
    path = product.lock_path(target)
    if not path.exists():
        compile_lock(target, product)
    check_lock(path.read_text(), product)
    return path


def compile_installer_lock() -> Path:
    subprocess.run(
        [_uv(), "pip", "compile", str(INSTALLER_INPUT), "--quiet", "--generate-hashes", "--no-header", "--universal",
         *_configured_index(), "-o", str(INSTALLER_LOCK)],
        check=True,
    )
    return INSTALLER_LOCK


def wheelhouse_name(lock_text: str) -> str:
    """Named after both locks: a new LiteLLM lock or a new installer each give a new archive."""
    return f"wheelhouse-{digest((lock_text + INSTALLER_LOCK.read_text()).encode())[:16]}.tar"


def build_wheelhouse(target: TargetPython, lock_path: Path, product: Product = LITELLM) -> Path:
    """Download the locked wheels (and the installer) once; pack them into one deterministic archive:
    the wheels at the top, `requirements.lock`, and `installer/uv-*.whl`."""
    lock_text = lock_path.read_text()
    check_lock(lock_text, product)
    archive = CACHE_DIR / wheelhouse_name(lock_text)
    if archive.exists():
        return archive
    wheel_dir = CACHE_DIR / f"wheels-{target.key}"
    wheels = _download(target, lock_path, wheel_dir)
    check_startup_hooks(wheels)
    (installer,) = _download(target, INSTALLER_LOCK, CACHE_DIR / f"installer-{target.arch}")
    tmp = archive.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        for wheel in wheels:
            _add_deterministic(tar, wheel.name, wheel.read_bytes())
        _add_deterministic(tar, "requirements.lock", lock_text.encode())
        _add_deterministic(tar, f"installer/{installer.name}", installer.read_bytes())
    tmp.rename(archive)
    return archive


def _download(target: TargetPython, lock_path: Path, wheel_dir: Path) -> list[Path]:
    """Fetch the wheels a lock pins for the target's platform, hash-checked by pip."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in target.pip_platforms() for arg in ("--platform", tag)]
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
         "--only-binary=:all:", *platforms, "--python-version", target.version.rsplit(".", 1)[0],
         "--implementation", "cp", "--abi", f"cp{target.minor}", "-r", str(lock_path), "-d", str(wheel_dir)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise LockError(f"pip download failed for {lock_path.name}:\n{result.stderr[-3000:]}")
    wanted = pins(lock_path.read_text())
    wheels = sorted(p for p in wheel_dir.glob("*.whl") if _wheel_pin(p.name) in wanted.items())
    if len(wheels) != len(wanted):
        raise LockError(f"{wheel_dir} has {len(wheels)} wheels for {len(wanted)} pins; delete it and retry")
    return wheels


def wheel_startup_hooks(wheel: Path) -> list[str]:
    """Files a wheel installs at the top of site-packages that Python runs at every start-up."""
    with zipfile.ZipFile(wheel) as archive:
        top = {name for name in archive.namelist() if "/" not in name.rstrip("/")}
        packages = {name.split("/", 1)[0] for name in archive.namelist() if "/" in name}
    return sorted(name for name in top | packages
                  if name.endswith(".pth") or name.removesuffix(".py") in host_venv_check.HOOK_MODULES)


def check_startup_hooks(wheels: list[Path]) -> None:
    """Refuse wheels that ship a start-up hook the policy's allow-list does not name."""
    allowed = set(policy()["startup_hooks"]["allowed"])
    unexplained = [f"{wheel.name}: {hook}" for wheel in wheels for hook in wheel_startup_hooks(wheel)
                   if hook not in allowed]
    if unexplained:
        raise LockError("these wheels ship start-up hooks (run at every interpreter start) that "
                        f"{POLICY_FILE.relative_to(REPO_ROOT)} does not allow: {'; '.join(unexplained)}. Find out "
                        "why before adding one to startup_hooks.allowed")


def _wheel_pin(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return name.lower().replace("_", "-"), version


def _add_deterministic(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
    tar.addfile(info, io.BytesIO(data))


LOCK_NAME_RE = re.compile(r"^([a-z-]+)-py([\d.]+)-(\w+)-glibc([\d.]+)\.txt$")


def parse_lock_name(name: str) -> tuple[Product, TargetPython] | None:
    match = LOCK_NAME_RE.match(name)
    products = {p.name: p for p in PRODUCTS}
    if not match or match.group(1) not in products:
        return None
    return products[match.group(1)], TargetPython(*match.groups()[1:])


def committed_targets(product: Product = LITELLM) -> list[TargetPython]:
    parsed = [parse_lock_name(path.name) for path in sorted(LOCK_DIR.glob(f"{product.name}-py*.txt"))]
    return [target for found in parsed if found and found[0] == product for target in [found[1]]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LiteLLM lock and wheelhouse")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("update", help="re-resolve every committed lock")
    sub.add_parser("check", help="check every committed lock and its wheels against locks/policy.json")
    add = sub.add_parser("add", help="resolve a lock for another target interpreter")
    add.add_argument("version")
    add.add_argument("arch")
    add.add_argument("glibc")
    add.add_argument("--product", choices=[p.name for p in PRODUCTS], default=LITELLM.name)
    wheelhouse = sub.add_parser("wheelhouse", help="download wheels and build the archive for a lock")
    wheelhouse.add_argument("lock", type=Path)
    args = parser.parse_args(argv)
    if args.command in ("update", "check"):
        if args.command == "update":
            print(compile_installer_lock())
        for product in PRODUCTS:
            for target in committed_targets(product):
                path = compile_lock(target, product) if args.command == "update" else product.lock_path(target)
                version = check_lock(path.read_text(), product)
                check_startup_hooks(_download(target, path, CACHE_DIR / f"wheels-{target.key}"))
                print(f"{path.relative_to(REPO_ROOT)}: {product.distribution} {version} is allowed; "
                      f"no unexplained start-up hook")
    elif args.command == "add":
        products = {p.name: p for p in PRODUCTS}
        print(compile_lock(TargetPython(args.version, args.arch, args.glibc), products[args.product]))
    else:
        found = parse_lock_name(args.lock.name)
        if not found:
            parser.error("name a lock file from locks/")
        print(build_wheelhouse(found[1], args.lock, found[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
