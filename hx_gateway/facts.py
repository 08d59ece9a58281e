"""Custom pyinfra facts: read a host's state, change nothing.

Each fact is one command on the target (one `docker exec` / SSH round trip), written as a short
Python program for the target's python3 so the output is JSON and parsing stays trivial. `Batch`
runs several of these programs in one python3, so preflight reads a host in one round trip.
"""

from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path
from typing import Any

from pyinfra.api import FactBase

from hx_gateway import host_venv_check
from hx_gateway.remote import TARGET_PYTHON

# Programs kept as real modules, sent to the host as their source text.
HOST_VENV_CHECK = Path(host_venv_check.__file__).read_text()

# Shared by the facts below: run on the target, print one JSON document. What a program imports and
# starts is CPU on every host of every run (the no-op's main cost on a fleet), so the helpers start
# other programs with posix_spawn (importing subprocess costs more than most of them run) and the
# happy path starts as few as it can.
_SPAWN = r'''
import os
def which(name):
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(folder or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
def output_of(argv):
    # stdout of argv as text ("" when argv[0] is not on PATH); stderr is dropped.
    path = which(argv[0])
    if path is None:
        return ""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawn(path, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
    finally:
        os.close(write_end)
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(65536), b""):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace")
'''

_LISTENERS = _SPAWN + r'''
def listeners(port, owner=None):
    # /proc/net/tcp{,6} list every listening socket before any other (the kernel walks its listening
    # hash first), so reading stops at the first row in another state: the cost does not grow with a
    # busy gateway's connections. The rows give address and uid. Only a listener `owner` does not
    # hold (owner None: any) is named by process and unit, with `ss -p -e`: it scans every process
    # and the whole cgroup tree.
    import pwd, re, socket
    def user_of(uid):
        try:
            return pwd.getpwuid(int(uid)).pw_name
        except KeyError:
            return str(uid)
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            fh = open(table)
        except OSError:
            continue
        with fh:
            fh.readline()  # the header
            for row in fh:
                cols = row.split()
                if len(cols) < 8 or cols[3] != "0A":  # 0A: LISTEN; every later row is another state
                    break
                address, _, port_hex = cols[1].partition(":")
                if int(port_hex, 16) != port:
                    continue
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.append({"address": socket.inet_ntop(family, raw), "port": port,
                              "users": [user_of(cols[7])], "processes": []})
    if all(l["users"] == [owner] for l in found):
        return found
    named = []
    for line in output_of(["ss", "-Htlnpe", f"( sport = :{port} )"]).splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        uid = re.search(r"\buid:(\d+)", line)
        units = re.findall(r"cgroup:\S*/([^/\s]+\.(?:service|scope))", line)
        named.append({"address": cols[3].rpartition(":")[0].strip("[]"), "port": port,
                      "users": [user_of(uid.group(1) if uid else 0)],
                      "processes": sorted(set(re.findall(r'\(\("([^"]+)"', line)) | set(units))})
    return named or found  # without ss (before the install step adds it): the rows alone
'''

_OWNERSHIP = r'''
import grp, pwd
def name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:
        return str(ident)
def ownership(st):
    return {"user": name(pwd.getpwuid, st.st_uid), "group": name(grp.getgrgid, st.st_gid),
            "mode": oct(st.st_mode & 0o7777)[2:]}
'''


Program = tuple[str, list[str]]  # a python3 program for the target and its arguments (sys.argv[1:])


def _args(*args: Any) -> list[str]:
    """The facts' programs read their arguments as one JSON list in sys.argv[1]."""
    return [json.dumps(args)]


def shell_command(program: Program) -> str:
    source, argv = program
    return " ".join([TARGET_PYTHON, "-c", shlex.quote(source), *(shlex.quote(a) for a in argv)])


