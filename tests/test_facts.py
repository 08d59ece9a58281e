"""The facts' programs run here against scratch files (they are plain python3 on the host): a Batch
answers exactly what each fact answers on its own, in order, in one process."""

from __future__ import annotations

import getpass
import http.server
import inspect
import json
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hx_gateway.facts import (
    _LISTENERS,
    Batch,
    FileStates,
    GatewayHost,
    HttpProbes,
    Listeners,
    VenvLitellm,
    shell_command,
)
from hx_gateway.generations import Generations
from hx_gateway.operations import _entries


def run(command: str, stdin: str | None = None, env: dict[str, str] | None = None) -> object:
    return json.loads(subprocess.run(["/bin/sh", "-c", command], input=stdin, env=env, capture_output=True,
                                     text=True, check=True).stdout)


def test_a_batch_answers_what_each_fact_answers_alone(tmp_path: Path):
    (tmp_path / "config.yaml").write_text("model_list: []\n")
    (tmp_path / "litellm.env").write_text("LITELLM_MASTER_KEY=sk-secret\n")
    paths = [str(tmp_path / n) for n in ("config.yaml", "litellm.env", "missing")]
    spec = {"store": str(tmp_path / "generations"), "keep": 2, "venv_root": str(tmp_path / "opt"),
            "files": [{"path": paths[0], "user": "root", "group": "root", "mode": "640"}]}
    wanted = [
        (FileStates, {"paths": paths, "secret_paths": [paths[1]], "salt": "s", "with_text": True}),
        (Generations, {"spec": spec}),
        (FileStates, {"paths": paths[:1], "secret_paths": [], "salt": "t", "with_text": False}),
    ]
    programs = [fact().program(**args) for fact, args in wanted]
    command = Batch().command(programs=programs)
    together = run(command, stdin=Batch.stdin(programs))
    alone = [run(fact().command(**args)) for fact, args in wanted]
    assert together == alone
    files = together[0]
    assert files[paths[0]]["text"] == "model_list: []\n" and files[paths[2]] == {"exists": False}
    assert "text" not in files[paths[1]] and "sk-secret" not in json.dumps(together)
    assert "text" not in together[2][paths[0]]
    assert len(command) < 200 and "paths" not in command  # the programs travel on stdin


@pytest.mark.parametrize("salt", ["s", "x" * 64, "y" * 65, "z" * 200], ids=["short", "block", "block+1", "long"])
def test_secret_entries_are_the_keyed_digests_the_control_node_computes(tmp_path: Path, salt: str):
    # The host's HMAC (without hmac/hashlib) must equal the control node's, or every run shows a change.
    text = "# comment\nLITELLM_MASTER_KEY=sk-secret\nEMPTY=\n  SPACED = v a l \n"
    (tmp_path / "litellm.env").write_text(text)
    path = str(tmp_path / "litellm.env")
    found = run(FileStates().command(paths=[path], secret_paths=[path], salt=salt, with_text=False))
    assert found[path]["entries"] == _entries(text, salt)  # type: ignore[index]
    assert set(_entries(text, salt)) == {"LITELLM_MASTER_KEY", "EMPTY", "SPACED"}


def test_pyinfra_sees_each_programs_arguments_as_the_facts_arguments():
    # pyinfra binds get_fact's arguments against the signature of `command`.
    assert list(inspect.signature(GatewayHost.command).parameters) == [
        "self", "bind_port", "venv_root", "account", "directories", "unit"]
    bound = inspect.getcallargs(GatewayHost().command, 4000, "/opt/litellm")
    assert bound["bind_port"] == 4000 and bound["unit"] == ""


