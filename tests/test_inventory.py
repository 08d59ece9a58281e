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


def test_the_tools_read_the_extra_group_data_the_deploy_was_given(tmp_path):
    """Breakage guarded: verify / rollback / destroy / ticket planning with the repository's defaults
    while the deploy ran with `--group-data DIR` (they would check, or restore, the wrong settings)."""
    (tmp_path / "litellm.py").write_text("request_timeout = 55\n")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        plain = load_inventory("inventory.py")
        extra = load_inventory("inventory.py", [str(tmp_path)])
    finally:
        os.chdir(cwd)
    (gateway,) = extra.inventory.get_group("litellm")
    assert gateway.data.request_timeout == 55
    assert plain.inventory.get_group("litellm")[0].data.request_timeout == 30
