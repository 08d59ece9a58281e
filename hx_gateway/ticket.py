"""A change ticket from a dry run: what will change on which host, the restart it causes, how to roll
back, and what will prove it. Never changes a host (it is `pyinfra --dry`).

    python -m hx_gateway.ticket inventory.py --out change-ticket.md     (also writes change-ticket.json)

The markdown is for the ticket system; the JSON twin carries the same facts for tools. Secret files
appear as "contents changed (hidden)" with the names of the keys that changed, never a value.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hx_gateway.model.fleet import Fleet
from hx_gateway.model.plan import HostPlan, run_plans
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.settings import SettingsError
from hx_gateway.proof.checks import VALIDATION_PLAN
from hx_gateway.proof.fleet import fleet_validation_plan
from hx_gateway.proof.monitor import MONITOR_VALIDATION_PLAN
from hx_gateway.proof.redaction import redact, redact_keys
from hx_gateway.proof.tls import CA_VALIDATION_PLAN, TLS_VALIDATION_PLAN
from hx_gateway.proof.usage import USAGE_VALIDATION_PLAN
from hx_gateway.proof.webui import WEBUI_VALIDATION_PLAN
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.summary import plan_verdict, roll_summary
from hx_gateway.venv_artifacts import builder_among, shipped, source_words
from hx_gateway.verify import add_group_data_option, load_inventory, refused, writable_directory

REPO = Path(__file__).resolve().parent.parent


class DryRunFailed(RuntimeError):
    pass


def dry_run(inventory: str, pyinfra_options: list[str]) -> tuple[list[dict], list[dict]]:
    """pyinfra's plan (its --json) and the operations' own change records, from one dry run."""
    with tempfile.TemporaryDirectory() as scratch:
        log = os.path.join(scratch, "changes.jsonl")
        env = {**os.environ, changes.CHANGE_LOG_ENV: log}
        pyinfra = str(Path(sys.executable).parent / "pyinfra")
        result = subprocess.run([pyinfra, "--dry", "--diff", "--json", *pyinfra_options, inventory, "deploy.py"],
                                cwd=REPO, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise DryRunFailed(redact_keys(result.stderr[-4000:] or result.stdout[-4000:]))
        return json.loads(result.stdout)["plan"], changes.read(log)


def scope_of(inventory: str, group_data: list[str]) -> tuple[dict[str, list[str]], list[str], dict[str, str]]:
    """Hosts with their groups, every secret value the deploy would use (to redact, defence in depth),
    and the checks verify will run afterwards."""
    state = load_inventory(inventory, group_data)
    hosts = {h.name: sorted(set(h.groups)) for h in state.inventory}
    try:
        plans = run_plans(state)
    except SettingsError:
        return hosts, [], dict(VALIDATION_PLAN)  # the dry run itself reports it
    secrets = [v for plan in plans.values() if plan.gateway for v in plan.gateway.secrets.all_values()]
    return hosts, secrets, validation_of(plans)


def validation_of(plans: Mapping[str, HostPlan]) -> dict[str, str]:
    """The checks verify runs after the deploy: the gateway's, and those of the parts this service has."""
    gateways = [plan.gateway for plan in plans.values() if plan.gateway]
    fleet = gateways[0].fleet if gateways else Fleet()
    return {**VALIDATION_PLAN, **fleet_validation_plan(fleet, caches=any(g.settings.cached_aliases for g in gateways)),
            **(TLS_VALIDATION_PLAN if any(g.tls for g in gateways) or any(lb.certificate for lb in fleet.lbs) else {}),
            **(CA_VALIDATION_PLAN if any(g.settings.ca_bundle for g in gateways) else {}),
            **(USAGE_VALIDATION_PLAN if fleet.db else {}), **(MONITOR_VALIDATION_PLAN if fleet.monitor else {}),
            **(WEBUI_VALIDATION_PLAN if any(plan.webui for plan in plans.values()) else {})}


def rollback_plan(records: list[dict], inventory: str) -> str:
    kept = [r for r in records if r["kind"] == "rollback"]
    if not kept:
        return ("Nothing is deployed yet, so nothing to restore: to back out, `systemctl disable --now litellm` "
                "on the host.")
    generation = kept[0]["subject"]
    which = ("the generation this run keeps before changing anything" if generation.startswith("(")
             else f"generation `{generation}`")
    return (f"Automatic: if `/health/liveliness` or the smoke check fails after the restart, the deploy restores "
            f"{which} (config, env file, unit, venv), restarts and fails the run. Manual: "
            f"`python -m hx_gateway.rollback {inventory}` (or `--to NAME`; `--list` shows what is kept).")


def roll_of(records: list[dict]) -> str | None:
    """The rolling restart across the gateways that restart (their records carry the roll's order)."""
    rolling = [r for r in records if r["kind"] == "restart" and r.get("roll_order")]
    if not rolling:
        return None
    return roll_summary(rolling[0]["roll_order"], {r["roll_member"] for r in rolling}, rolling[0]["balancers"])


