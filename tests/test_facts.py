"""The facts the deploy reads on a host (hx_gateway/host/facts.py), run here against scratch files:
in-process where they are plain functions, and as the host runs them (python3 -I -S, a Batch on
stdin) where the way they travel matters."""

from __future__ import annotations

import getpass
import hmac
import http.server
import inspect
import json
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hx_gateway.host import facts as host_facts
from hx_gateway.pyinfra_ext.facts import (
    Batch,
    FileStates,
    GatewayHost,
    HttpProbes,
    Listeners,
    VenvLitellm,
    shell_command,
)
from hx_gateway.pyinfra_ext.generations import Generations


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


def test_secret_entries_are_keyed_digests_never_the_values(tmp_path: Path):
    text = "# comment\nLITELLM_MASTER_KEY=sk-secret\nEMPTY=\n  SPACED = v a l \n"
    (tmp_path / "litellm.env").write_text(text)
    path = str(tmp_path / "litellm.env")
    found = host_facts.file_states([path], [path], "salt", with_text=False)[path]
    assert found["entries"] == {"LITELLM_MASTER_KEY": hmac.new(b"salt", b"sk-secret", "sha256").hexdigest(),
                                "EMPTY": hmac.new(b"salt", b"", "sha256").hexdigest(),
                                "SPACED": hmac.new(b"salt", b"v a l", "sha256").hexdigest()}
    assert "sk-secret" not in json.dumps(found) and "text" not in found


def test_pyinfra_sees_each_programs_arguments_as_the_facts_arguments():
    # pyinfra binds get_fact's arguments against the signature of `command`.
    assert list(inspect.signature(GatewayHost.command).parameters) == [
        "self", "bind_port", "venv_root", "account", "directories", "unit", "reads", "script"]
    bound = inspect.getcallargs(GatewayHost().command, 4000, "/opt/litellm")
    assert bound["bind_port"] == 4000 and bound["unit"] == ""


def test_a_process_start_is_read_from_proc_in_the_same_clock_as_file_times(tmp_path: Path):
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = host_facts.process_started(child.pid)
        assert started is not None and before - 0.05 <= started <= time.time() + 0.05
        assert child.pid in host_facts.children(os.getpid())
        assert host_facts.loaded_since(os.getpid(), reloads=True) == pytest.approx(started, abs=0.05)
        assert host_facts.loaded_since(os.getpid(), reloads=False) < started
    finally:
        child.kill()
        child.wait()
    assert host_facts.process_started(2**22 + 7) is None and host_facts.loaded_since(0, reloads=False) is None


def test_files_written_after_the_process_read_them_are_stale_and_older_ones_are_not(tmp_path: Path):
    old, new, link = tmp_path / "old.yaml", tmp_path / "new.yaml", tmp_path / "current"
    old.write_text("a")
    new.write_text("b")
    link.symlink_to(tmp_path / "nowhere")  # lstat: the link's own time, whatever it points to
    since = time.time()
    os.utime(old, (since - 60, since - 60))
    os.utime(new, (since + 60, since + 60))
    paths = [str(old), str(new), str(link), str(tmp_path / "missing")]
    assert host_facts.newer_than(paths, since) == [str(new)]
    assert host_facts.newer_than(paths, since - 30) == [str(new), str(link)]
    # Within the slack (a clock tick, two clock readings): not stale.
    os.utime(new, (since + host_facts.STALE_SLACK_S / 2,) * 2)
    assert host_facts.newer_than([str(new)], since) == []


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


def test_without_ss_every_row_is_read_so_a_listener_after_many_connections_is_found(tmp_path: Path):
    (tmp_path / "python3").symlink_to(sys.executable)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(128)
        clients = [socket.create_connection(busy.getsockname()) for _ in range(60)]
        try:
            with socket.socket() as late:
                late.bind(("127.0.0.1", 0))
                late.listen()
                port = late.getsockname()[1]
                found = run(shell_command(Listeners().program(port=port)), env={"PATH": str(tmp_path)})
        finally:
            for client in clients:
                client.close()
    assert [(item["address"], item["port"], item["users"]) for item in found] == [
        ("127.0.0.1", port, [getpass.getuser()])]


def test_listeners_ask_ss_for_processes_only_when_someone_else_holds_the_port(tmp_path: Path, monkeypatch):
    # ss -p reads every process: only worth it to name a squatter.
    fake_ss = tmp_path / "ss"
    fake_ss.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/ss.calls\n"
                       "case \"$1\" in *p*) users=' users:((\"squatter\",pid=1,fd=3))';; esac\n"
                       "echo \"LISTEN 0 5 127.0.0.1:4100 0.0.0.0:*$users uid:0\"\n")
    fake_ss.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    owned = host_facts.listeners(4100, "root")
    assert (tmp_path / "ss.calls").read_text().splitlines() == ["-Htlne ( sport = :4100 )"]
    assert owned == [{"address": "127.0.0.1", "port": 4100, "users": ["root"], "processes": []}]
    foreign = host_facts.listeners(4100, "litellm")
    assert (tmp_path / "ss.calls").read_text().splitlines()[1:] == ["-Htlne ( sport = :4100 )",
                                                                    "-Htlnpe ( sport = :4100 )"]
    assert foreign == [{"address": "127.0.0.1", "port": 4100, "users": ["root"], "processes": ["squatter"]}]


