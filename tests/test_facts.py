"""The facts' programs run here against scratch files (they are plain python3 on the host): a Batch
answers exactly what each fact answers on its own, in order, in one process."""

from __future__ import annotations

import getpass
import inspect
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hx_gateway.facts import Batch, FileStates, GatewayHost, Listeners, VenvLitellm, shell_command
from hx_gateway.generations import Generations


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


def test_venv_litellm_asks_the_venvs_own_interpreter_and_is_empty_without_one(tmp_path: Path):
    assert run(shell_command(VenvLitellm().program(venv_root=str(tmp_path)))) == ""
    interpreter = tmp_path / "venvs" / "a" / "bin" / "python"
    interpreter.parent.mkdir(parents=True)
    interpreter.write_text("#!/bin/sh\necho 1.106.2\n")
    interpreter.chmod(0o755)
    (tmp_path / "current").symlink_to(tmp_path / "venvs" / "a")
    assert run(shell_command(VenvLitellm().program(venv_root=str(tmp_path)))) == "1.106.2"
