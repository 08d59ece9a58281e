"""Runs on a gateway (or Open WebUI) host as root (python3 -I -S, the standard library only): take off
what the deploy put on, and nothing else. Sent as this file's text by hx_gateway/destroy.py.

    python3 -I -S destroy.py SPEC_JSON plan      the removals, as a JSON list (changes nothing)
    python3 -I -S destroy.py SPEC_JSON apply     carry them out; prints the list it carried out
    python3 -I -S destroy.py SPEC_JSON proof     what is left of the deploy, as checks

The plan is computed from the host as it is, the same way for `plan` and `apply`, so a dry run lists
exactly what a real run removes; every action is idempotent, so a run killed half-way and run again
finishes the job. What it removes, by origin:
- the unit the deploy wrote (stopped and disabled first, after its companions: the metrics process
  a `monitor` host adds) and any canary unit it left running;
- the managed files (config, env file, auth and speed-ups modules, key digests, unit), their
  `.hx-new` temporaries and the modules' compiled copies in `__pycache__`; the config directory
  when nothing else is in it;
- the venvs (`venvs/`, `current`, interrupted `unpack.*`) and the venv root when nothing else is in
  it (a venv an operator made there by hand stays); the uploaded wheelhouse cache; the private upload directories;
- the generations, unless `keep_data`: then they stay, but every copy of a secret file in them is
  wiped (no key material stays on the host); likewise the service's data directories (`data_dirs`:
  Open WebUI's database and uploads), kept only with `keep_data`;
- the service account, only if it is exactly the account the deploy creates (system, no login,
  home /nonexistent): an account made by hand stays.
OS packages the deploy may have installed (python3-venv, iproute2) stay: other software uses them.
"""

from __future__ import annotations

import glob
import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
from typing import Any

LOCAL_CAS = "/usr/local/share/ca-certificates/"  # where the deploy puts the operator's CA
NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


def systemctl(*args: str) -> str:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=False).stdout.strip()


def unit_present(unit: str) -> bool:
    state = systemctl("show", "-p", "LoadState", "-p", "ActiveState", "-p", "UnitFileState", unit)
    return "LoadState=loaded" in state.split() and ("ActiveState=inactive" not in state.split()
                                                    or "UnitFileState=enabled" in state.split())


def canary_units() -> list[str]:
    listed = systemctl("list-units", "--all", "--plain", "--no-legend", "hx-litellm-canary-*")
    return sorted(line.split()[0] for line in listed.splitlines() if line.strip())


def deploy_account(spec: dict) -> bool:
    """The service account exists and is exactly what the deploy creates."""
    try:
        entry = pwd.getpwnam(spec["account"]["user"])
    except KeyError:
        return False
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = ""
    return (entry.pw_uid < 1000 and entry.pw_shell in NOLOGIN_SHELLS and entry.pw_dir == "/nonexistent"
            and group == spec["account"]["group"])


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def secret_copies(spec: dict) -> list[str]:
    """Files in the generations that are copies of a secret file (found through each meta.json)."""
    found = []
    for meta_path in sorted(glob.glob(os.path.join(spec["store"], "*", "meta.json"))):
        try:
            with open(meta_path) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            continue
        for path, item in meta.get("files", {}).items():
            if path in spec["secret_files"] and item and item.get("stored"):
                copy = os.path.join(os.path.dirname(meta_path), item["stored"])
                if os.path.exists(copy):
                    found.append(copy)
    return found


def bytecode_of_modules(files: list[str]) -> list[dict[str, str]]:
    """Compiled copies of the managed Python modules (hx_auth.py...) that any python3 importing them
    as root left in a `__pycache__` beside them, and that directory once nothing else is in it."""
    actions = []
    for folder in sorted({os.path.dirname(f) for f in files if f.endswith(".py")}):
        cache = os.path.join(folder, "__pycache__")
        stems = {os.path.basename(f)[:-3] for f in files if f.endswith(".py") and os.path.dirname(f) == folder}
        compiled = sorted(p for stem in stems for p in glob.glob(os.path.join(cache, f"{stem}.*.pyc")))
        actions += [{"action": "remove file", "target": p} for p in compiled]
        if compiled and set(os.listdir(cache)) == {os.path.basename(p) for p in compiled}:
            actions.append({"action": "remove directory", "target": cache})
    return actions


