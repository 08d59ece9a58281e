"""Manual rollback: put a kept generation back on every gateway host (or the Open WebUI host), prove
it, write evidence.

    python -m hx_gateway.rollback inventory.py                 the previous generation
    python -m hx_gateway.rollback inventory.py --to NAME       a named one (see --list)
    python -m hx_gateway.rollback inventory.py --list          what each host keeps
    ... --component webui                                      Open WebUI's generations instead

Restores config, env file, unit and venv together, restarts, waits for health (and, for a gateway,
the smoke check), keeps the restored state as the newest generation (so the next deploy starts from
it), then runs every post-deploy check. Exits non-zero when a host could not be restored or a check
fails. Open WebUI's data (its database) is never part of a generation: a rollback keeps it.
"""

from __future__ import annotations

import argparse
import sys

from pyinfra.api import Host
from pyinfra.api.connect import disconnect_all
from pyinfra.context import ctx_host

from hx_gateway.model.plan import WebuiPlan, gateway_plan, run_plans
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.settings import Settings
from hx_gateway.proof.checks import Check
from hx_gateway.pyinfra_ext.generations import run_tool, spec_of
from hx_gateway.pyinfra_ext.health import health_problem, restart_service
from hx_gateway.pyinfra_ext.remote import run_as_root
from hx_gateway.verify import add_group_data_option, load_state, prove, refused
from tasks import webui

COMPONENTS = ("gateway", "webui")
LIST_HINT = "python -m hx_gateway.rollback INVENTORY --list"


def roll_back_host(gateway: Host, settings: Settings, to: str) -> Check:
    """Restore one host (also pyinfra's current host); the outcome as a check for the evidence."""
    spec = spec_of(settings)
    restored = run_tool(spec, "restore", to)
    name = restored.get("restored")
    if not name:
        return Check(gateway.name, "rollback_restored_a_generation", False, f"generation {to}",
                     restored.get("why", "nothing restored"), LIST_HINT)
    restart_service(settings)
    problem = health_problem(settings)
    if not problem:
        run_tool(spec, "snapshot", f"rolled back to {name}")
    return Check(gateway.name, "rollback_restored_a_generation", not problem, f"generation {to} serving",
                 f"{name} ({restored['created']}) " + (problem or "serving, health and smoke check passed"),
                 f"journalctl -u {settings.service_name} -n 50 on the host", figures={"generation": name})


def roll_back_webui(webui_host: Host, plan: WebuiPlan, to: str) -> Check:
    """Restore Open WebUI's files and venv (its data stays), restart it where the restored unit serves,
    wait for /health; the outcome as a check for the evidence."""
    spec = webui.generation_spec(plan)
    restored = run_tool(spec, "restore", to)
    name = restored.get("restored")
    if not name:
        return Check(webui_host.name, "webui_rollback_restored_a_generation", False, f"generation {to}",
                     restored.get("why", "nothing restored"), LIST_HINT + " --component webui")
    run_as_root(f"systemctl daemon-reload && systemctl restart {webui.UNIT}")
    _, unit = run_as_root(f"cat {webui.FILES['unit'].path}")
    where = webui.served_at("\n".join(unit.stdout_lines))
    ok, output = run_as_root(webui.health_check(*where)) if where else (False, None)
    if ok:
        run_tool(spec, "snapshot", f"rolled back to {name}")
    problem = "" if ok else (output.stderr.strip()[-500:] if output else "the restored unit names no address")
    return Check(webui_host.name, "webui_rollback_restored_a_generation", ok, f"generation {to} serving",
                 f"{name} ({restored['created']}) " + (problem or "serving, /health answers"),
                 f"journalctl -u {webui.UNIT} on the host", figures={"generation": name})


def specs(state, component: str) -> list[tuple[Host, dict]]:
    """Each host of the component with its generation store's spec."""
    if component == "webui":
        plans = run_plans(state)
        return [(h, webui.generation_spec(plans[h.name].webui)) for h in state.inventory.get_group("webui", [])
                if plans[h.name].webui]
    gateways = state.inventory.get_group("litellm", [])
    return [(h, spec_of(gateway_plan(h.data.dict(), h.name).settings)) for h in gateways]


def list_generations(inventory: str, group_data: list[str], component: str) -> int:
    state = load_state(inventory, group_data)
    try:
        for each, spec in specs(state, component):
            ctx_host.set(each)
            status = run_tool(spec, "status")
            for gen in status["generations"]:
                live = "  <- deployed" if gen["digest"] == status["live"] else ""
                print(f"{each.name}  {gen['name']}  {gen['reason']}{live}")
    finally:
        disconnect_all(state)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Roll the gateway back to a kept generation")
    parser.add_argument("inventory")
    parser.add_argument("--to", default="previous", help="a generation name; default: the previous one")
    parser.add_argument("--list", action="store_true", help="list the generations each host keeps")
    parser.add_argument("--component", choices=COMPONENTS, default="gateway",
                        help="whose generations: the gateways' (default) or Open WebUI's")
    parser.add_argument("--evidence-dir", default=".evidence")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    try:
        if args.list:
            return list_generations(args.inventory, args.group_data, args.component)
        if args.component == "webui":
            return prove(args.inventory, args.evidence_dir, action="rollback", group_data=args.group_data,
                         before_webui=lambda each, plan: [roll_back_webui(each, plan, args.to)])
        return prove(args.inventory, args.evidence_dir, action="rollback",
                     before_checks=lambda gateway, plan: [roll_back_host(gateway, plan.settings, args.to)],
                     group_data=args.group_data)
    except Refusal as refusal:
        return refused(refusal)


if __name__ == "__main__":
    sys.exit(main())