class _JsonFact(FactBase):
    """A fact whose `program` runs on the target's python3 and prints one JSON document; `Batch`
    runs several of them in one round trip."""

    def __init_subclass__(cls) -> None:
        # pyinfra reads a fact's arguments from the signature of `command`: it gets `program`'s.
        if "program" in cls.__dict__ and "command" not in cls.__dict__:
            program = cls.__dict__["program"]

            def command(self: _JsonFact, *args: Any, **kwargs: Any) -> str:
                return shell_command(program(self, *args, **kwargs))

            command.__signature__ = inspect.signature(program)  # type: ignore[attr-defined]
            cls.command = command  # type: ignore[method-assign]
        super().__init_subclass__()

    def process(self, output: list[str]) -> Any:  # type: ignore[override]
        return json.loads("\n".join(output))


_BATCH = r'''
import io, json, sys
results, real_stdout = [], sys.stdout
for source, argv in json.loads(sys.argv[1]):
    sys.argv = ["-c", *argv]
    sys.stdout = printed = io.StringIO()  # what contextlib.redirect_stdout does, without importing it
    try:
        exec(compile(source, "<fact>", "exec"), {"__name__": "__main__"})
    finally:
        sys.stdout = real_stdout
    results.append(json.loads(printed.getvalue()))
print(json.dumps(results))
'''


# What the target's command line holds when a program travels on stdin: sudo writes every command
# line to the host's auth log, and a Batch's programs are ~17 KB of Python on every run.
_FROM_STDIN = ("import json, sys; source, sys.argv[1:] = json.load(sys.stdin); "
               "exec(compile(source, '<hx-fact>', 'exec'), {'__name__': '__main__'})")


class Batch(_JsonFact):
    """Several facts' programs in one python3 on the target: one round trip instead of one each
    (each round trip is a `docker exec` or an SSH channel plus sudo). Returns their results in order.

    The programs go on stdin: `host.get_fact(Batch, programs=p, _stdin=Batch.stdin(p))`; the
    command line is one short loader."""

    default = list

    def program(self, programs: list[Program]) -> Program:  # type: ignore[override]
        return _BATCH, [json.dumps(programs)]

    def command(self, programs: list[Program]) -> str:  # type: ignore[override]
        return f"{TARGET_PYTHON} -c {shlex.quote(_FROM_STDIN)}"

    @staticmethod
    def stdin(programs: list[Program]) -> str:
        return json.dumps(Batch().program(programs))


class GatewayHost(_JsonFact):
    """Everything preflight needs from a gateway host, in one round trip."""

    default = dict

    def program(self, bind_port: int, venv_root: str, account: tuple[str, str] = ("", ""),  # type: ignore[override]
                directories: tuple[str, ...] = (), unit: str = "") -> Program:
        """account (user, group), directories and unit: their current state, so the deploy calls the
        operations that manage them only when something differs (each of their facts is a round trip)."""
        return (_LISTENERS + _OWNERSHIP + r'''
import json, os, socket, stat, sys
bind_port, venv_root, (user, group), directories, unit = json.loads(sys.argv[1])
def account():
    found = {"user": None, "group_exists": False}
    try:
        grp.getgrnam(group)
        found["group_exists"] = True
    except KeyError:
        pass
    try:
        pw = pwd.getpwnam(user)
        found["user"] = {"group": name(grp.getgrgid, pw.pw_gid), "shell": pw.pw_shell,
                         "home": pw.pw_dir, "system": pw.pw_uid < 1000}
    except KeyError:
        pass
    return found
def directory(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return {"is_dir": False}
    return {"is_dir": True, **ownership(st)}
def unit_state():
    if not unit:
        return {}
    shown = output_of(["systemctl", "show", "-p", "ActiveState", "-p", "UnitFileState", unit]).split()
    return {"active": "ActiveState=active" in shown, "enabled": "UnitFileState=enabled" in shown}
def read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""
def fqdn(name):
    # socket.getfqdn(name), with the name as bytes: a str goes through the idna codec (~1 ms to import).
    try:
        primary, aliases, _ = socket.gethostbyaddr(name.encode())
    except OSError:
        return name
    return next((n for n in [primary, *aliases] if "." in n), primary)
def stdlib_has(*modules):
    # Found, not imported (importing ensurepip costs ~20 ms): Debian ships venv and ensurepip apart.
    return all(any(os.path.exists(os.path.join(d, m, "__init__.py")) for d in sys.path if d) for m in modules)
def glibc():
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").partition("glibc ")[2]
    except (ValueError, OSError):  # not glibc (musl has no such name)
        return ""
def installed_litellm(venv):
    # The version in <venv>/lib/python3*/site-packages/litellm-<version>.dist-info
    lib = os.path.join(venv, "lib")
    for python in sorted(d for d in (os.listdir(lib) if os.path.isdir(lib) else []) if d.startswith("python3")):
        site = os.path.join(lib, python, "site-packages")
        for entry in sorted(os.listdir(site) if os.path.isdir(site) else []):
            if entry.startswith("litellm-") and entry.endswith(".dist-info"):
                return entry[len("litellm-"):-len(".dist-info")]
    return ""
addrs = output_of(["ip", "-o", "addr", "show"]).split()
current = os.path.join(venv_root, "current")
target = os.path.realpath(current) if os.path.islink(current) else ""
hostname = socket.gethostname()
print(json.dumps({
    "hostname": hostname,
    "fqdn": fqdn(hostname),
    "addresses": sorted({a.split("/")[0] for a in addrs if "/" in a and a[0].isalnum()}),
    "pid1": read("/proc/1/comm"),
    "python": "%d.%d.%d" % sys.version_info[:3],
    "has_venv": stdlib_has("ensurepip", "venv"),
    "has_ss": which("ss") is not None,
    "arch": os.uname().machine,
    "glibc": glibc(),
    "cpus": os.cpu_count() or 1,
    "listeners": listeners(bind_port, user or None),
    "installed_venv_id": read(os.path.join(target, ".hx-venv-id")) if target else "",
    "installed_litellm": installed_litellm(target) if target else "",
    "venv": target,
    "account": account() if user else {},
    "directories": {d: directory(d) for d in directories},
    "unit": unit_state(),
}))
''', _args(bind_port, venv_root, list(account), list(directories), unit))


