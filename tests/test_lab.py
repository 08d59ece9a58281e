"""The lab is real: systemd in every container, backends reachable by name, counters that move."""

from __future__ import annotations

import json

import pytest

from lab.lab import double_stats, exec_in

pytestmark = pytest.mark.lab

PROBE = "import json,sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
stats = double_stats


def test_systemd_is_pid1_and_running_everywhere(lab):
    for host in lab.hosts():
        assert exec_in(host.name, "cat", "/proc/1/comm") == "systemd"
        assert exec_in(host.name, "systemctl", "is-system-running", check=False) in ("running", "degraded")


def test_gateway_reaches_both_backends_by_name_and_counters_move(lab):
    for backend in ("hx-llm01", "hx-llm02"):
        before = stats(backend)["counts"].get("GET /api/version", 0)
        answer = json.loads(exec_in("hx-api", "python3", "-c", PROBE, f"http://{backend}:11434/api/version"))
        assert answer["version"]
        assert stats(backend)["counts"]["GET /api/version"] == before + 1
        assert stats(backend)["host"] == backend


def test_up_twice_is_fine(lab):
    lab.up()
    assert [row["state"] for row in lab.status()] == ["running"] * len(lab.hosts())
