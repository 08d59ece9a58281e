"""Prove the deploy: post-deploy facts from every host, client checks, and the evidence bundle.

    python -m hx_gateway.verify inventory.py        (or lab/inventory.py)

Exits 0 when every check passes (healthy), 2 when only the checks of backends that are down fail
(degraded: the gateway serves through the others), 1 otherwise; every failure names the host, the
check and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pyinfra.api import Config, Host, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.context import ctx_host, ctx_inventory, ctx_state
from pyinfra.facts.files import FindInFile
from pyinfra_cli.inventory import make_inventory

from hx_gateway import lock
from hx_gateway.model.plan import GatewayPlan, WebuiPlan, run_plans
from hx_gateway.model.refusal import Refusal
from hx_gateway.patches import ssh_stalls
from hx_gateway.proof.checks import Check, backend_host_checks, backend_of, client_checks, gateway_host_checks
from hx_gateway.proof.evidence import overall, print_outputs, write_evidence
from hx_gateway.proof.fleet import balancer_checks, balancer_client_checks, cache_checks, redis_checks
from hx_gateway.proof.monitor import targets_check
from hx_gateway.proof.tls import TRUST_STORE, ca_marker, tls_checks, trust_store_check
from hx_gateway.proof.usage import rows_of_call, usage_check
from hx_gateway.proof.webui import webui_checks
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import (
    GatewayHost,
    HttpProbes,
    Listeners,
    PeerConnections,
    PrometheusTargets,
    RedisProbe,
    VenvLitellm,
    VenvPolicy,
)
from hx_gateway.pyinfra_ext.remote import run_as_root

EXIT_CODES = {"healthy": 0, "failed": 1, "degraded": 2}


def existing_directory(path: str) -> str:
    """A --group-data that is no directory would be skipped without a word (pyinfra's way): the tool
    would then check other settings than the ones deployed."""
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{path}: no such directory")
    return path


def add_group_data_option(parser: argparse.ArgumentParser) -> None:
    """Every tool reads the hosts' data as the deploy did: pass the same --group-data as to pyinfra."""
    parser.add_argument("--group-data", action="append", default=[], metavar="DIR", type=existing_directory,
                        help="more group data, as given to pyinfra (repeatable)")


def load_inventory(inventory_file: str, group_data: Sequence[str] = ()) -> State:
    """The same inventory and group data `pyinfra [--group-data DIR] INVENTORY deploy.py` would see,
    not connected. An inventory with no host (a mistyped path: pyinfra only warns) is refused."""
    if inventory_file.endswith(".py") and not os.path.isfile(inventory_file):
        # pyinfra would look the path up as a host name (a DNS query, or a traceback for a long path)
        raise Refusal(f"{inventory_file}: no hosts (no such file); pass the inventory file you give pyinfra, "
                      f"e.g. inventory.py")
    state = State(check_for_changes=False)
    state.cwd = os.getcwd()
    ctx_state.set(state)
    inventory = make_inventory(inventory_file, cwd=state.cwd, group_data_directories=list(group_data) or None)
    if not len(inventory):
        raise Refusal(f"{inventory_file}: no hosts (no such file, or it lists none); pass the inventory file "
                      f"you give pyinfra, e.g. inventory.py")
    ctx_inventory.set(inventory)
    state.init(inventory, Config())
    return state


def load_state(inventory_file: str, group_data: Sequence[str] = ()) -> State:
    """The inventory, connected (over SSH without Nagle stalls, as config.py does for the CLI)."""
    return connected(load_inventory(inventory_file, group_data))


def connected(state: State) -> State:
    ssh_stalls.install()
    connect_all(state)
    return state


def writable_directory(path: str, option: str) -> Path:
    """The directory a tool writes into, made now: a path it cannot write is refused before any host
    is connected to, not found after the checks ran."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Refusal(f"{option} {path}: cannot be created ({error.strerror}); choose a directory you can "
                      f"write") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise Refusal(f"{option} {path}: not writable by this user; choose a directory you can write")
    return Path(path)


def refused(refusal: Refusal) -> int:
    """A tool's run refused before it changed or proved anything: a message, no traceback; exit 1."""
    print(f"refused: {refusal}", file=sys.stderr)
    return 1


def verify_gateway(state: State, gateway, plan: GatewayPlan) -> list[Check]:
    s = plan.settings
    facts, installed_version, probes, venv_policy = read_together(  # one round trip
        (GatewayHost, {"bind_port": s.bind_port, "venv_root": s.venv_root, "unit": f"{s.service_name}.service"}),
        (VenvLitellm, {"venv_root": s.venv_root}),
        (HttpProbes, {"requests": [{"url": f"{b}/api/version"} for b in s.backends]}),
        (VenvPolicy, {"venv_root": s.venv_root, "policy": lock.policy()}),
    )
    lock_version = plan.venv_for(facts).version
    checks = gateway_host_checks(gateway.name, s, facts["listeners"], facts["unit"].get("active", False),
                                 facts["unit"].get("enabled", False), installed_version, lock_version, probes,
                                 venv_policy)
    backend_hosts = {backend_of(h.name, s.backends): h for h in state.inventory.get_group("llm", [])}

    def connections_per_backend() -> dict[str, int]:
        gateway_addresses = set(facts.get("addresses", []))
        counts = {}
        for backend, host in backend_hosts.items():
            if backend is None:
                continue
            port = host.data.get("ollama_port", 11434)
            # A fresh reading per gateway's burst, not one cached from an earlier gateway.
            peers = host.get_fact(PeerConnections, port=port, sample=os.urandom(4).hex())
            counts[backend] = sum(1 for p in peers if p in gateway_addresses)
        return counts

    checks += client_checks(s, plan.secrets, gateway.name, connections_per_backend)
    if plan.tls:
        checks += tls_checks(s.gateway_url, s.ca_bundle, plan.tls.certificate, plan.secrets.master_key, gateway.name)
    if s.ca_bundle:
        checks.append(ca_check(gateway, s.ca_bundle))
    return checks


def ca_check(on: Host, ca_bundle: str) -> Check:
    return trust_store_check(on.name, on.get_fact(FindInFile, path=TRUST_STORE, pattern=ca_marker(ca_bundle)))


def verify_backend(host, backends: tuple[str, ...], wanted: dict[str, list[str]]) -> list[Check]:
    port = host.data.get("ollama_port", 11434)
    listeners = host.get_fact(Listeners, port=port)
    tags = host.get_fact(HttpProbes, requests=[{"url": f"http://127.0.0.1:{port}/api/tags"}])
    backend = backend_of(host.name, backends)
    models = wanted.get(backend, []) if backend else sorted({m for ms in wanted.values() for m in ms})
    return backend_host_checks(host.name, port, models, listeners, tags[0] if tags else None, backend)


def verify_backends(state: State, settings) -> list[Check]:
    return [c for host in state.inventory.get_group("llm", [])
            for c in verify_backend(host, settings.backends, settings.backend_models())]


def verify_fleet(state: State, gateways: list[tuple[Host, GatewayPlan]]) -> list[Check]:
    """Redis from every gateway, every gateway in every balancer, clients through the balancers, the usage
    records of a request through each gateway."""
    from tasks.lb import runtime_command  # the balancer component owns its socket and backend names

    if not gateways:
        return []
    checks: list[Check] = []
    fleet, secrets = gateways[0][1].fleet, gateways[0][1].secrets
    for gateway, plan in gateways if fleet.redis else ():
        ctx_host.set(gateway)
        probe = gateway.get_fact(RedisProbe, address=fleet.redis.address, port=fleet.redis.redis_port,
                                 env_file=plan.settings.path("litellm.env"), sample=os.urandom(4).hex())
        checks += redis_checks(gateway.name, fleet.redis, probe)
    if fleet.db:
        db_host = state.inventory.get_host(fleet.db.host)
        for gateway, plan in gateways:
            checks.append(usage_check(gateway.name, plan.settings, secrets,
                                      lambda call_id: rows_of_call(db_host, fleet.db, call_id)))
    if fleet.monitor:
        monitor_host, m = state.inventory.get_host(fleet.monitor.host), fleet.monitor
        ctx_host.set(monitor_host)
        checks.append(targets_check(fleet, m, lambda: monitor_host.get_fact(PrometheusTargets, url=m.url,
                                                                             sample=os.urandom(4).hex())))
    if fleet.redis:
        checks += cache_checks([(gateway.name, plan.settings) for gateway, plan in gateways], secrets)
    for lb in fleet.lbs:
        lb_host = state.inventory.get_host(lb.host)
        ctx_host.set(lb_host)

        def servers(on: Host = lb_host) -> dict:
            ok, output = run_as_root(runtime_command("servers"), on=on)
            return json.loads("\n".join(output.stdout_lines)) if ok else {}

        checks += balancer_checks(lb, fleet, servers())
        checks += balancer_client_checks(lb, fleet, secrets,
                                         lambda: {name: s["total"] for name, s in servers().items()})
        if lb.certificate:
            checks += tls_checks(lb.lb_url, lb.ca_bundle, lb.certificate, secrets.master_key, lb.host)
        if lb.ca_bundle:
            checks.append(ca_check(lb_host, lb.ca_bundle))
    return checks


def prove(inventory: str, evidence_dir: str, action: str = "verification",
          before_checks: Callable[[Host, GatewayPlan], list[Check]] | None = None,
          group_data: Sequence[str] = (),
          before_webui: Callable[[Host, WebuiPlan], list[Check]] | None = None) -> int:
    """Check every gateway (after `before_checks`, e.g. a rollback), backend and the components around
    them (Open WebUI after `before_webui`), write the evidence bundle, print the outputs; the exit code
    says whether every check passed.
    Bad settings and an evidence directory it cannot write are refused before connecting."""
    state = load_inventory(inventory, group_data)
    host_plans = run_plans(state)
    if before_webui and not any(host_plans[h.name].webui for h in state.inventory.get_group("webui", [])):
        raise Refusal("--component webui: the inventory has no host in group `webui`; nothing to roll back")
    evidence = writable_directory(evidence_dir, "--evidence-dir")
    connected(state)
    checks: list[Check] = []
    gateways: list[tuple[Host, GatewayPlan]] = []
    try:
        for gateway in state.inventory.get_group("litellm", []):
            plan = host_plans[gateway.name].gateway
            gateways.append((gateway, plan))
            ctx_host.set(gateway)  # commands outside operations run on this host
            if before_checks:
                checks += before_checks(gateway, plan)
            checks += verify_gateway(state, gateway, plan)
        if gateways:
            checks += verify_backends(state, gateways[0][1].settings)
        checks += verify_fleet(state, gateways)
        webuis = []
        for webui_host in state.inventory.get_group("webui", []):
            webui = host_plans[webui_host.name].webui
            if webui is None:
                continue
            webuis.append(webui)
            ctx_host.set(webui_host)
            if before_webui:
                checks += before_webui(webui_host, webui)
            checks += webui_checks(webui)
    finally:
        disconnect_all(state)
    plans = [plan for _, plan in gateways]
    secrets = [v for p in plans for v in p.secrets.all_values()] + [v for w in webuis for v in w.secrets.all_values()]
    bundle = write_evidence(evidence, checks, [p.settings for p in plans], secrets, action=action)
    print_outputs(checks, [p.settings for p in plans], bundle)
    return EXIT_CODES[overall(checks)[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify the gateway deploy and write the evidence bundle")
    parser.add_argument("inventory")
    parser.add_argument("--evidence-dir", default=".evidence")
    add_group_data_option(parser)
    args = parser.parse_args(argv)
    try:
        return prove(args.inventory, args.evidence_dir, group_data=args.group_data)
    except Refusal as refusal:
        return refused(refusal)


if __name__ == "__main__":
    sys.exit(main())