class Listeners(_JsonFact):
    """TCP listeners on a port, with the processes and users that own them."""

    default = list

    def program(self, port: int) -> Program:  # type: ignore[override]
        return (_LISTENERS + r'''
import json, sys
(port,) = json.loads(sys.argv[1])
print(json.dumps(listeners(port)))
''', _args(port))


class HttpProbes(_JsonFact):
    """GET (or POST) each URL from the host itself: status, body head, round-trip ms, or the error.

    An HTTP/1.0 request on a plain socket (TLS only for https): the server then closes to end the
    body, never chunks it. urllib.request costs ~30 ms of the target's CPU to import (http.client,
    email, ssl), on every host of every run; this program imports nothing of that for http."""

    default = list

    def program(self, requests: list[dict[str, Any]], timeout: float = 5.0) -> Program:  # type: ignore[override]
        return (r'''
import json, sys, threading, time, socket
requests, timeout = json.loads(sys.argv[1])
LIMIT = 65536  # body bytes kept
def split(url):
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    host, _, port = netloc.rpartition("]:") if netloc.startswith("[") else netloc.rpartition(":")
    if not _ or not port.isdigit():
        host, port = netloc, ("443" if scheme == "https" else "80")
    return scheme, host.strip("[]"), int(port), slash + path or "/", netloc
def exchange(scheme, host, port, path, netloc, data):
    sock = socket.create_connection((name_of(host), port), timeout=timeout)
    if scheme == "https":
        import ssl
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    with sock:
        head = [f"{'POST' if data is not None else 'GET'} {path} HTTP/1.0", f"Host: {netloc}",
                "Accept: */*", "User-Agent: hx-gateway-probe"]
        if data is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (data or b""))
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < LIMIT:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    header, sep, body = received.partition(b"\r\n\r\n")
    status = header.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise ConnectionError(f"not an HTTP answer: {header[:80]!r}")
    return int(status[1]), body[:LIMIT].decode(errors="replace")
def name_of(host):
    # An ASCII name as bytes: a str goes through the idna codec (~1 ms to import), to the same bytes.
    return host.encode() if host.isascii() else host
def probe(req, result):
    scheme, host, port, path, netloc = split(req["url"])
    try:
        found = socket.getaddrinfo(name_of(host), port, proto=socket.IPPROTO_TCP)
        result["addresses"] = sorted({i[4][0] for i in found})
    except OSError as exc:
        result["error"] = f"name does not resolve: {exc}"
        return
    data = json.dumps(req["json"]).encode() if "json" in req else None
    started = time.monotonic()
    try:
        result["status"], result["body"] = exchange(scheme, host, port, path, netloc, data)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
# All at once: a dead backend costs one timeout, not one per backend.
results = [{"url": req["url"], "status": None, "body": "", "ms": None, "error": "", "addresses": []}
           for req in requests]
threads = [threading.Thread(target=probe, args=pair) for pair in zip(requests, results)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(results))
''', _args(requests, timeout))


