"""The hx-gateway deploy: `pyinfra inventory.py deploy.py` (add `--dry --diff` to preview).

preflight (facts only) -> install -> configure -> service. Proof comes after:
`python -m hx_gateway.verify inventory.py` (or `./hx deploy`, which runs both).
"""

from pyinfra import host

from hx_gateway.plan import gateway_plan
from tasks.configure import configure
from tasks.install import install
from tasks.preflight import preflight
from tasks.service import service

if "litellm" in host.groups:
    plan = gateway_plan(host.data.dict(), host.name)
    facts = preflight(plan.settings)
    venv = plan.venv_for(facts)
    venv_ops = install(plan.settings, facts, venv)
    config_ops = configure(plan.settings, plan.secrets, venv.litellm_version)
    service(plan.settings, plan.settings.workers or facts["cpus"], facts["backend_addresses"], venv_ops + config_ops)
