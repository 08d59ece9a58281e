"""The production inventory names the seed hosts, reached with sudo; loading it connects to nothing."""

from __future__ import annotations

import os

from conftest import REPO

from hx_gateway.verify import load_inventory


def test_production_inventory_names_the_seed_hosts_with_sudo():
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        state = load_inventory("inventory.py")  # no connect: nothing here may reach these hosts
    finally:
        os.chdir(cwd)
    groups = {name: sorted(h.name for h in state.inventory.get_group(name)) for name in ("litellm", "llm")}
    assert groups == {"litellm": ["hx-api-server.dev-test.hana-x.ai"],
                      "llm": ["hx-llm01-server.dev-test.hana-x.ai", "hx-llm02-server.dev-test.hana-x.ai"]}
    assert all(host.data.get("_sudo") is True for host in state.inventory)
    assert all(not host.connected for host in state.inventory)