class FileStates(_JsonFact):
    """Managed files in one round trip: sha256, owner, mode, and what a diff needs.

    Plain files come with their text when `with_text` (for --diff). Secret files never do: they
    come as a keyed hash per KEY= name, salted by the control node for this run, so the output says
    which names changed without revealing anything reusable about the values.
    """

    default = dict

    def program(self, paths: list[str], secret_paths: list[str], salt: str, with_text: bool) -> Program:  # type: ignore[override]
        return (_OWNERSHIP + r'''
import json, os, sys
try:  # the interpreter's own sha256: hashlib (and hmac with it) loads OpenSSL, ~3 ms per host per run
    from _sha2 import sha256  # Python 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256
def keyed(key, message):
    # HMAC-SHA256 (RFC 2104): what hmac.new(key, message, "sha256").hexdigest() computes
    key = (sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = sha256(bytes(k ^ 0x36 for k in key) + message).digest()
    return sha256(bytes(k ^ 0x5C for k in key) + inner).hexdigest()
paths, secret_paths, salt, with_text = json.loads(sys.argv[1])
found = {}
for path in paths:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        found[path] = {"exists": False}
        continue
    st = os.stat(path)
    item = {"exists": True, "sha256": sha256(data).hexdigest(), **ownership(st)}
    if path in secret_paths:
        item["entries"] = {}
        for line in data.decode(errors="replace").splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                item["entries"][key.strip()] = keyed(salt.encode(), value.strip().encode())
    elif with_text:
        item["text"] = data.decode(errors="replace")
    found[path] = item
print(json.dumps(found))
''', _args(paths, secret_paths, salt, with_text))


class PeerConnections(_JsonFact):
    """Remote addresses of the TCP connections (any state but LISTEN) to a local port."""

    default = list

    def command(self, port: int, sample: str = "") -> str:  # type: ignore[override]
        # `sample` only makes each reading a fact of its own, never served from pyinfra's cache.
        program = ("import json,sys; print(json.dumps("
                   "[l.strip().rsplit(':', 1)[0].strip('[]') for l in sys.stdin if l.strip()]))")
        listing = f"ss -Htn state all '( sport = :{int(port)} )' | awk '$1 != \"LISTEN\" {{print $5}}'"
        return f"{listing} | {TARGET_PYTHON} -c {shlex.quote(program)}"


class VenvLitellm(_JsonFact):
    """The LiteLLM version the deployed venv's own interpreter imports (not just a directory name)."""

    default = str

    def program(self, venv_root: str) -> Program:  # type: ignore[override]
        return (r'''
import json, subprocess, sys
(venv_root,) = json.loads(sys.argv[1])
try:  # "" when nothing is deployed, or the venv cannot import LiteLLM
    print(json.dumps(subprocess.run([f"{venv_root}/current/bin/python", "-I", "-c",  # -I: see TARGET_PYTHON
                                     "import importlib.metadata as m; print(m.version('litellm'))"],
                                    capture_output=True, text=True).stdout.strip()))
except OSError:
    print(json.dumps(""))
''', _args(venv_root))


class VenvPolicy(_JsonFact):
    """What the serving venv would run at every interpreter start, and whether its LiteLLM is allowed
    (hx_gateway/host_venv_check.py, the program the install runs before activating a venv)."""

    default = dict

    def program(self, venv_root: str, policy: dict) -> Program:  # type: ignore[override]
        return HOST_VENV_CHECK, [json.dumps(policy, sort_keys=True), f"{venv_root}/current"]
