"""Facts read on a host: what the deploy and verify need to know before they change or prove anything.

Runs on the target as `python3 -I -S` with the standard library only, sent as this file's text
(hx_gateway/pyinfra_ext/facts.py wraps each function as a pyinfra fact; several go in one round trip):

    python3 -I -S host_facts.py NAME JSON_ARGS      prints the fact's value as one JSON document

Each function only reads. Tests import this module and call the functions directly.
"""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

BODY_LIMIT = 65536  # bytes of an HTTP answer kept
# Straight to the URL: a proxy from the environment (http_proxy) is never the path the gateway takes.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def output_of(argv: list[str]) -> str:
    """stdout of a command as text; "" when it is not installed. stderr is dropped."""
    if shutil.which(argv[0]) is None:
        return ""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=False).stdout


def user_of(uid: int | str) -> str:
    try:
        return pwd.getpwuid(int(uid)).pw_name
    except KeyError:
        return str(uid)


def ownership(st: os.stat_result) -> dict[str, str]:
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"user": user_of(st.st_uid), "group": group, "mode": oct(st.st_mode & 0o7777)[2:]}


# -- listeners ------------------------------------------------------------------------------------

def _proc_listeners(port: int) -> list[dict[str, Any]]:
    """From /proc/net/tcp{,6} (where `ss` is missing): address and user of each listener on `port`."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) < 8 or cols[3] != "0A":  # 0A: TCP_LISTEN
                continue
            address, _, port_hex = cols[1].partition(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append({"address": socket.inet_ntop(family, raw), "port": port, "users": [user_of(cols[7])],
                          "processes": []})
    return found


def _ss_listeners(port: int, with_processes: bool) -> list[dict[str, Any]]:
    flags = "-Htlnpe" if with_processes else "-Htlne"
    found = []
    for line in output_of(["ss", flags, f"( sport = :{port} )"]).splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        uid = re.search(r"\buid:(\d+)", line)
        units = re.findall(r"cgroup:\S*/([^/\s]+\.(?:service|scope))", line)
        found.append({"address": cols[3].rpartition(":")[0].strip("[]"), "port": port,
                      "users": [user_of(uid.group(1) if uid else 0)],
                      "processes": sorted(set(re.findall(r'\(\("([^"]+)"', line)) | set(units))})
    return found


def listeners(port: int, owner: str | None = None) -> list[dict[str, Any]]:
    """TCP listeners on `port` with their users; a listener `owner` does not hold (owner None: any) is
    also named by process and unit (`ss -p` reads every process, so only then)."""
    if shutil.which("ss") is None:
        return _proc_listeners(port)
    found = _ss_listeners(port, with_processes=False)
    if all(item["users"] == [owner] for item in found):
        return found
    return _ss_listeners(port, with_processes=True)


def peer_connections(port: int) -> list[str]:
    """Remote addresses of the TCP connections to local `port` (any state but listening)."""
    rows = output_of(["ss", "-Htn", "state", "all", f"( sport = :{port} )"]).splitlines()
    return [cols[4].rpartition(":")[0].strip("[]") for cols in (r.split() for r in rows)
            if len(cols) >= 5 and cols[0] != "LISTEN"]


# -- the gateway host -----------------------------------------------------------------------------

def _account(user: str, group: str) -> dict[str, Any]:
    found: dict[str, Any] = {"user": None, "group_exists": False}
    try:
        grp.getgrnam(group)
        found["group_exists"] = True
    except KeyError:
        pass
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return found
    try:
        group_name = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group_name = str(entry.pw_gid)
    found["user"] = {"group": group_name, "shell": entry.pw_shell, "home": entry.pw_dir,
                     "system": entry.pw_uid < 1000}
    return found


def _directory(path: str) -> dict[str, Any] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return {"is_dir": False}
    return {"is_dir": True, **ownership(st)}


# A file counts as newer than the running process only by more than this: the process's start is
# known to a clock tick (10 ms) and derived from two clock readings.
STALE_SLACK_S = 0.5


def _stat_fields(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields from field 3 on (proc(5)); None when the process is gone. Split after the
    last ")": the name (field 2) may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_started(pid: int) -> float | None:
    """When a process started, as a Unix time: field 22 is its start in clock ticks after boot
    (CLOCK_BOOTTIME)."""
    fields = _stat_fields(pid) or []
    try:
        ticks = int(fields[19])  # field 22; the list starts at field 3
    except (IndexError, ValueError):
        return None
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) + ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The processes whose parent (field 4) is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)  # None: gone meanwhile
            if fields and len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry))
    return found


def loaded_since(main_pid: int, reloads: bool) -> float | None:
    """When the unit's running processes last read their configuration: its main process's start;
    for a unit that reloads by starting new workers (HAProxy's master-worker mode), its newest child's."""
    if main_pid <= 0:
        return None
    started = [process_started(pid) for pid in [main_pid, *(children(main_pid) if reloads else [])]]
    return max((t for t in started if t is not None), default=None)


def newer_than(paths: list[str], since: float) -> list[str]:
    """The paths changed after `since` (a Unix time): written after the process read them. lstat: a
    symlink switched atomically (the venv's `current`) counts by its own time."""
    newer = []
    for path in paths:
        try:
            if os.lstat(path).st_mtime > since + STALE_SLACK_S:
                newer.append(path)
        except OSError:
            continue  # not there: the deploy writes it, a change of its own
    return newer


def _unit_state(unit: str, reads: list[str] | None = None, reloads: bool = False) -> dict[str, Any]:
    """active and enabled; `stale`: those of the files it `reads` that changed after the running
    processes read them (a run that wrote them and stopped before the restart or reload)."""
    if not unit:
        return {}
    shown = dict(line.partition("=")[::2] for line in output_of(
        ["systemctl", "show", "-p", "ActiveState", "-p", "UnitFileState", "-p", "MainPID", "-p", "DropInPaths",
         unit]).splitlines())
    state: dict[str, Any] = {"active": shown.get("ActiveState") == "active",
                             "enabled": shown.get("UnitFileState") == "enabled",
                             "drop_ins": shown.get("DropInPaths", "").split()}
    main_pid = int(shown["MainPID"]) if shown.get("MainPID", "").isdigit() else 0
    since = loaded_since(main_pid, reloads) if state["active"] and reads else None
    state["stale"] = newer_than(reads or [], since) if since is not None else []
    return state


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _stdlib_has(*modules: str) -> bool:
    """Found, not imported: Debian ships venv and ensurepip apart from python3."""
    return all(any(os.path.exists(os.path.join(d, m, "__init__.py")) for d in sys.path if d) for m in modules)


def _glibc() -> str:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").partition("glibc ")[2]
    except (ValueError, OSError):  # not glibc (musl has no such name)
        return ""


def installed_litellm(venv: str) -> str:
    """The version in <venv>/lib/python3*/site-packages/litellm-<version>.dist-info."""
    lib = os.path.join(venv, "lib")
    for python in sorted(d for d in (os.listdir(lib) if os.path.isdir(lib) else []) if d.startswith("python3")):
        site = os.path.join(lib, python, "site-packages")
        for entry in sorted(os.listdir(site) if os.path.isdir(site) else []):
            if entry.startswith("litellm-") and entry.endswith(".dist-info"):
                return entry[len("litellm-"):-len(".dist-info")]
    return ""


def runnable_venv(venv: str, script: str = "litellm") -> bool:
    """Whether the venv can still start its service: its interpreter (a link to the system's python3,
    which an upgrade or a hand may remove) and its `script` (litellm, open-webui) are there."""
    return os.access(os.path.join(venv, "bin", "python"), os.X_OK) and os.path.isfile(os.path.join(venv, "bin",
                                                                                                 script))


def addresses() -> list[str]:
    """Every address on the host's interfaces (`ip -o addr show`), loopback included."""
    words = output_of(["ip", "-o", "addr", "show"]).split()
    return sorted({w.split("/")[0] for w in words if "/" in w and w[0].isalnum()})


def gateway_host(bind_port: int, venv_root: str, account: list[str] | None = None,
                 directories: list[str] | None = None, unit: str = "", reads: list[str] | None = None,
                 script: str = "litellm") -> dict[str, Any]:
    """Everything preflight needs from a host that runs a service from a locked venv (a gateway;
    Open WebUI: `script` names the program its venv must hold). `account` (user, group),
    `directories` and `unit`: their state, so the deploy calls the operations that manage them only
    when it differs; `reads`: the files the unit reads (its state says which changed after it started)."""
    user, group = account or ("", "")
    current = os.path.join(venv_root, "current")
    target = os.path.realpath(current) if os.path.islink(current) else ""
    hostname = socket.gethostname()
    return {
        "hostname": hostname,
        "fqdn": socket.getfqdn(hostname),
        "addresses": addresses(),
        "pid1": _read("/proc/1/comm"),
        "python": ".".join(str(n) for n in sys.version_info[:3]),
        "has_venv": _stdlib_has("ensurepip", "venv"),
        "has_ss": shutil.which("ss") is not None,
        "has_zstd": shutil.which("zstd") is not None,  # packs and unpacks venv artifacts
        "arch": os.uname().machine,
        "glibc": _glibc(),
        "cpus": os.cpu_count() or 1,
        "listeners": listeners(bind_port, user or None),
        # A venv that cannot run counts as none: the deploy builds it again instead of failing every run.
        "installed_venv_id": _read(os.path.join(target, ".hx-venv-id")) if target and runnable_venv(target, script)
        else "",
        "installed_litellm": installed_litellm(target) if target else "",
        "venv": target,
        "venv_runnable": runnable_venv(target, script) if target and os.path.isdir(target) else None,  # None: none
        "account": _account(user, group) if user else {},
        "directories": {d: _directory(d) for d in directories or []},
        "unit": _unit_state(unit, reads),
    }


# -- HTTP from the host ---------------------------------------------------------------------------

def _probe(request: dict[str, Any], timeout: float, result: dict[str, Any]) -> None:
    url = request["url"]
    parts = urllib.request.urlparse(url)
    try:
        found = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
        result["addresses"] = sorted({info[4][0] for info in found})
    except OSError as exc:
        result["error"] = f"name does not resolve: {exc}"
        return
    data = json.dumps(request["json"]).encode() if "json" in request else None
    ask = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    started = time.monotonic()
    try:
        with DIRECT.open(ask, timeout=timeout) as answer:
            result["status"], result["body"] = answer.status, answer.read(BODY_LIMIT).decode(errors="replace")
    except urllib.error.HTTPError as answer:  # an answer all the same: 4xx/5xx with its body
        result["status"], result["body"] = answer.code, answer.read(BODY_LIMIT).decode(errors="replace")
    except Exception as exc:
        reason = getattr(exc, "reason", exc)
        result["error"] = f"{type(reason).__name__}: {reason}"
    result["ms"] = round((time.monotonic() - started) * 1000, 1)


def http_probes(requests: list[dict[str, Any]], timeout: float = 5.0) -> list[dict[str, Any]]:
    """GET (or POST `json`) each URL from this host: status, body head, round-trip ms, the addresses
    its name resolves to, or the error. All at once: a dead backend costs one timeout, not one each."""
    results = [{"url": r["url"], "status": None, "body": "", "ms": None, "error": "", "addresses": []}
               for r in requests]
    threads = [threading.Thread(target=_probe, args=(request, timeout, result))
               for request, result in zip(requests, results, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# -- managed files --------------------------------------------------------------------------------

def keyed(salt: str, value: str) -> str:
    """A value as the control node may see it: HMAC-SHA256 under a salt it chose for this run."""
    return hmac.new(salt.encode(), value.encode(), "sha256").hexdigest()


def dotenv_values(text: str) -> dict[str, str]:
    """NAME -> value for each NAME=value line of a dotenv text (the env files the deploy writes)."""
    values = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def dotenv_entries(text: str, salt: str) -> dict[str, str]:
    """NAME -> keyed(salt, value) for each NAME=value line of a dotenv text."""
    return {name: keyed(salt, value) for name, value in dotenv_values(text).items()}


def file_states(paths: list[str], secret_paths: list[str], salt: str, with_text: bool,
                dotenv_paths: list[str] | None = None) -> dict[str, Any]:
    """sha256, owner and mode of each file; its text when `with_text` (for --diff), except a secret
    file's: never its text; a secret dotenv file's (`dotenv_paths`; all secret files when None) comes
    as one keyed hash per NAME= line, so the control node learns which names changed and nothing
    reusable about the values. Another secret (a private key) comes as its digest alone: a NAME= split
    of its lines would send pieces of it."""
    found: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except (FileNotFoundError, NotADirectoryError):  # the latter: a file where its directory belongs
            found[path] = {"exists": False}
            continue
        except OSError as error:  # a directory in its place, or unreadable: preflight names it
            found[path] = {"exists": True, "error": type(error).__name__}
            continue
        item = {"exists": True, "sha256": hashlib.sha256(data).hexdigest(), **ownership(os.stat(path))}
        if path in secret_paths:
            dotenv = dotenv_paths is None or path in dotenv_paths
            item["entries"] = dotenv_entries(data.decode(errors="replace"), salt) if dotenv else {}
        elif with_text:
            item["text"] = data.decode(errors="replace")
        found[path] = item
    return found


def venv_litellm(venv_root: str) -> str:
    """The LiteLLM version the deployed venv's own interpreter imports ("" when there is none)."""
    try:
        return subprocess.run([f"{venv_root}/current/bin/python", "-I", "-c",  # -I: see remote.TARGET_PYTHON
                               "import importlib.metadata as m; print(m.version('litellm'))"],
                              capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


# -- the service's other components ---------------------------------------------------------------

def component_host(name: str, units: list[str], packages: list[str], directories: list[str],
                   reads: list[str] | None = None, reloads: bool = False) -> dict[str, Any]:
    """What preflight needs from a Redis or HAProxy host: its addresses, what its inventory name
    resolves to on it, its units' state (with the files they `reads` that changed after they last
    read them; `reloads`: the unit reloads by starting new workers), the installed versions of the
    packages (dpkg) and the state of the directories the deploy manages."""
    try:
        resolves = sorted({info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})
    except OSError:
        resolves = []
    versions = {}
    for package in packages:
        shown = output_of(["dpkg-query", "-W", "-f", "${Status}\t${Version}", package])
        status, _, version = shown.partition("\t")
        versions[package] = version if status.endswith(" installed") else ""
    return {"addresses": addresses(), "resolves": resolves, "units": {u: _unit_state(u, reads, reloads) for u in units},
            "versions": versions, "directories": {d: _directory(d) for d in directories}}


def resolve(names: list[str]) -> dict[str, list[str]]:
    """The addresses each name (or address) stands for on this host ([] when it does not resolve)."""
    found = {}
    for name in names:
        try:
            found[name] = sorted({info[4][0] for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)})
        except OSError:
            found[name] = []
    return found


def _redis_reply(sock: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _redis_command(*words: str) -> bytes:
    """One command in Redis's protocol (RESP): an array of bulk strings."""
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        raw = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def redis_probe(host: str, port: int, env_file: str = "", timeout: float = 3.0) -> dict[str, Any]:
    """From a gateway: can it reach Redis, does Redis refuse a client without a password, and (with
    the gateway's env file, read as root) does the gateways' ACL user get in. The password never
    leaves this host."""
    result: dict[str, Any] = {"reachable": False, "unauthenticated": "", "authenticated": "", "error": "",
                              "addresses": []}
    try:
        result["addresses"] = sorted({i[4][0] for i in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
        with socket.create_connection((host, port), timeout=timeout) as sock:
            result["reachable"] = True
            sock.sendall(_redis_command("PING"))
            result["unauthenticated"] = _redis_reply(sock)
            entries = dotenv_values(_read(env_file)) if env_file else {}
            if entries.get("REDIS_PASSWORD"):
                user = entries.get("REDIS_USERNAME", "default")
                sock.sendall(_redis_command("AUTH", user, entries["REDIS_PASSWORD"]))
                reply = _redis_reply(sock)
                if reply == "+OK":
                    sock.sendall(_redis_command("PING"))
                    reply = _redis_reply(sock)
                result["authenticated"] = reply
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def prometheus_targets(url: str) -> list[dict[str, str]]:
    """Prometheus's active targets (its HTTP API, GET /api/v1/targets): job, host label, instance, health
    (up, down, unknown: not scraped yet) and the last scrape's error; one entry with `error` when
    Prometheus does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/targets?state=active", timeout=5) as response:
            targets = json.load(response)["data"]["activeTargets"]
    except (OSError, ValueError, KeyError) as exc:
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    return [{"job": t["labels"].get("job", ""), "host": t["labels"].get("host", ""),
             "instance": t["labels"].get("instance", ""), "health": t.get("health", ""),
             "last_error": t.get("lastError", "")} for t in targets]


FACTS = {
    "gateway_host": gateway_host,
    "listeners": listeners,
    "peer_connections": peer_connections,
    "http_probes": http_probes,
    "file_states": file_states,
    "venv_litellm": venv_litellm,
    "component_host": component_host,
    "redis_probe": redis_probe,
    "resolve": resolve,
    "prometheus_targets": prometheus_targets,
}


def main(argv: list[str]) -> None:
    name, arguments = argv[0], json.loads(argv[1])
    print(json.dumps(FACTS[name](*arguments)))


if __name__ == "__main__":
    main(sys.argv[1:])
