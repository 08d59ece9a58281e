"""The lab inventory: the same groups as inventory.py, hosts are the lab's containers.

    pyinfra lab/inventory.py deploy.py

Gateway count: HX_LAB_GATEWAYS (default 1); a mixed fleet: HX_LAB_GATEWAY_SUITES=bookworm,trixie;
the whole service (hx-redis, hx-lb, two gateways): HX_LAB_FLEET=1; the usage database (hx-db):
HX_LAB_DB=1; Prometheus (hx-monitor): HX_LAB_MONITOR=1; Open WebUI (hx-webui): HX_LAB_WEBUI=1;
HTTPS with the lab's own CA, made once in the directory HX_LAB_TLS names (lab/tls.py): HX_LAB_TLS=DIR
(served by the balancers when there are any, else by the gateways, as in production).
The lab's data differs from production only in
lab/group_data/ (backend names, environment) and the gateway URL read from Docker.
"""

import os
from pathlib import Path

from lab.lab import Lab, addresses_of

_lab = Lab.from_env()
_address = addresses_of([h.name for h in _lab.hosts() if h.role in ("gateway", "lb", "webui")])
_gateways = [h.name for h in _lab.hosts() if h.role == "gateway"]
_balancers = [h.name for h in _lab.hosts() if h.role == "lb"]
_served_by = _balancers or _gateways  # who serves HTTPS: HAProxy where it exists
# The TLS knobs go to every host, as group_data/all.py would give them; the certificate names the
# addresses of the hosts that serve HTTPS.
_tls: dict[str, str] = {}
if os.environ.get("HX_LAB_TLS"):
    from lab.tls import ensure_lab_tls  # only then: it loads cryptography (~30 ms of every lab run)

    _tls = ensure_lab_tls(Path(os.environ["HX_LAB_TLS"]).expanduser(), sorted(_address[n] for n in _served_by)).knobs()


def _url(name: str) -> str:
    return f"{'https' if _tls and name in _served_by else 'http'}://{_address[name]}:4000"


litellm = [(f"@docker/{name}", {"gateway_url": _url(name), **_tls}) for name in _gateways]
llm = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "backend"]
redis = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "redis"]
lb = [(f"@docker/{name}", {"lb_url": _url(name), **_tls}) for name in _balancers]
db = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "db"]
monitor = [f"@docker/{h.name}" for h in _lab.hosts() if h.role == "monitor"]
webui = [(f"@docker/{h.name}", {"webui_url": f"http://{_address[h.name]}:8080"}) for h in _lab.hosts()
         if h.role == "webui"]
