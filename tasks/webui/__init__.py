"""The Open WebUI component (group `webui`, one host): the chat interface, a client of the gateways.

preflight (facts only: its interpreter and venv, the address to bind, the port free) -> install (its
system user, the locked venv built here from the control node's wheelhouse (locks/open-webui.in) and
packed into the control node's cache, or received from there built) ->
configure (settings.env, which wins over its admin panel at every start; secrets.env: its session
key, the first admin's password, its client key) -> activate (hardened unit; restart only when one of
them or the venv changed, or its admin panel changed a setting the deploy owns; then /health must
answer, or the previous generation is put back). Its generations are the gateway's kind (files and
venv, host side: hx_gateway/host/generations.py), in a store of their own. Knobs: group_data/webui.py,
typed in hx_gateway/model/webui.py; templates: templates/webui/.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import python, systemd
from pyinfra.operations.util import any_changed

from hx_gateway import lock, venv_artifacts, webui_api
from hx_gateway.model.fleet import host_part, host_port
from hx_gateway.model.plan import VenvPlan, WebuiPlan, venv_plan
from hx_gateway.model.secrets import SecretText
from hx_gateway.model.webui import WebuiSettings
from hx_gateway.proof.tls import TRUST_STORE
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import FileStates, GatewayHost, Resolves
from hx_gateway.pyinfra_ext.generations import keep_generation, run_tool
from hx_gateway.pyinfra_ext.operations import (
    ensure_directory,
    file_states_arguments,
    managed_file,
    restart_service,
    stale_reason,
    trust_ca,
)
from hx_gateway.pyinfra_ext.remote import run_as_root
from hx_gateway.pyinfra_ext.render import (
    CA,
    CACHE_ON_TARGET,
    UNIT_DIR,
    ManagedDirectory,
    ManagedFile,
    template_environment,
)
from hx_gateway.venv_artifacts import Artifact
from tasks.component import answers, bind_address, port_taken_problems, refuse
from tasks.locked_venv import activation, fail, install_script, os_prerequisites, service_account
from tasks.venv_artifact import build_and_keep, pack_script, unpack_or_build

USER = "open-webui"
UNIT = "open-webui.service"
CONFIG_DIR = "/etc/open-webui"
FILES = {
    "unit": ManagedFile(f"{UNIT_DIR}/{UNIT}", "root", "root", "644"),
    "settings": ManagedFile(f"{CONFIG_DIR}/settings.env", "root", "root", "644"),
    "secrets": ManagedFile(f"{CONFIG_DIR}/secrets.env", "root", "root", "600", secret=True, dotenv=True),
}
# Its first start creates ~70 tables and the admin (measured: /health after 15-18 s, page cache
# dropped); a restart ~12.5 s (bench/README.md).
START_SECONDS = 60
# Generations of its files and venv (its data, the database, is never part of one): the newest kept.
GENERATIONS = "/var/lib/hx-gateway/webui-generations"
KEEP_GENERATIONS = 3

_env = template_environment("webui")


def directories(plan: WebuiPlan) -> tuple[ManagedDirectory, ...]:
    w = plan.settings
    return (ManagedDirectory(w.webui_venv_root, "root", "root", "755"),
            ManagedDirectory(f"{w.webui_venv_root}/venvs", "root", "root", "755"),
            ManagedDirectory(CACHE_ON_TARGET, "root", "root", "755"),
            ManagedDirectory(CONFIG_DIR, "root", "root", "755"),
            ManagedDirectory(w.webui_data_dir, USER, USER, "700"))


def managed() -> list[ManagedFile]:
    """Its files, and the operator's CA (read always: written with ca_bundle, removed without it)."""
    return [*FILES.values(), CA]


def generation_spec(plan: WebuiPlan) -> dict:
    return {"store": GENERATIONS, "keep": KEEP_GENERATIONS, "venv_root": plan.settings.webui_venv_root,
            "files": [asdict(f) for f in FILES.values()]}


def destroy_spec(w: WebuiSettings, keep_data: bool) -> dict:
    """What hx_gateway/host/destroy.py takes off an Open WebUI host (its data directory unless keep_data)."""
    return {"unit": UNIT, "unit_path": FILES["unit"].path, "port": w.webui_port, "companions": [],
            "files": [f.path for f in managed()],
            "secret_files": [f.path for f in FILES.values() if f.secret], "config_dir": CONFIG_DIR,
            "venv_root": w.webui_venv_root, "cache_dir": CACHE_ON_TARGET, "store": GENERATIONS,
            "state_dir": str(Path(GENERATIONS).parent), "keep_data": keep_data, "data_dirs": [w.webui_data_dir],
            "account": {"user": USER, "group": USER}}


