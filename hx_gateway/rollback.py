"""Manual rollback: put a kept generation back on every gateway host, prove it, write evidence.

    python -m hx_gateway.rollback inventory.py                 the previous generation
    python -m hx_gateway.rollback inventory.py --to NAME       a named one (see --list)
    python -m hx_gateway.rollback inventory.py --list          what each host keeps

Restores config, env file, unit and venv together, restarts, waits for health and the smoke check,
keeps the restored state as the newest generation (so the next deploy starts from it), then runs
every post-deploy check. Exits non-zero when a host could not be restored or a check fails.
"""

from __future__ import annotations

import argparse
import sys

from pyinfra.api import Host
from pyinfra.api.connect import disconnect_all
from pyinfra.context import ctx_host

from hx_gateway.model.plan import gateway_plan
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.settings import Settings
from hx_gateway.proof.checks import Check
from hx_gateway.pyinfra_ext.generations import run_tool, spec_of
from hx_gateway.pyinfra_ext.health import health_problem, restart_service
from hx_gateway.verify import add_group_data_option, load_state, prove, refused


def roll_back_host(gateway: Host, settings: Settings, to: str) -> Check:
    """Restore one host (also pyinfra's current host); the outcome as a check for the evidence."""
    spec = spec_of(settings)
    restored = run_tool(spec, "restore", to)
    name = restored.get("restored")
    if not name:
        return Check(gateway.name, "rollback_restored_a_generation", False, f"generation {to}",
                     restored.get("why", "nothing restored"), "python -m hx_gateway.rollback INVENTORY --list")
    restart_service(settings)
    problem = health_problem(settings)
    if not problem:
        run_tool(spec, "snapshot", f"rolled back to {name}")
    return Check(gateway.name, "rollback_restored_a_generation", not problem, f"generation {to} serving",
                 f"{name} ({restored['created']}) " + (problem or "serving, health and smoke check passed"),
                 f"journalctl -u {settings.service_name} -n 50 on the host", figures={"generation": name})


def list_generations(inventory: str, group_data: list[str]) -> int:
    state = load_state(inventory, group_data)
    try:
        for gateway in state.inventory.get_group("litellm", []):
            ctx_host.set(gateway)
            status = run_tool(spec_of(gateway_plan(gateway.data.dict(), gateway.name).settings), "status")
            for gen in status["generations"]:
                live = "  <- deployed" if gen["digest"] == status["live"] else ""
                print(f"{gateway.name}  {gen['name']}  {gen['reason']}{live}")
    finally:
        disconnect_all(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Roll the gateway back to a kept generation")
    parser.add_argument("inventory")
    parser.add_argument("--to", default="previous", help="a generation name; default: the previous one")
    parser.add_argument("--list", action="store_true", help="list the generations each host keeps")
    parser.add_argument("--evidence-dir", default=".evidence")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    try:
        if args.list:
            return list_generations(args.inventory, args.group_data)
        return prove(args.inventory, args.evidence_dir, action="rollback",
                     before_checks=lambda gateway, plan: [roll_back_host(gateway, plan.settings, args.to)],
                     group_data=args.group_data)
    except Refusal as refusal:
        return refused(refusal)


if __name__ == "__main__":
    sys.exit(main())
