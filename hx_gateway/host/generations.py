"""Generations of a gateway host's deployed state, kept on the host itself (runs there, as root).

A generation is a copy of every managed file (config, auth and speed-ups modules, key digests, env file,
unit) plus the venv `current` pointed to, under a directory only root can read. The deploy records
one after every successful change and before it overwrites a state it has not seen (drift); a failed
restart, or an operator, restores one.

Standard library only: the deploy sends this file's text to the host's python3:
    python3 -c "<this file>" '<spec json>' status | snapshot REASON | restore NAME|previous | prune
Every command prints one JSON document. Never prints file contents (the env file holds the key).
"""

from __future__ import annotations

import datetime
import grp
import json
import os
import pwd
import shutil
import sys
import tempfile
from hashlib import sha256


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return sha256(fh.read()).hexdigest()
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file where its directory belongs
        return None


def _venv(spec: dict) -> str:
    current = os.path.join(spec["venv_root"], "current")
    return os.path.realpath(current) if os.path.islink(current) else ""


def live_digest(spec: dict) -> str | None:
    """One digest for the deployed state; None when nothing is deployed yet."""
    parts = [(f["path"], _sha256(f["path"])) for f in spec["files"]]
    venv = _venv(spec)
    if not venv and all(sha is None for _, sha in parts):
        return None
    text = json.dumps({"files": sorted(parts, key=lambda p: p[0]), "venv": venv}, sort_keys=True)
    return sha256(text.encode()).hexdigest()


def generations(spec: dict) -> list[dict]:
    """Newest first."""
    store = spec["store"]
    found = []
    for name in sorted(os.listdir(store) if os.path.isdir(store) else [], reverse=True):
        try:
            with open(os.path.join(store, name, "meta.json")) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            continue  # an interrupted snapshot has no meta.json: not a generation
        found.append({"name": name, "digest": meta["digest"], "created": meta["created"],
                      "reason": meta["reason"], "venv": meta["venv"]})
    return found


def snapshot(spec: dict, reason: str) -> dict:
    digest = live_digest(spec)
    gens = generations(spec)
    if digest is None:
        return {"created": None, "why": "nothing deployed yet"}
    if gens and gens[0]["digest"] == digest:
        return {"created": None, "why": f"{gens[0]['name']} already holds this state"}
    now = datetime.datetime.now(datetime.timezone.utc)
    name = f"{now:%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
    os.makedirs(spec["store"], mode=0o700, exist_ok=True)
    os.chmod(spec["store"], 0o700)
    work = tempfile.mkdtemp(prefix=".partial-", dir=spec["store"])
    files = {}
    for index, item in enumerate(spec["files"]):
        if os.path.exists(item["path"]):
            stored = f"f{index}"
            shutil.copy2(item["path"], os.path.join(work, stored))  # with its time: see _atomic_copy
            os.chmod(os.path.join(work, stored), 0o600)
            files[item["path"]] = {"stored": stored, "user": item["user"], "group": item["group"],
                                   "mode": item["mode"]}
        else:
            files[item["path"]] = None
    meta = {"digest": digest, "created": now.isoformat(), "reason": reason, "venv": _venv(spec), "files": files}
    with open(os.path.join(work, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    os.rename(work, os.path.join(spec["store"], name))
    return {"created": name, **prune(spec)}


def _atomic_copy(src: str, item: dict, dest: str) -> None:
    """Write next to the destination with the final owner and mode, then rename over it. The file
    keeps the time it was first written: a service that started after that has read it, and the
    deploy restarts a service only for files newer than its start (facts.py, `stale`)."""
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", dir=os.path.dirname(dest))
    try:
        os.fchmod(fd, int(item["mode"], 8))
        os.fchown(fd, pwd.getpwnam(item["user"]).pw_uid, grp.getgrnam(item["group"]).gr_gid)
        with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target)
        written = os.stat(src)
        os.utime(temp, ns=(written.st_atime_ns, written.st_mtime_ns))
        os.rename(temp, dest)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def restore(spec: dict, which: str) -> dict:
    """Put a generation back: `previous` is the newest one that differs from what is deployed."""
    digest = live_digest(spec)
    gens = generations(spec)
    if which == "previous":
        candidates = [g for g in gens if g["digest"] != digest]
    else:
        candidates = [g for g in gens if g["name"] == which]
    if not candidates:
        return {"restored": None, "why": f"no generation {which!r} to restore (have: {[g['name'] for g in gens]})"}
    name = candidates[0]["name"]
    folder = os.path.join(spec["store"], name)
    with open(os.path.join(folder, "meta.json")) as fh:
        meta = json.load(fh)
    for path, item in meta["files"].items():
        if item is None:
            if os.path.exists(path):
                os.unlink(path)
        elif not os.path.exists(os.path.join(folder, item["stored"])):
            continue  # a key copy wiped by `destroy --keep-data`: the live file stays as it is
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _atomic_copy(os.path.join(folder, item["stored"]), item, path)
    venv = meta["venv"]
    if venv and os.path.exists(os.path.join(venv, ".hx-venv-id")):
        current = os.path.join(spec["venv_root"], "current")
        os.symlink(venv, current + ".new")
        built = os.stat(venv)  # the link is as old as the venv it names (see _atomic_copy)
        os.utime(current + ".new", ns=(built.st_atime_ns, built.st_mtime_ns), follow_symlinks=False)
        os.replace(current + ".new", current)
    return {"restored": name, "created": meta["created"], "venv": venv, "files": sorted(meta["files"])}


def prune(spec: dict) -> dict:
    """Keep the newest `keep` generations, and only the venvs they (or `current`) use."""
    gens = generations(spec)
    removed = [g["name"] for g in gens[spec["keep"]:]]
    for name in removed:
        shutil.rmtree(os.path.join(spec["store"], name), ignore_errors=True)
    for leftover in os.listdir(spec["store"]) if os.path.isdir(spec["store"]) else []:
        if leftover.startswith(".partial-"):
            shutil.rmtree(os.path.join(spec["store"], leftover), ignore_errors=True)
    in_use = {g["venv"] for g in gens[:spec["keep"]]} | {_venv(spec)}
    venvs_dir = os.path.join(spec["venv_root"], "venvs")
    dropped = []
    for name in os.listdir(venvs_dir) if os.path.isdir(venvs_dir) else []:
        path = os.path.join(venvs_dir, name)
        if path not in in_use:
            shutil.rmtree(path, ignore_errors=True)
            dropped.append(name)
    return {"pruned_generations": removed, "pruned_venvs": sorted(dropped)}


def main(argv: list[str]) -> dict:
    spec, command, *args = json.loads(argv[0]), argv[1], *argv[2:]
    if command == "status":
        return {"live": live_digest(spec), "generations": generations(spec)}
    if command == "snapshot":
        return snapshot(spec, args[0] if args else "")
    if command == "restore":
        return restore(spec, args[0] if args else "previous")
    if command == "prune":
        return prune(spec)
    raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