def test_gateway_host_reads_the_host_as_it_is(tmp_path: Path):
    found = host_facts.gateway_host(1, str(tmp_path), ["root", "root"], [str(tmp_path), str(tmp_path / "no")],
                                    "")
    assert found["python"] == platform.python_version() and found["arch"] == platform.machine()
    assert found["glibc"] == platform.libc_ver()[1] and found["hostname"] == socket.gethostname()
    assert found["directories"][str(tmp_path / "no")] is None and found["directories"][str(tmp_path)]["is_dir"]
    assert found["account"]["group_exists"] and found["account"]["user"]["home"] == "/root"
    assert found["installed_venv_id"] == "" and found["venv"] == "" and found["unit"] == {}
    if shutil.which("ip"):
        assert "127.0.0.1" in found["addresses"]


def test_a_deployed_venv_that_cannot_run_counts_as_none_so_the_deploy_builds_it_again(tmp_path: Path):
    """Before: a venv whose interpreter link was gone (python3 removed or upgraded under it) kept its id,
    so every later deploy skipped the install and failed its canary, forever."""
    venv = tmp_path / "venvs" / "abc"
    (venv / "bin").mkdir(parents=True)
    (venv / ".hx-venv-id").write_text("abc\n")
    (tmp_path / "current").symlink_to(venv)
    (venv / "bin" / "litellm").write_text("#!/bin/sh\n")
    (venv / "bin" / "python").symlink_to(sys.executable)
    assert host_facts.gateway_host(1, str(tmp_path))["installed_venv_id"] == "abc"
    (venv / "bin" / "python").unlink()
    (venv / "bin" / "python").symlink_to(tmp_path / "gone" / "python3")  # dangling
    found = host_facts.gateway_host(1, str(tmp_path))
    assert found["installed_venv_id"] == "" and found["venv"] == str(venv) and found["venv_runnable"] is False


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
            self._answer(200, json.dumps({"version": "0.0.0"}).encode())
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


def test_http_probes_answer_status_body_and_time_or_the_error(echo_server: str, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # never used: the probe goes straight to the URL
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    requests = [{"url": f"{echo_server}/api/version"}, {"url": f"{echo_server}/missing"},
                {"url": f"{echo_server}/api/show", "json": {"name": "phi3"}}, {"url": f"{echo_server}/big"},
                {"url": f"http://127.0.0.1:{closed_port}/api/version"},
                {"url": "http://hx-no-such-host.invalid:11434/api/version"}]
    version, missing, posted, big, refused, unresolved = host_facts.http_probes(requests, 2.0)
    assert version["status"] == 200 and json.loads(version["body"]) == {"version": "0.0.0"}
    assert version["addresses"] == ["127.0.0.1"] and version["ms"] > 0 and not version["error"]
    assert missing["status"] == 404 and "not found" in missing["body"]
    assert json.loads(posted["body"]) == {"got": {"name": "phi3"}, "type": "application/json"}
    assert big["status"] == 200 and big["body"] == "x" * 65536
    assert refused["status"] is None and refused["error"].startswith("ConnectionRefusedError")
    assert unresolved["error"].startswith("name does not resolve") and unresolved["ms"] is None


def test_http_probes_run_as_the_host_runs_them(echo_server: str):
    (answer,) = run(shell_command(HttpProbes().program([{"url": f"{echo_server}/api/version"}])))
    assert answer["status"] == 200 and answer["addresses"] == ["127.0.0.1"]


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
        (answer,) = host_facts.http_probes([{"url": f"https://127.0.0.1:{server.server_address[1]}/"}])
    finally:
        server.shutdown()
        server.server_close()
    # A certificate no authority signed is refused: the probe spoke TLS and checked it.
    assert answer["status"] is None and "CERTIFICATE_VERIFY_FAILED" in answer["error"], answer


def test_peer_connections_name_the_remote_ends_and_never_the_listener():
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            peers = host_facts.peer_connections(port)
    if shutil.which("ss"):
        assert peers == ["127.0.0.1"]


def test_a_managed_path_holding_the_wrong_kind_of_thing_is_reported_not_raised(tmp_path: Path):
    """Before: a file where the config directory belongs ended preflight in a NotADirectoryError
    traceback on the host (and pyinfra printed the whole fact program)."""
    (tmp_path / "conf").write_text("not a directory")
    (tmp_path / "dir.yaml").mkdir()
    under_file, a_dir = str(tmp_path / "conf" / "config.yaml"), str(tmp_path / "dir.yaml")
    found = host_facts.file_states([under_file, a_dir], [], "salt", with_text=True)
    assert found == {under_file: {"exists": False}, a_dir: {"exists": True, "error": "IsADirectoryError"}}


def test_a_units_state_lists_its_drop_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fake = tmp_path / "systemctl"
    fake.write_text("#!/bin/sh\nprintf 'MainPID=0\\nActiveState=inactive\\nUnitFileState=enabled\\n"
                    "DropInPaths=/etc/systemd/system/x.service.d/a.conf /run/systemd/system/x.service.d/b.conf\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    state = host_facts._unit_state("x.service", ["/etc/x.conf"])
    assert state == {"active": False, "enabled": True, "stale": [],
                     "drop_ins": ["/etc/systemd/system/x.service.d/a.conf", "/run/systemd/system/x.service.d/b.conf"]}


def test_a_secret_that_is_no_dotenv_file_comes_back_as_its_digest_alone(tmp_path: Path):
    """A private key's base64 lines may end in '=': split as NAME=value they would send pieces of it."""
    key = ("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nAbCdEfGh==\n"
           "-----END PRIVATE KEY-----\n")
    (tmp_path / "tls-key.pem").write_text(key)
    path = str(tmp_path / "tls-key.pem")
    found = host_facts.file_states([path], [path], "salt", with_text=True, dotenv_paths=[])[path]
    assert found["entries"] == {} and "text" not in found and found["sha256"]
    assert "AbCdEfGh" not in json.dumps(found) and "MIGH" not in json.dumps(found)
