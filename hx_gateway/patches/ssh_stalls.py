"""The control node's SSH connections without Nagle stalls (installed by config.py, before pyinfra connects).

paramiko, under pyinfra's SSH connector, sets no socket options. When it sends a small SSH packet
while an earlier one is still unacknowledged, Nagle's algorithm holds the new one until the ACK
comes, and sshd's delayed ACK (40 ms on Linux) waits for something to piggyback on: ~40 ms lost per
such exchange, on a LAN as much as on loopback. paramiko writes whole SSH packets, so TCP_NODELAY
sends each at once and costs nothing in packet count. Measured over SSH+sudo against the lab's sshd
(Debian 12, OpenSSH 9.2): the handshake ~70 -> ~21 ms; a no-op deploy 0.58 -> 0.53 s; twelve facts
(twelve commands) on one host 1.29 -> 0.72 s; a fresh converge 16.5 -> 14.0 s (bench/ssh_stalls.py).

Only on the paramiko version this was read against (MEASURED_ON): on any other,
nothing is replaced. tests/test_ssh_stalls.py proves the option is set on a real connection.
"""

from __future__ import annotations

import socket
from typing import Any

from paramiko import packet

from hx_gateway.patches.measured_patch import replace_if_measured

MEASURED_ON = "4.0.0"

_init = packet.Packetizer.__init__


def _init_without_nagle(self: packet.Packetizer, sock: Any) -> None:
    """paramiko's Packetizer, with TCP_NODELAY on its socket when that is TCP (not a ProxyCommand)."""
    _init(self, sock)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6) \
            and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def install() -> bool:
    """Replace paramiko's Packetizer.__init__ for this process; True when it is (again) in place."""
    return replace_if_measured(packet.Packetizer, "__init__", _init, _init_without_nagle, "paramiko", MEASURED_ON)