def venv_source(record: dict, records: list[dict]) -> str:
    """What a gateway does for its venv: keeps it, builds it (the first by name of those that need an
    artifact the cache lacks) or receives it."""
    if "artifact" not in record:
        return record["summary"]
    sources = [r for r in records if r["kind"] == "venv-source"]
    needing = [r["host"] for r in sources if r.get("artifact") == record["artifact"]]
    builder = "" if record["cached"] else builder_among(needing)
    ships = shipped(len({r["host"] for r in sources}))
    return f"{record['summary']}: {source_words(record['host'], builder, ships)}"


def build_ticket(inventory: str, plan: list[dict], records: list[dict], hosts: dict[str, list[str]],
                 validation: dict[str, str]) -> dict[str, Any]:
    names = sorted(hosts)
    per_host = {}
    for host in names:
        mine = [r for r in records if r["host"] == host]
        restart = [r["summary"] for r in mine if r["kind"] == "restart"]
        venv = [venv_source(r, records) for r in mine if r["kind"] == "venv-source"]
        per_host[host] = {
            "groups": hosts[host],
            "operations": [op["name"] for op in plan if host in op["hosts_with_change"]],
            "follow_up_operations": [op["name"] for op in plan if host in op["hosts_with_conditional_change"]],
            "details": [r for r in mine if r["kind"] in ("file", "venv", "packages", "database", "migration")],
            "restart": restart[0] if restart else "no restart",
            "venv": venv[0] if venv else None,  # a gateway builds, receives or keeps its venv
            "degraded": [r["summary"] for r in mine if r["kind"] == "degraded"],
            "rollback": rollback_plan(mine, inventory) if "litellm" in hosts[host] else "not a gateway host",
        }
    groups = sorted({g for gs in hosts.values() for g in gs})
    return {
        "title": "hx-gateway: LiteLLM gateway deploy",
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "inventory": inventory,
        "apply_with": f"pyinfra {inventory} deploy.py",
        "verdict": plan_verdict(plan, names, {r["host"]: r["subject"].split(", ") for r in records
                                              if r["kind"] == "degraded"}),
        "no_changes": not any(op["hosts_with_change"] for op in plan),
        "scope": {"hosts": names, "groups": groups},
        "hosts": per_host,
        "roll": roll_of(records),
        "validation": [{"check": name, "proves": what} for name, what in validation.items()],
        "verify_with": f"python -m hx_gateway.verify {inventory}",
    }


def render_markdown(ticket: dict[str, Any]) -> str:
    lines = [f"# Change ticket: {ticket['title']}", "",
             f"- generated: {ticket['generated']} from a dry run (`pyinfra --dry`): nothing was changed",
             f"- apply with: `{ticket['apply_with']}`", f"- **{ticket['verdict']}**", "",
             "## Scope", "", f"- hosts: {', '.join(ticket['scope']['hosts'])}",
             f"- groups: {', '.join(ticket['scope']['groups'])}", "", "## Planned changes", ""]
    for host, plan in ticket["hosts"].items():
        lines += [f"### {host} ({', '.join(plan['groups'])})", ""]
        lines += [f"**DEGRADED**: {why}\n" for why in plan["degraded"]]
        lines += [f"- venv: {plan['venv']}", ""] if plan["venv"] else []
        if not plan["operations"]:
            lines += ["No changes.", ""]
            continue
        lines += [f"- {op}" for op in plan["operations"]]
        lines += [f"- then, if needed: {op}" for op in plan["follow_up_operations"]]
        lines.append("")
        for item in plan["details"]:
            lines.append(f"**{item['subject']}**: {item['summary']}")
            if item.get("diff"):
                lines += ["", "```diff", item["diff"].rstrip("\n"), "```"]
            lines.append("")
    lines += ["## Restart impact", ""]
    lines += [f"- {host}: {plan['restart']}" for host, plan in ticket["hosts"].items() if plan["operations"]]
    lines += [f"- {ticket['roll']}"] if ticket["roll"] else []
    lines += ["", "## Rollback plan", ""]
    lines += [f"- {host}: {plan['rollback']}" for host, plan in ticket["hosts"].items()
              if plan["operations"] and "litellm" in plan["groups"]]
    lines += ["", "## Validation plan", "", f"After the deploy, `{ticket['verify_with']}` runs these checks "
              "(each failure names the host, the check and the fix) and writes the evidence bundle:", ""]
    lines += [f"- `{v['check']}`: {v['proves']}" for v in ticket["validation"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a change ticket (markdown + JSON) from a dry run")
    parser.add_argument("inventory")
    parser.add_argument("--out", required=True, type=Path, help="the markdown file; the JSON twin goes beside it")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    options = [arg for path in args.group_data for arg in ("--group-data", path)]
    try:
        writable_directory(str(args.out.parent), "--out")
        hosts, secrets, validation = scope_of(args.inventory, args.group_data)
        plan, records = dry_run(args.inventory, options)
    except Refusal as refusal:
        return refused(refusal)
    except DryRunFailed as failed:
        print(f"the dry run failed; no ticket written:\n{failed}", file=sys.stderr)
        return 1
    ticket = build_ticket(args.inventory, plan, records, hosts, validation)
    markdown = redact(redact_keys(render_markdown(ticket)), secrets)
    twin = redact(redact_keys(json.dumps(ticket, indent=2)), secrets)
    args.out.write_text(markdown)
    args.out.with_suffix(".json").write_text(twin + "\n")
    print(f"{ticket['verdict']}\nticket: {args.out} (+ {args.out.with_suffix('.json').name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