def plan(spec: dict) -> list[dict[str, str]]:
    actions: list[dict[str, str]] = []
    actions += [{"action": "stop and disable", "target": u} for u in spec.get("companions", []) if unit_present(u)]
    if unit_present(spec["unit"]):
        actions.append({"action": "stop and disable", "target": spec["unit"]})
    actions += [{"action": "stop", "target": unit} for unit in canary_units()]
    for path in spec["files"]:
        for candidate in (path, path + ".hx-new"):
            if os.path.lexists(candidate):
                actions.append({"action": "remove file", "target": candidate})
    actions += bytecode_of_modules(spec["files"])
    if any(a["target"].startswith(LOCAL_CAS) for a in actions):  # the operator's CA leaves the trust store too
        actions.append({"action": "refresh trust store", "target": "update-ca-certificates"})
    if any(a["target"] == spec["unit_path"] for a in actions):
        actions.append({"action": "daemon-reload", "target": "systemd"})
    root = spec["venv_root"]
    for name in ("venvs", "current", "current.new"):
        if os.path.lexists(os.path.join(root, name)):
            actions.append({"action": "remove tree" if name == "venvs" else "remove file",
                            "target": os.path.join(root, name)})
    actions += [{"action": "remove tree", "target": p} for p in sorted(glob.glob(os.path.join(root, "unpack.*")))]
    for folder in (spec["cache_dir"], *sorted(glob.glob("/tmp/hx-upload-*"))):
        if os.path.lexists(folder):
            actions.append({"action": "remove tree", "target": folder})
    if spec["keep_data"]:
        actions += [{"action": "wipe secret copy", "target": copy} for copy in secret_copies(spec)]
    else:
        gone = (spec["store"], *spec.get("data_dirs", []))
        actions += [{"action": "remove tree", "target": folder} for folder in gone if os.path.lexists(folder)]
    for folder in (spec["config_dir"], root, spec["state_dir"]):
        removed = {a["target"] for a in actions if a["action"].startswith("remove")}
        if os.path.isdir(folder) and all(os.path.join(folder, e) in removed for e in os.listdir(folder)):
            actions.append({"action": "remove directory", "target": folder})  # empty once the above is gone
    if deploy_account(spec):
        actions.append({"action": "remove account", "target": spec["account"]["user"]})
        if group_exists(spec["account"]["group"]):
            actions.append({"action": "remove group", "target": spec["account"]["group"]})
    return actions


def carry_out(action: dict[str, str]) -> None:
    kind, target = action["action"], action["target"]
    if kind == "stop and disable":
        subprocess.run(["systemctl", "disable", "--now", target], capture_output=True, check=False)
    elif kind == "stop":
        subprocess.run(["systemctl", "stop", target], capture_output=True, check=False)
    elif kind == "refresh trust store":
        subprocess.run(["update-ca-certificates"], capture_output=True, check=False)
    elif kind == "daemon-reload":
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, check=False)
    elif kind in ("remove file", "wipe secret copy"):
        if os.path.lexists(target):
            os.unlink(target)
    elif kind == "remove tree":
        if os.path.islink(target) or os.path.isfile(target):
            os.unlink(target)
        else:
            shutil.rmtree(target, ignore_errors=True)
    elif kind == "remove directory":
        try:
            os.rmdir(target)
        except OSError:
            pass  # something appeared in it since the plan: it stays
    elif kind == "remove account":
        subprocess.run(["userdel", target], capture_output=True, check=False)
    elif kind == "remove group":
        subprocess.run(["groupdel", target], capture_output=True, check=False)


def apply(spec: dict) -> list[dict[str, str]]:
    actions = plan(spec)
    for action in actions:
        carry_out(action)
    return actions


def listening(port: int) -> bool:
    return bool(subprocess.run(["ss", "-Htln", f"( sport = :{port} )"], capture_output=True, text=True,
                               check=False).stdout.strip()) if shutil.which("ss") else False


def proof(spec: dict) -> list[dict[str, Any]]:
    """What is left, as checks: each `ok` when nothing of the deploy is there any more."""
    left = plan(spec)
    return [
        {"check": "nothing_listening_on_the_gateway_port", "ok": not listening(spec["port"]),
         "seen": f":{spec['port']} " + ("still held" if listening(spec["port"]) else "free")},
        {"check": "unit_gone", "ok": not os.path.lexists(spec["unit_path"]) and not unit_present(spec["unit"]),
         "seen": systemctl("show", "-p", "LoadState", spec["unit"])},
        {"check": "nothing_left_to_remove", "ok": not left,
         "seen": "; ".join(f"{a['action']} {a['target']}" for a in left) or "nothing"},
        {"check": "no_key_material_left", "ok": not any(os.path.exists(p) for p in spec["secret_files"])
         and not secret_copies(spec), "seen": f"{len(secret_copies(spec))} secret copies in the generations"},
        {"check": "service_account_gone", "ok": not deploy_account(spec),
         "seen": "the deploy's account is still there" if deploy_account(spec) else "gone (or not the deploy's)"},
    ]


def main(argv: list[str]) -> None:
    spec, command = json.loads(argv[0]), argv[1]
    result = {"plan": plan, "apply": apply, "proof": proof}[command](spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