@pytest.mark.parametrize("with_ss", [True, False], ids=["ss", "proc-without-ss"])
@pytest.mark.parametrize("family, address", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_listeners_reads_address_port_and_owner(family: int, address: str, with_ss: bool, tmp_path: Path):
    if with_ss and shutil.which("ss") is None:
        pytest.skip("no ss on this machine")
    # Without ss on PATH the program reads /proc/net/tcp{,6} (a host before the install step).
    (tmp_path / "python3").symlink_to(sys.executable)
    env = None if with_ss else {"PATH": str(tmp_path)}
    with socket.socket(family) as listening:
        try:
            listening.bind((address, 0))
        except OSError:
            pytest.skip(f"no {address} on this machine")
        listening.listen()
        port = listening.getsockname()[1]
        found = run(shell_command(Listeners().program(port=port)), env=env)
    assert [(item["address"], item["port"], item["users"]) for item in found] == [(address, port, [getpass.getuser()])]


def _listeners_of(port: int, owner: str | None, env: dict[str, str]) -> list[dict]:
    program = _LISTENERS + ("import json, sys\nport, owner = json.loads(sys.argv[1])\n"
                            "print(json.dumps(listeners(port, owner)))")
    return run(shell_command((program, [json.dumps([port, owner])])), env=env)  # type: ignore[return-value]


def test_listeners_stop_reading_at_the_first_connection_yet_find_a_listener_opened_after_many(tmp_path: Path):
    # The kernel lists listening sockets first, so the program stops at the first other row; a
    # listener opened after 60 connections (to another listener) must still be found.
    (tmp_path / "python3").symlink_to(sys.executable)
    env = {"PATH": str(tmp_path)}  # no ss: the /proc rows alone
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(128)
        clients = [socket.create_connection(busy.getsockname()) for _ in range(60)]
        try:
            with socket.socket() as late:
                late.bind(("127.0.0.1", 0))
                late.listen()
                port = late.getsockname()[1]
                found = _listeners_of(port, getpass.getuser(), env)
        finally:
            for client in clients:
                client.close()
    assert [(item["address"], item["port"], item["users"]) for item in found] == [
        ("127.0.0.1", port, [getpass.getuser()])]


def test_listeners_ask_ss_for_processes_only_when_someone_else_holds_the_port(tmp_path: Path):
    # ss -p scans every process and ss -e the whole cgroup tree: only worth it to name a squatter.
    (tmp_path / "python3").symlink_to(sys.executable)
    fake_ss = tmp_path / "ss"
    fake_ss.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/ss.calls\n"
                       "echo 'LISTEN 0 5 127.0.0.1:'$PORT' 0.0.0.0:* users:((\"squatter\",pid=1,fd=3)) uid:0'\n")
    fake_ss.chmod(0o755)
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        env = {"PATH": str(tmp_path), "PORT": str(port)}
        owned = _listeners_of(port, getpass.getuser(), env)
        assert not (tmp_path / "ss.calls").exists() and owned[0]["processes"] == []
        foreign = _listeners_of(port, "someone-else", env)
    assert (tmp_path / "ss.calls").read_text().split() == ["-Htlnpe", "(", "sport", "=", f":{port}", ")"]
    assert foreign == [{"address": "127.0.0.1", "port": port, "users": ["root"], "processes": ["squatter"]}]


def test_gateway_host_starts_only_ip_and_systemctl_and_imports_no_subprocess(tmp_path: Path):
    # Preflight's program runs on every host of every run: what it imports and starts is the no-op's cost.
    calls = tmp_path / "calls"
    for tool in ("ss", "ip", "systemctl"):
        (tmp_path / tool).write_text(f"#!/bin/sh\necho {tool} >> {calls}\n")
        (tmp_path / tool).chmod(0o755)
    (tmp_path / "python3").symlink_to(sys.executable)
    program, argv = GatewayHost().program(bind_port=1, venv_root=str(tmp_path), unit="litellm.service")
    watched = program.replace('print(json.dumps({', 'print(json.dumps({"modules": sorted(sys.modules), ')
    found = run(shell_command((watched, argv)), env={"PATH": str(tmp_path)})
    assert calls.read_text().split() == ["ip", "systemctl"]
    assert not {"subprocess", "platform", "shutil", "glob", "importlib.util"} & set(found["modules"])
    assert found["python"] == platform.python_version() and found["arch"] == platform.machine()
    assert found["glibc"] == platform.libc_ver()[1] and found["has_ss"] is True


