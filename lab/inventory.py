"""The lab inventory: the same groups as inventory.py, hosts are the lab's containers.

    pyinfra lab/inventory.py deploy.py

Gateway count: HX_LAB_GATEWAYS (default 1); a mixed fleet: HX_LAB_GATEWAY_SUITES=bookworm,trixie;
the whole service (hx-redis, hx-lb, two gateways): HX_LAB_FLEET=1.
The lab's data differs from production only in
lab/group_data/ (backend names, environment) and the gateway URL read from Docker.
"""


from lab.lab import Lab, addresses_of

_lab = Lab.from_env()
_address = addresses_of([h.name for h in _lab.hosts() if h.role in ("gateway", "lb")])

litellm = [
    (f"@docker/{h.name}", {"gateway_url": f"http://{_address[h.name]}:4000"})
    for h in _lab.hosts() if h.role == "gateway"
]
llm = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "backend"]
redis = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "redis"]
lb = [(f"@docker/{h.name}", {"lb_url": f"http://{_address[h.name]}:4000"}) for h in _lab.hosts() if h.role == "lb"]
