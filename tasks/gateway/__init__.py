"""The gateway component (group `litellm`): LiteLLM behind our auth, in stages.

preflight (facts only) -> keep the deployed state as a generation -> install (user, locked venv) ->
configure (config, env, auth module, key digests) -> service (hardened unit, canary, restart only on
change, health, rollback). Its knobs: group_data/litellm.py and group_data/all.py, typed in
hx_gateway/model/settings.py; its templates: templates/gateway/.
"""

from __future__ import annotations

from hx_gateway.model.plan import GatewayPlan
from hx_gateway.pyinfra_ext.generations import keep_generation, spec_of
from tasks.gateway import configure, install, preflight, service


def gateway(plan: GatewayPlan) -> None:
    settings = plan.settings
    facts = preflight.preflight(settings, plan.fleet.redis, plan.fleet.db)
    keep_generation(name="Keep the deployed state as a generation before changing it (first run or drift)",
                    spec=spec_of(settings), reason="before deploy")
    venv = plan.venv_for(facts)
    venv_ops = install.install(settings, facts, venv)
    config_ops = configure.configure(settings, plan.secrets, venv.version, facts, plan.fleet, plan.tls,
                                     plan.ca_pem)
    service.service(settings, settings.workers or facts["cpus"], facts["backend_addresses"], {**venv_ops, **config_ops},
                    facts["unit"], plan.fleet)
