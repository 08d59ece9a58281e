"""The Open WebUI component (group `webui`, one host): the chat interface, a client of the gateways.

preflight (facts only: its interpreter and venv, the address to bind, the port free) -> install (its
system user, the locked venv built here from the control node's wheelhouse: locks/open-webui.in) ->
configure (settings.env, which wins over its admin panel at every start; secrets.env: its session
key, the first admin's password, its client key) -> activate (hardened unit; restart only when one of
them or the venv changed, then /health must answer). Knobs: group_data/webui.py, typed in
hx_gateway/model/webui.py; templates: templates/webui/.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import NestedOperationError
from pyinfra.operations import apt, python, systemd

from hx_gateway import lock
from hx_gateway.model.fleet import host_part, host_port
from hx_gateway.model.plan import VenvPlan, WebuiPlan, venv_plan
from hx_gateway.model.secrets import SecretText
from hx_gateway.proof.tls import TRUST_STORE
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.fact_cache import read_together
from hx_gateway.pyinfra_ext.facts import FileStates, GatewayHost, Resolves
from hx_gateway.pyinfra_ext.operations import ensure_directory, file_states_arguments, managed_file, trust_ca
from hx_gateway.pyinfra_ext.remote import put_as_root, run_as_root
from hx_gateway.pyinfra_ext.render import (
    CA,
    CACHE_ON_TARGET,
    UNIT_DIR,
    ManagedDirectory,
    ManagedFile,
    template_environment,
)
from tasks.component import activate, answers, bind_address, refuse
from tasks.locked_venv import install_script, service_account

USER = "open-webui"
UNIT = "open-webui.service"
CONFIG_DIR = "/etc/open-webui"
FILES = {
    "unit": ManagedFile(f"{UNIT_DIR}/{UNIT}", "root", "root", "644"),
    "settings": ManagedFile(f"{CONFIG_DIR}/settings.env", "root", "root", "644"),
    "secrets": ManagedFile(f"{CONFIG_DIR}/secrets.env", "root", "root", "600", secret=True, dotenv=True),
}
# Its first start creates ~70 tables and the admin (measured: /health after 14-17 s); a restart ~12 s.
START_SECONDS = 120

_env = template_environment("webui")


def directories(plan: WebuiPlan) -> tuple[ManagedDirectory, ...]:
    w = plan.settings
    return (ManagedDirectory(w.webui_venv_root, "root", "root", "755"),
            ManagedDirectory(f"{w.webui_venv_root}/venvs", "root", "root", "755"),
            ManagedDirectory(CACHE_ON_TARGET, "root", "root", "755"),
            ManagedDirectory(CONFIG_DIR, "root", "root", "755"),
            ManagedDirectory(w.webui_data_dir, USER, USER, "700"))


def managed(plan: WebuiPlan) -> list[ManagedFile]:
    return [*FILES.values(), *([CA] if plan.ca_pem else [])]


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
        (FileStates, file_states_arguments(managed(plan))),
        (Resolves, {"names": (name,)}))
    facts = {**facts, "files": states, "resolves": resolves.get(name, [])}
    address, problems = bind_address(w.webui_bind_address, "webui_bind_address", w.host, facts)
    if facts["pid1"] != "systemd":
        problems.append(f"init: PID 1 is {facts['pid1']!r}, not systemd; Open WebUI runs as a systemd unit")
    for listener in facts["listeners"]:
        if USER not in listener["users"]:
            owner = ", ".join(listener["processes"] + listener["users"]) or "an unknown process"
            problems.append(f"webui_port: {w.webui_port} is already taken by {owner} on {listener['address']}; stop "
                            f"it or choose another webui_port")
    refuse("Open WebUI", problems)
    return facts, address


def venv_for(facts: dict) -> VenvPlan:
    try:
        return venv_plan(facts, lock.OPEN_WEBUI)
    except lock.LockError as error:
        target = f"Python {facts['python']} ({facts['arch']}, glibc {facts['glibc']})"
        raise lock.LockError(f"preflight failed on {host.name} (Open WebUI); nothing was changed:\n  - Open WebUI "
                             f"cannot be locked for this host's {target}: {str(error).splitlines()[0]}. Open WebUI "
                             f"needs a CPU-only torch build for that Python in this machine's package index or "
                             f"find-links (pip config), or a host with a Python it has one for") from None


def build_venv(wheelhouse: Path, script: str) -> None:
    """Upload the wheelhouse and build the venv here (the script checks its digest, installs offline
    with every hash checked, checks the venv, then switches `current`)."""
    put_as_root(str(wheelhouse), f"{CACHE_ON_TARGET}/{wheelhouse.name}")
    ok, output = run_as_root(script)
    if not ok:
        message = f"building Open WebUI's venv failed:\n{output.stderr.strip()[-2000:]}"
        host.log_styled(message, fg="red", log_func=logger.error)
        raise NestedOperationError(message)


def install(plan: WebuiPlan, facts: dict) -> list:
    """The prerequisites, its account and directories, the venv; returns the operations whose change
    means a restart."""
    w = plan.settings
    if not facts["has_venv"]:
        changes.record("packages", "apt", "install python3-venv (missing)")
        apt.packages(name="Install OS prerequisites", packages=["python3-venv"], update=True, cache_time=3600)
    service_account(USER, USER, facts["account"])
    for directory in directories(plan):
        ensure_directory(directory, facts["directories"])
    venv = venv_for(facts)
    if venv.installed:
        return []
    before = "a venv that cannot run" if facts.get("venv_runnable") is False else (
        "a venv of another lock" if facts.get("venv") else "no venv")
    changes.record("venv", f"{w.webui_venv_root}/current",
                   f"{before} -> Open WebUI {venv.version} (venv {venv.venv_id[:16]}, {venv.target.key})")
    archive = venv.wheelhouse()
    script = install_script(w.webui_venv_root, archive.name, lock.file_sha256(archive), venv.venv_id, lock.OPEN_WEBUI)
    return [python.call(name=f"Install Open WebUI {venv.version}: build venv {venv.venv_id[:16]} "
                             f"({venv.target.key}, uv) from the control node's wheelhouse",
                        function=build_venv, wheelhouse=archive, script=script)]


@deploy("Open WebUI")
def webui(plan: WebuiPlan) -> None:
    facts, address = preflight(plan)
    changed = install(plan, facts)
    batch = tuple(managed(plan))
    changed += list(trust_ca(plan.ca_pem, facts["files"], batch).values())
    contents = {"unit": render_unit(plan, address), "settings": render_settings(plan), "secrets": render_secrets(plan)}
    ops = {key: managed_file(name=f"Open WebUI {file.path}" + (" (contents hidden)" if file.secret else ""),
                             file=file, content=contents[key], batch=batch)
           for key, file in FILES.items()}
    unit_state = facts["unit"]
    if ops["unit"].will_change:
        systemd.daemon_reload(name="systemd daemon-reload (Open WebUI's unit changed)", _if=ops["unit"].did_change)
    changed += list(ops.values())
    if not unit_state.get("active"):
        changes.record("restart", UNIT, "start (not running yet)")
    elif unit_state.get("stale") or any(op.will_change for op in changed):
        changes.record("restart", UNIT, "one restart (Open WebUI is away ~15 s) because its settings, secrets, "
                                        "unit or venv change")
    activate(UNIT, unit_state, changed, reload=False,
             check=answers(f"http://{host_port(address, plan.settings.webui_port)}/health", "Open WebUI", UNIT,
                           tries=START_SECONDS * 5),
             check_name="Open WebUI answers /health", installed_now=False)