def render_settings(plan: WebuiPlan) -> str:
    client, w = plan.client, plan.settings
    api_configs = {"0": {"enable": True, "model_ids": list(client.chat_models)}}
    url = urlsplit(w.webui_url)
    return _env.get_template("settings.env.j2").render(
        w=w, origin=f"{url.scheme}://{url.netloc}", key_name=w.webui_client_key, api_base=f"{client.gateway_url}/v1",
        api_configs=json.dumps(api_configs, separators=(",", ":")), embedding_model=client.embedding_model,
        trust_store=TRUST_STORE if client.gateway_url.startswith("https://") else "")


def render_secrets(plan: WebuiPlan) -> SecretText:
    s = plan.secrets
    return SecretText(_env.get_template("secrets.env.j2").render(
        secret_key=s.secret_key, admin_password=s.admin_password, client_key=s.client_key))


def render_unit(plan: WebuiPlan, address: str) -> str:
    return _env.get_template("open-webui.service.j2").render(
        w=plan.settings, user=USER, address=address, settings_env=FILES["settings"].path,
        secrets_env=FILES["secrets"].path)


def preflight(plan: WebuiPlan) -> tuple[dict, str]:
    """The host's facts in one round trip, and the address Open WebUI binds; any problem refuses the run."""
    w = plan.settings
    name = host_part(w.host)
    facts, states, resolves = read_together(
        (GatewayHost, {"bind_port": w.webui_port, "venv_root": w.webui_venv_root, "account": (USER, USER),
                       "directories": tuple(d.path for d in directories(plan)), "unit": UNIT,
                       "reads": tuple(f.path for f in FILES.values()), "script": "open-webui"}),
        (FileStates, file_states_arguments(managed())),
        (Resolves, {"names": (name,)}))
    facts = {**facts, "files": states, "resolves": resolves.get(name, [])}
    address, problems = bind_address(w.webui_bind_address, "webui_bind_address", w.host, facts)
    if facts["pid1"] != "systemd":
        problems.append(f"init: PID 1 is {facts['pid1']!r}, not systemd; Open WebUI runs as a systemd unit")
    problems += port_taken_problems(facts["listeners"], USER, "webui_port", w.webui_port, "webui_port")
    refuse("Open WebUI", problems)
    return facts, address


def venv_for(facts: dict) -> VenvPlan:
    try:
        return venv_plan(facts, lock.OPEN_WEBUI)
    except lock.LockError as error:
        target = f"Python {facts['python']} ({facts['arch']}, glibc {facts['glibc']})"
        raise lock.LockError(f"preflight failed on {host.name} (Open WebUI); nothing was changed:\n  - Open WebUI "
                             f"cannot be locked for this host's {target}: {str(error).splitlines()[0]}. Put the "
                             f"`webui` group on a host whose Python Open WebUI supports and this machine's package "
                             f"index or find-links (pip config) has a CPU-only torch build for (Debian 12's "
                             f"Python 3.11 here)") from None


def health_check(address: str, port: int) -> str:
    return answers(f"http://{host_port(address, port)}/health", "Open WebUI", UNIT, tries=START_SECONDS * 5,
                   crash_fails=True)


def served_at(unit_text: str) -> tuple[str, int] | None:
    """Where a unit file of ours starts Open WebUI (its ExecStart's --host and --port)."""
    found = re.search(r"^ExecStart=\S+ serve --host (\S+) --port (\d+)$", unit_text, re.MULTILINE)
    return (found.group(1), int(found.group(2))) if found else None


def healthy_or_restored(spec: dict, check: str) -> None:
    """After a (re)start: /health answers (`check`), or the previous generation (files and venv) is put
    back and started, and the run fails saying which state serves (checked where its own unit serves)."""
    ok, output = run_as_root(check)
    if ok:
        return
    why = output.stderr.strip()[-1500:]
    restored = run_tool(spec, "restore", "previous")
    if not restored.get("restored"):
        fail(f"Open WebUI did not come up, and no generation to roll back to ({restored.get('why')}):\n{why}")
    run_as_root(f"systemctl daemon-reload && systemctl restart {UNIT}")
    _, unit = run_as_root(f"cat {FILES['unit'].path}")
    where = served_at("\n".join(unit.stdout_lines))
    back = bool(where) and run_as_root(health_check(*where))[0]
    outcome = "the previous generation is serving again" if back else \
        f"the previous generation does not answer either: see journalctl -u {UNIT}"
    fail(f"Open WebUI did not come up on the new state; rolled back to generation {restored['restored']} "
          f"({restored['created']}): {outcome}. Why the new state failed:\n{why}")


