"""Runs on the gateway host (python3 -I -S: the standard library only) against a venv: before the
deploy points `current` at a new venv, and in verify against the one serving.

    python3 -I -S host_venv_check.py POLICY_JSON VENV [--enforce]

prints one JSON document; with --enforce it exits 1 on any problem (the install script), without it
it always returns normally (verify reads it as a fact, with other programs in one python3).

Two questions, both about what the venv would run:
- start-up hooks: every `.pth` file in site-packages, and any `sitecustomize`/`usercustomize`
  module, runs at every interpreter start before any import (the 1.82.8 backdoor lived in
  `litellm_init.pth`). Only the ones the lock's distributions are known to ship are allowed.
- the LiteLLM version installed, against the version policy (a floor and a deny-list).

The control node imports this module too (hx_gateway.lock), so the version rule is written once.
"""

from __future__ import annotations

import json
import os
import re
import sys

HOOK_MODULES = ("sitecustomize", "usercustomize")


def site_packages(venv: str) -> list[str]:
    lib = os.path.join(venv, "lib")
    found = []
    for name in sorted(os.listdir(lib) if os.path.isdir(lib) else []):
        site = os.path.join(lib, name, "site-packages")
        if name.startswith("python3") and os.path.isdir(site):
            found.append(site)
    return found


def startup_hooks(venv: str) -> list[str]:
    """Paths (relative to the venv) of every file Python would run at start-up from this venv."""
    hooks = []
    for site in site_packages(venv):
        for entry in sorted(os.listdir(site)):
            module = entry[:-3] if entry.endswith(".py") else entry
            if entry.endswith(".pth") or module in HOOK_MODULES:
                hooks.append(os.path.relpath(os.path.join(site, entry), venv))
    return hooks


def installed_version(venv: str, distribution: str) -> str:
    prefix = distribution.lower() + "-"
    for site in site_packages(venv):
        for entry in sorted(os.listdir(site)):
            if entry.lower().startswith(prefix) and entry.endswith(".dist-info"):
                return entry[len(prefix):-len(".dist-info")]
    return ""


def release(version: str) -> tuple[int, ...]:
    """A version as a comparable tuple ("1.86.2" -> (1, 86, 2, 0), "1.86.2rc1" -> (1, 86, 2, -1))."""
    match = re.match(r"^v?(\d+(?:\.\d+)*)[._-]?(a|alpha|b|beta|c|rc|pre|preview|dev)?", version.strip().lower())
    if not match:
        raise ValueError(f"not a version: {version!r}")
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return (*numbers, -1 if match.group(2) else 0)  # a pre-release sorts before its release


def version_problems(version: str, policy: dict) -> list[str]:
    """Why `version` of LiteLLM may not run under `policy` (its "litellm" part), naming the advisories."""
    for denied in policy.get("denied", []):
        if release(version) == release(denied["version"]):  # also its .postN rebuilds
            return [f"litellm {version} is denied: {denied['advisory']} ({denied['summary']})"]
    minimum = policy.get("minimum")
    if minimum and release(version) < release(minimum):
        fixed = [a for a in policy.get("minimum_because", []) if release(version) < release(a["fixed"])]
        named = "; ".join(f"{a['advisory']}: {a['summary']} (fixed in {a['fixed']})" for a in fixed)
        return [f"litellm {version} is below the minimum {minimum}" + (f": {named}" if named else "")]
    return []


def problems(venv: str, policy: dict) -> tuple[list[str], list[str], str]:
    """(problems, start-up hooks found, the LiteLLM version installed)."""
    allowed = set(policy.get("startup_hooks", {}).get("allowed", []))
    hooks = startup_hooks(venv)
    found = [f"{os.path.join(venv, hook)}: a start-up hook the lock does not explain (runs at every "
             f"interpreter start); remove it and find out how it got there" for hook in hooks
             if os.path.basename(hook) not in allowed]
    if policy.get("venv_of", "litellm") != "litellm":  # another product's venv (Open WebUI's): hooks only
        return found, hooks, ""
    version = installed_version(venv, "litellm")
    if not version:
        found.append(f"{venv}: no litellm distribution installed")
    else:
        found += version_problems(version, policy.get("litellm", {}))
    return found, hooks, version


def main(argv: list[str]) -> int:
    policy, venv = json.loads(argv[0]), argv[1]
    found, hooks, version = problems(venv, policy)
    print(json.dumps({"venv": venv, "problems": found, "startup_hooks": hooks, "litellm": version}))
    return 1 if found and "--enforce" in argv[2:] else 0


if __name__ == "__main__":
    if main(sys.argv[1:]):  # no sys.exit(0): a fact batch runs this with exec() among other programs
        sys.exit(1)
