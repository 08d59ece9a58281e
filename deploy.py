"""The hx-gateway deploy: `pyinfra inventory.py deploy.py` (add `--dry --diff` to preview).

Every host's settings and secrets are validated first, then each component deploys on the hosts of
its group, in this order: Redis (tasks/redis/) on `redis`, PostgreSQL for the usage records
(tasks/db/) on `db`, the gateway (tasks/gateway/) on `litellm`, HAProxy (tasks/lb/) on `lb`, Open WebUI
(tasks/webui/) on `webui`; with a
`monitor` host, the exporters on every host (tasks/monitor/node.py) and Prometheus there (tasks/monitor/). Proof
comes after: `python -m hx_gateway.verify inventory.py` (`./hx lab` runs both in the lab). Preview and
change ticket: `python -m hx_gateway.ticket inventory.py --out change.md`; rollback:
`python -m hx_gateway.rollback inventory.py`.
"""

import sys
from pathlib import Path

from pyinfra import host, logger, state

# `pyinfra INVENTORY /path/to/deploy.py` from any directory finds this repository's packages.
REPOSITORY = str(Path(__file__).resolve().parent)
if REPOSITORY not in sys.path:
    sys.path.insert(0, REPOSITORY)

from hx_gateway.model.plan import run_plans  # noqa: E402
from hx_gateway.model.refusal import Refusal, refuse  # noqa: E402
from hx_gateway.pyinfra_ext.announce import announce_plan_verdict  # noqa: E402
from hx_gateway.pyinfra_ext.command_line import command_line_problems  # noqa: E402
from hx_gateway.pyinfra_ext.fact_cache import read_later  # noqa: E402
from tasks.db import db  # noqa: E402
from tasks.gateway import gateway  # noqa: E402
from tasks.lb import lb  # noqa: E402
from tasks.monitor import monitor  # noqa: E402
from tasks.monitor.node import node, node_removed, removal_reads  # noqa: E402
from tasks.redis import redis  # noqa: E402
from tasks.webui import webui  # noqa: E402

announce_plan_verdict(state)  # a dry run ends with "Plan: no changes" or what changes where

try:
    plan = run_plans(state).get(host.name)  # every host's settings and secrets, before any host plans anything
    problems = command_line_problems(sys.argv, bool(plan and plan.gateway and plan.gateway.fleet.lbs))
    if problems:
        raise Refusal("\n".join(problems))
    for warning in plan.warnings if plan else ():  # e.g. a certificate that expires within 30 days
        logger.warning(f"{host.name}: {warning}")
    unmonitored = bool(plan and plan.components and not plan.node)
    if unmonitored:  # whether monitoring was set up here: read with the component's own reading
        read_later(*removal_reads(plan.gateway.settings if plan.gateway else None))
    if plan and plan.redis:
        redis(plan.redis)
    if plan and plan.db:
        db(plan.db)
    if plan and plan.gateway:
        gateway(plan.gateway)
    if plan and plan.lb:
        lb(plan.lb)
    if plan and plan.webui:
        webui(plan.webui)
    if plan and plan.node:
        node(plan.node, plan.gateway.settings if plan.gateway else None)
    if plan and plan.monitor:
        monitor(plan.monitor)
    if unmonitored:  # the exporters go (a restarted gateway's metrics unit did not start: no directory)
        node_removed(plan.gateway.settings if plan.gateway else None)
except Refusal as refusal:
    raise refuse(state, refusal) from None