def install(plan: WebuiPlan, facts: dict) -> list:
    """The prerequisites, its account and directories, the venv; returns the operations whose change
    means a restart."""
    w = plan.settings
    venv = venv_for(facts)
    os_prerequisites(facts, venv.installed)
    service_account(USER, USER, facts["account"])
    for directory in directories(plan):
        ensure_directory(directory, facts["directories"])
    if venv.installed:
        return []
    before = "a venv that cannot run" if facts.get("venv_runnable") is False else (
        "a venv of another lock" if facts.get("venv") else "no venv")
    venvs = f"{w.webui_venv_root}/venvs"
    artifact = Artifact(venv.venv_id, venv.target.key, f"{venvs}/{venv.venv_id[:16]}")
    cached = bool(venv_artifacts.usable(artifact))
    source = ("received from the control node's cache" if cached else
              "built here from the wheelhouse, then packed into the control node's cache")
    changes.record("venv", f"{w.webui_venv_root}/current",
                   f"{before} -> Open WebUI {venv.version} (venv {venv.venv_id[:16]}, {venv.target.key}), {source}")
    archive = venv.wheelhouse()
    script = install_script(w.webui_venv_root, archive.name, lock.file_sha256(archive), venv.venv_id, lock.OPEN_WEBUI)
    what = f"Open WebUI {venv.version}: venv {venv.venv_id[:16]} ({venv.target.key})"
    if cached:
        return [python.call(name=f"Install {what} received from the control node's cache (else built here)",
                            function=unpack_or_build, venv_root=w.webui_venv_root, venv_id=venv.venv_id,
                            artifact=artifact, activate=activation(w.webui_venv_root, product=lock.OPEN_WEBUI),
                            wheelhouse=archive, install_script=script)]
    return [python.call(name=f"Install {what} built from the control node's wheelhouse (uv), packed into its cache",
                        function=build_and_keep, artifact=artifact, wheelhouse=archive, install=script,
                        pack=pack_script(w.webui_venv_root, venv.venv_id, artifact), what="Open WebUI's venv")]


@deploy("Open WebUI")
def webui(plan: WebuiPlan) -> None:
    facts, address = preflight(plan)
    spec = generation_spec(plan)
    keep_generation(name="Open WebUI: keep the deployed state as a generation before changing it (first run or "
                         "drift)", spec=spec, reason="before deploy")
    changed = install(plan, facts)
    batch = tuple(managed())
    changed += list(trust_ca(plan.ca_pem, facts["files"], batch).values())
    contents = {"unit": render_unit(plan, address), "settings": render_settings(plan), "secrets": render_secrets(plan)}
    ops = {key: managed_file(name=f"Open WebUI {file.path}" + (" (contents hidden)" if file.secret else ""),
                             file=file, content=contents[key], batch=batch)
           for key, file in FILES.items()}
    unit_state = facts["unit"]
    if ops["unit"].will_change:
        systemd.daemon_reload(name="systemd daemon-reload (Open WebUI's unit changed)", _if=ops["unit"].did_change)
    changed += list(ops.values())
    check = health_check(address, plan.settings.webui_port)
    begun = activate(plan, unit_state, changed)
    if begun is not None:
        python.call(name="Open WebUI answers /health (else the previous generation is put back)",
                    function=healthy_or_restored, spec=spec, check=check, _if=begun.did_change)
        keep_generation(name="Open WebUI: keep the state now serving as a generation", spec=spec, reason="deployed",
                        after_change=True, _if=begun.did_change)


def activate(plan: WebuiPlan, unit_state: dict, changed: list):
    """Running and enabled; restarted when something it reads changed (in this run, or written by an
    earlier one that stopped before the restart), or when its admin panel changed a setting the deploy
    owns. Returns the operation that (re)starts it, if any is planned."""
    active, enabled = bool(unit_state.get("active")), bool(unit_state.get("enabled"))
    if not (active and enabled):
        changes.record("restart", UNIT, "start (not running yet)" if not active else "enable")
        return systemd.service(name=f"{UNIT} enabled and running", service=UNIT, running=True, enabled=True)
    stale = unit_state.get("stale", [])
    if stale or any(op.will_change for op in changed):
        why = stale_reason(stale) if stale else "its settings, secrets, unit or venv change"
        changes.record("restart", UNIT, f"one restart (Open WebUI is away ~15 s) because {why}")
        return restart_service(name=f"Restart {UNIT} ({why})", service=UNIT, _if=[] if stale else any_changed(*changed))
    drifted = admin_panel_drift(plan)
    if drifted:
        why = f"its admin panel changed {', '.join(drifted)}, which the deploy owns"
        changes.record("restart", UNIT, f"one restart (Open WebUI is away ~15 s): {why}")
        return restart_service(name=f"Restart {UNIT} ({why}: the deploy's settings win at start)", service=UNIT)
    return None


def admin_panel_drift(plan: WebuiPlan) -> list[str]:
    """The settings the deploy owns that its admin panel changed since the last start (they hold until
    the next one); none when they cannot be read (said as a warning)."""
    try:
        return webui_api.drift(plan)
    except webui_api.WebuiUnreadable as error:
        host.log(f"Open WebUI's running settings could not be read ({error}): admin panel changes not checked",
                 logger.warning)
        return []
