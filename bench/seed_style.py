"""The operators' seed-style gateway, for comparison only (never deployed by the product).

What the seed documents ran: `litellm --config` (one uvicorn worker), every alias on the `ollama/`
route with `mode: chat` inside `litellm_params`, the master key written into config.yaml, LiteLLM's
own master-key auth, `least-busy` routing and none of the deploy's tuning. One change so it starts
at all: the seeds' `router_settings.health_check_interval` makes LiteLLM 1.106 refuse to start, so
it is left out. It runs beside the deployed gateway on the same host, as a transient unit (same
user), on its own port, and is stopped afterwards.

Its venv is what the seeds installed, `litellm[proxy]` alone: a hard-linked copy of the deployed
venv (same pins, no download) without the distributions the deploy adds for speed (httptools,
opentelemetry-sdk; see locks/litellm.in). `venv="deploy"` runs it from the deployed venv instead.
"""

from __future__ import annotations

import yaml

from hx_gateway.model.settings import Settings
from lab.lab import exec_in, wait_for_port, write_file

UNIT = "hx-seed-bench"
CONFIG = "/run/hx-seed-bench/config.yaml"
SEED_VENV = "/var/tmp/hx-seed-bench-venv"

# Run by the copied venv's python: removes every distribution that `litellm[proxy]` does not
# require (directly or through its dependencies), file by file from each one's RECORD as pip would,
# with the bytecode compiled at install (not in RECORD) and the directories left empty: an empty
# `httptools/` would still import, as a namespace package.
PRUNE_TO_LITELLM_PROXY = """
import glob, importlib.metadata as md, os, sysconfig
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name as canon
dists = {canon(d.metadata["Name"]): d for d in md.distributions()}
keep, todo = set(), [("litellm", frozenset({"proxy"}))]
while todo:
    name, extras = todo.pop()
    if (name, extras) in keep or name not in dists:
        continue
    keep.add((name, extras))
    for line in dists[name].requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            todo.append((canon(req.name), frozenset(req.extras)))
kept = {name for name, _ in keep}
site = sysconfig.get_paths()["purelib"]
for name, dist in sorted(dists.items()):
    if name in kept:
        continue
    folders = set()
    for entry in dist.files or []:
        path = os.path.join(site, str(entry))
        folder, file = os.path.split(path)
        cached = glob.glob(os.path.join(folder, "__pycache__", file[:-3] + ".*.pyc")) if file.endswith(".py") else []
        for doomed in [path, *cached]:
            if os.path.isfile(doomed):
                os.unlink(doomed)
        folders.update({folder, os.path.join(folder, "__pycache__")})
    for folder in sorted(folders, key=len, reverse=True):
        while folder.startswith(site + os.sep) and os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
            folder = os.path.dirname(folder)
    print(name)
"""


def seed_config(settings: Settings, master_key: str) -> str:
    model_list = [
        {
            "model_name": alias.name,
            "litellm_params": {"model": f"ollama/{alias.ollama_model}", "api_base": backend, "api_key": "",
                               "request_timeout": 30, "mode": "chat"},
            "max_input_tokens": 2048,
            "num_retries": 2,
        }
        for alias in settings.model_aliases
        for backend in alias.backends
    ]
    return yaml.safe_dump({
        "model_list": model_list,
        "router_settings": {"timeout": 60, "retry_policy": "simple", "routing_strategy": "least-busy"},
        "general_settings": {"master_key": master_key, "telemetry": False},
    }, sort_keys=False)


def make_seed_venv(container: str, deploy_venv: str) -> list[str]:
    """The seeds' install set as a venv at SEED_VENV; returns the distributions left out."""
    exec_in(container, "sh", "-c", f"rm -rf {SEED_VENV} && cp -al $(readlink -f {deploy_venv}) {SEED_VENV}")
    return exec_in(container, f"{SEED_VENV}/bin/python", "-I", "-c", PRUNE_TO_LITELLM_PROXY).split()


def start_seed_gateway(container: str, settings: Settings, master_key: str, port: int,
                       venv: str = "seeds") -> list[str]:
    """Starts it and returns the distributions its venv lacks compared with the deployed one."""
    deploy_venv = f"{settings.venv_root}/current"
    removed = make_seed_venv(container, deploy_venv) if venv == "seeds" else []
    root = SEED_VENV if venv == "seeds" else deploy_venv
    exec_in(container, "install", "-d", "-m", "0750", "-o", "root", "-g", settings.service_group,
            CONFIG.rsplit("/", 1)[0])
    write_file(container, CONFIG, seed_config(settings, master_key), mode="0640")
    exec_in(container, "chgrp", settings.service_group, CONFIG)
    exec_in(container, "systemd-run", f"--unit={UNIT}", f"--uid={settings.service_user}",
            f"--gid={settings.service_group}", "-p", "WorkingDirectory=/tmp",
            # The seeds did not set these; without them LiteLLM waits on the cost-map download at
            # every start, which only slows the start, not the requests measured here.
            "--setenv=LITELLM_LOCAL_MODEL_COST_MAP=True",
            # python -m: the copy's bin/litellm still names the deployed venv's python.
            f"{root}/bin/python", "-m", "litellm.proxy.proxy_cli", "--config", CONFIG, "--port", str(port))
    wait_for_port(container, port, timeout=90)
    return removed


def stop_seed_gateway(container: str) -> None:
    exec_in(container, "sh", "-c",
            f"systemctl stop {UNIT} 2>/dev/null; rm -rf {CONFIG.rsplit('/', 1)[0]} {SEED_VENV}", check=False)