def test_preflights_batch_imports_nothing_heavy(tmp_path: Path, echo_server: str):
    # Preflight's one program per host per run: each module it imports is CPU on every host (~0.5-8 ms).
    spec = {"store": str(tmp_path / "generations"), "keep": 2, "venv_root": str(tmp_path), "files": []}
    programs = [GatewayHost().program(bind_port=1, venv_root=str(tmp_path), unit="litellm.service"),
                HttpProbes().program([{"url": f"{echo_server}/api/version"}]),
                FileStates().program(paths=[], secret_paths=[], salt="s", with_text=False),
                Generations().program(spec=spec)]
    watch = ("import atexit, sys\natexit.register(lambda: sys.__stderr__.write(' '.join(sys.modules)))\nprint(1)", [])
    done = subprocess.run(["/bin/sh", "-c", Batch().command(programs=[watch, *programs])],
                          input=Batch.stdin([watch, *programs]), capture_output=True, text=True, check=False)
    loaded = set(done.stderr.split())
    assert "json" in loaded and "socket" in loaded, done.stderr
    heavy = {"subprocess", "platform", "shutil", "glob", "tempfile", "datetime", "importlib.util", "contextlib",
             "encodings.idna", "urllib.request", "http.client", "email", "ssl", "site", "hashlib", "hmac"}
    assert not heavy & loaded


def test_venv_litellm_asks_the_venvs_own_interpreter_and_is_empty_without_one(tmp_path: Path):
    assert run(shell_command(VenvLitellm().program(venv_root=str(tmp_path)))) == ""
    interpreter = tmp_path / "venvs" / "a" / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("#!/bin/sh\necho 1.106.2\n")
    interpreter.chmod(0o755)
    (tmp_path / "current").symlink_to(tmp_path / "venvs" / "a")
    assert run(shell_command(VenvLitellm().program(venv_root=str(tmp_path)))) == "1.106.2"


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers like Ollama would over HTTP/1.1, with the request echoed back."""

    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/big":
            self._answer(200, b"x" * 100_000)
        elif self.path == "/api/version":
            self._answer(200, json.dumps({"version": "0.0.0", "http": self.request_version}).encode())
        else:
            self._answer(404, b'{"error": "not found"}')

    def do_POST(self) -> None:  # noqa: N802
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(200, json.dumps({"got": sent, "type": self.headers["Content-Type"]}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_probes_answer_status_body_and_time_or_the_error(echo_server: str):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    requests = [{"url": f"{echo_server}/api/version"}, {"url": f"{echo_server}/missing"},
                {"url": f"{echo_server}/api/show", "json": {"name": "phi3"}}, {"url": f"{echo_server}/big"},
                {"url": f"http://127.0.0.1:{closed_port}/api/version"},
                {"url": "http://hx-no-such-host.invalid:11434/api/version"}]
    version, missing, posted, big, refused, unresolved = run(shell_command(HttpProbes().program(requests, 2.0)))
    assert version["status"] == 200 and json.loads(version["body"]) == {"version": "0.0.0", "http": "HTTP/1.0"}
    assert version["addresses"] == ["127.0.0.1"] and version["ms"] > 0 and not version["error"]
    assert missing["status"] == 404 and "not found" in missing["body"]
    assert json.loads(posted["body"]) == {"got": {"name": "phi3"}, "type": "application/json"}
    assert big["status"] == 200 and big["body"] == "x" * 65536
    assert refused["status"] is None and refused["error"].startswith("ConnectionRefusedError")
    assert unresolved["error"].startswith("name does not resolve") and unresolved["ms"] is None


def test_http_probes_do_not_import_urllib_for_plain_http(echo_server: str):
    # What the program imports is CPU on every host of every run (urllib.request is ~30 ms there).
    program, argv = HttpProbes().program([{"url": f"{echo_server}/api/version"}])
    watched = program.replace("print(json.dumps(results))",
                              "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
                              "('http', 'email', 'ssl') or m == 'urllib.request')))")
    assert run(shell_command((watched, argv))) == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a certificate")
def test_http_probes_speak_tls_to_https_and_verify_the_certificate(tmp_path: Path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (answer,) = run(shell_command(HttpProbes().program([{"url": f"https://127.0.0.1:{server.server_address[1]}/"}])))
    finally:
        server.shutdown()
        server.server_close()
    # A certificate no authority signed is refused, as urllib would: the probe spoke TLS and checked it.
    assert answer["status"] is None and "CERTIFICATE_VERIFY_FAILED" in answer["error"], answer
