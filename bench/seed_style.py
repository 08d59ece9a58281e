"""The operators' seed-style gateway, for comparison only (never deployed by the product).

What the seed documents ran: `litellm --config` (one uvicorn worker), every alias on the `ollama/`
route with `mode: chat` inside `litellm_params`, the master key written into config.yaml, LiteLLM's
own master-key auth, `least-busy` routing and none of the deploy's tuning. One change so it starts
at all: the seeds' `router_settings.health_check_interval` makes LiteLLM 1.106 refuse to start, so
it is left out. It runs beside the deployed gateway on the same host, from the same venv, as a
transient unit (same user), on its own port, and is stopped afterwards.
"""

from __future__ import annotations

import yaml

from hx_gateway.settings import Settings
from lab.lab import exec_in, wait_for_port, write_file

UNIT = "hx-seed-bench"
CONFIG = "/run/hx-seed-bench/config.yaml"


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


def start_seed_gateway(container: str, settings: Settings, master_key: str, port: int) -> None:
    exec_in(container, "install", "-d", "-m", "0750", "-o", "root", "-g", settings.service_group,
            CONFIG.rsplit("/", 1)[0])
    write_file(container, CONFIG, seed_config(settings, master_key), mode="0640")
    exec_in(container, "chgrp", settings.service_group, CONFIG)
    exec_in(container, "systemd-run", f"--unit={UNIT}", f"--uid={settings.service_user}",
            f"--gid={settings.service_group}", "-p", "WorkingDirectory=/tmp",
            # The seeds did not set these; without them LiteLLM waits on the cost-map download at
            # every start, which only slows the start, not the requests measured here.
            "--setenv=LITELLM_LOCAL_MODEL_COST_MAP=True",
            f"{settings.venv_root}/current/bin/litellm", "--config", CONFIG, "--port", str(port))
    wait_for_port(container, port, timeout=90)


def stop_seed_gateway(container: str) -> None:
    exec_in(container, "sh", "-c", f"systemctl stop {UNIT} 2>/dev/null; rm -rf {CONFIG.rsplit('/', 1)[0]}",
            check=False)
