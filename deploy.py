"""The hx-gateway deploy: `pyinfra inventory.py deploy.py` (add `--dry --diff` to preview).

preflight (facts only) -> keep generation -> install -> configure -> service (canary, restart, health,
rollback). Proof comes after:
`python -m hx_gateway.verify inventory.py` (`./hx lab` runs both in the lab). Preview and change ticket:
`python -m hx_gateway.ticket inventory.py --out change.md`; rollback: `python -m hx_gateway.rollback inventory.py`.
"""

from pyinfra import host, state

from hx_gateway import op_order
from hx_gateway.generations import keep_generation, spec_of
from hx_gateway.plan import run_plans
from hx_gateway.refusal import Refusal, refuse
from hx_gateway.summary import announce_plan_verdict
from tasks.configure import configure
from tasks.install import install
from tasks.preflight import preflight
from tasks.service import service

op_order.install()  # pyinfra's operation order without inspect.stack() per operation (see the module)
announce_plan_verdict(state)  # a dry run ends with "Plan: no changes" or what changes where

try:
    # Every gateway's settings and secrets, validated together before the first host plans anything.
    plans = run_plans(state)
    if host.name in plans:
        plan = plans[host.name]
        facts = preflight(plan.settings)
        keep_generation(name="Keep the deployed state as a generation before changing it (first run or drift)",
                        spec=spec_of(plan.settings), reason="before deploy")
        venv = plan.venv_for(facts)
        venv_ops = install(plan.settings, facts, venv)
        config_ops = configure(plan.settings, plan.secrets, venv.litellm_version, facts)
        service(plan.settings, plan.settings.workers or facts["cpus"], facts["backend_addresses"],
                {**venv_ops, **config_ops}, facts["unit"])
except Refusal as refusal:
    raise refuse(state, refusal) from None
