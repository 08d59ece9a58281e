"""Destroy: take the gateway off its hosts as carefully as the deploy put it on, and prove them clean.

    python -m hx_gateway.destroy INVENTORY [--limit HOST] [--keep-data] [--dry] [-y]

For each gateway host (group `litellm`) and Open WebUI host (group `webui`; `--limit` picks some):
stop and disable the unit, remove every file, venv, cache, generation, Open WebUI's data and the
account the deploy created (hx_gateway/host/destroy.py says exactly what, and what it never
touches). The backends' Ollama is never touched. `--keep-data` keeps the generations, with every copy
of a key wiped from them, and Open WebUI's data (its database: accounts and chats). `--dry` prints the removals and
changes nothing: a real run removes exactly what it printed (both compute the list from the host
the same way). A real run asks first unless `-y`. Afterwards every host is proven clean and the
evidence bundle written, as verify does; the exit code says whether every host is clean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pyinfra.api import Host
from pyinfra.api.connect import disconnect_all
from pyinfra.context import ctx_host

from hx_gateway.host import destroy as host_destroy
from hx_gateway.model.refusal import Refusal
from hx_gateway.model.settings import Settings, SettingsError, load_settings
from hx_gateway.model.webui import load_webui
from hx_gateway.proof.checks import Check
from hx_gateway.proof.evidence import print_outputs, write_evidence
from hx_gateway.pyinfra_ext.facts import shell_command
from hx_gateway.pyinfra_ext.generations import STORE
from hx_gateway.pyinfra_ext.remote import run_as_root
from hx_gateway.pyinfra_ext.render import CACHE_ON_TARGET, files_read, managed_files
from hx_gateway.verify import add_group_data_option, load_inventory, load_state, writable_directory

HOST_DESTROY = Path(host_destroy.__file__).read_text()


class DestroyError(RuntimeError):
    pass


def spec_of(s: Settings, keep_data: bool) -> dict[str, Any]:
    from tasks.monitor.node import metrics_file, metrics_unit  # the monitoring component owns its unit

    files = files_read(s)  # with what a part switched off may have left (TLS files, the CA)
    return {
        "unit": f"{s.service_name}.service", "unit_path": managed_files(s)["unit"].path, "port": s.bind_port,
        # The gateway's metrics process (with a `monitor` host): stopped first, its unit file removed.
        "companions": [metrics_unit(s)],
        "files": [*(f.path for f in files), metrics_file(s).path], "secret_files": [f.path for f in files if f.secret],
        "config_dir": s.config_dir, "venv_root": s.venv_root, "cache_dir": CACHE_ON_TARGET,
        "store": STORE, "state_dir": str(Path(STORE).parent), "keep_data": keep_data,
        "account": {"user": s.service_user, "group": s.service_group},
    }


def on_host(spec: dict[str, Any], command: str) -> Any:
    """Run the host program on pyinfra's current host, as root."""
    ok, output = run_as_root(shell_command((HOST_DESTROY, [json.dumps(spec), command])))
    if not ok:
        raise DestroyError(f"destroy {command} failed: {output.stderr[-1500:]}")
    return json.loads(output.stdout)


DESTROYED_GROUPS = ("litellm", "webui")


def selected_gateways(inventory: str, limit: list[str], group_data: list[str]) -> list[str]:
    """The gateway and Open WebUI hosts to destroy, refusing a --limit that names none of them."""
    state = load_inventory(inventory, group_data)
    gateways = list(dict.fromkeys(h.name for g in DESTROYED_GROUPS for h in state.inventory.get_group(g, [])))
    if not limit:
        return gateways
    short = {name: name.split("/")[-1] for name in gateways}
    unknown = [want for want in limit if not any(want in (name, short[name]) for name in gateways)]
    if unknown:
        raise DestroyError(f"--limit {', '.join(unknown)}: no such gateway or Open WebUI host in {inventory} (they "
                           f"are: {', '.join(gateways) or 'none'}); nothing was changed")
    return [name for name in gateways if name in limit or short[name] in limit]


def host_specs(host: Host, keep_data: bool) -> tuple[list[dict[str, Any]], Settings | None]:
    """What to take off this host (its gateway's, its Open WebUI's), and its gateway settings if any."""
    from tasks.webui import destroy_spec  # the Open WebUI component owns its files

    data, groups = host.data.dict(), {g for g in DESTROYED_GROUPS if host in host.inventory.get_group(g, [])}
    settings = load_settings(data, host.name) if "litellm" in groups else None
    specs = [spec_of(settings, keep_data)] if settings else []
    if "webui" in groups:
        webui, problems = load_webui(host.name, data)
        if problems or webui is None:
            raise SettingsError(problems)
        specs.append(destroy_spec(webui, keep_data))
    return specs, settings


def confirmed(hosts: list[str]) -> bool:
    if not sys.stdin.isatty():
        print("destroy needs a confirmation: run it in a terminal, or add -y", file=sys.stderr)
        return False
    answer = input(f"Destroy the gateway on {', '.join(hosts)}? Type 'destroy' to go ahead: ")
    return answer.strip() == "destroy"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Take the gateway off its hosts and prove them clean")
    parser.add_argument("inventory")
    parser.add_argument("--limit", action="append", default=[], help="a gateway host (repeatable)")
    parser.add_argument("--keep-data", action="store_true", help="keep the generations (keys wiped from them)")
    parser.add_argument("--dry", action="store_true", help="print the removals, change nothing")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--evidence-dir", default=".evidence")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    try:
        names = selected_gateways(args.inventory, args.limit, args.group_data)
        if not args.dry:  # a dry run writes no evidence
            writable_directory(args.evidence_dir, "--evidence-dir")
    except (DestroyError, Refusal) as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    state = load_state(args.inventory, args.group_data)
    hosts: dict[str, tuple[Host, list[dict[str, Any]], Settings | None]] = {}
    try:
        for name in names:
            host = state.inventory.get_host(name)
            hosts[name] = (host, *host_specs(host, args.keep_data))
        plans = {}
        for name, (host, specs, _) in hosts.items():
            ctx_host.set(host)
            plans[name] = [action for spec in specs for action in on_host(spec, "plan")]
            print(f"{name}: {len(plans[name])} removal(s)" + ("" if plans[name] else " (nothing of the deploy here)"))
            for action in plans[name]:
                print(f"    {action['action']}: {action['target']}")
        if args.dry:
            print("dry run: nothing was changed")
            return 0
        if not args.yes and not confirmed(list(hosts)):
            print("nothing was changed", file=sys.stderr)
            return 1
        checks: list[Check] = []
        for name, (host, specs, _) in hosts.items():
            ctx_host.set(host)
            done = [action for spec in specs for action in on_host(spec, "apply")]
            checks.append(Check(name, "removed_what_was_planned", done == plans[name],
                                f"{len(plans[name])} removal(s)", f"{len(done)} carried out",
                                "run the destroy again: every removal is idempotent", {"removed": done}))
            checks += [Check(name, f"{c['check']}[{spec['unit']}]" if len(specs) > 1 else c["check"], c["ok"],
                             "nothing of the deploy left", c["seen"],
                             "run the destroy again; what is named here is still on the host")
                       for spec in specs for c in on_host(spec, "proof")]
    except (DestroyError, SettingsError) as error:
        print(f"{error}", file=sys.stderr)
        return 1
    finally:
        disconnect_all(state)
    bundle = write_evidence(Path(args.evidence_dir), checks, [s for _, _, s in hosts.values() if s], [],
                            action="destroy")
    print_outputs(checks, [], bundle)
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
