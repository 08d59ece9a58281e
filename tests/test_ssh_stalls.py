"""hx_gateway.patches.ssh_stalls: every SSH connection paramiko makes leaves Nagle off, and config.py (which
pyinfra reads before it connects) and the CLIs' connect path install it."""

from __future__ import annotations

import runpy
import socket
from pathlib import Path

import pytest
from paramiko import packet

from hx_gateway import verify
from hx_gateway.patches import measured_patch, ssh_stalls

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def pristine(monkeypatch: pytest.MonkeyPatch) -> None:
    """paramiko's own Packetizer for the test; whatever was installed comes back afterwards."""
    monkeypatch.setattr(packet.Packetizer, "__init__", ssh_stalls._init)


def nodelay_of(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_tcp_connection_gets_nodelay(pristine: None):
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname()) as before, socket.create_connection(
                server.getsockname()) as after:
            packet.Packetizer(before)
            assert nodelay_of(before) == 0  # paramiko's own: Nagle stays on
            assert ssh_stalls.install() is True
            packet.Packetizer(after)
            assert nodelay_of(after) != 0


def test_a_socket_that_is_not_tcp_is_left_alone(pristine: None):
    ssh_stalls.install()
    left, right = socket.socketpair()  # what a ProxyCommand-like channel looks like to paramiko
    with left, right:
        packet.Packetizer(left)  # no TCP option to set, and no error


def test_only_the_measured_paramiko_version_is_patched(pristine: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(measured_patch, "version", lambda _: "4.1.0")
    assert ssh_stalls.install() is False and packet.Packetizer.__init__ is ssh_stalls._init


def test_pyinfras_config_file_installs_it(pristine: None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "config.py"))  # the pyinfra CLI executes it before connecting
    assert packet.Packetizer.__init__ is ssh_stalls._init_without_nagle


def test_the_clis_connect_with_it(pristine: None, monkeypatch: pytest.MonkeyPatch):
    seen = []
    monkeypatch.setattr(verify, "load_inventory", lambda *_: "state")
    monkeypatch.setattr(verify, "connect_all", lambda state: seen.append(packet.Packetizer.__init__))
    assert verify.load_state("inventory.py") == "state"
    assert seen == [ssh_stalls._init_without_nagle]


def test_the_pinned_paramiko_is_the_measured_one():
    pinned = next(line.split("==")[1].split()[0] for line in (REPO / "requirements.txt").read_text().splitlines()
                  if line.startswith("paramiko=="))
    assert pinned == ssh_stalls.MEASURED_ON
