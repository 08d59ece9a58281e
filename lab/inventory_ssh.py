"""The lab inventory over SSH as production runs it: an admin account with sudo, keys only.

    python -m lab.ssh enable && pyinfra lab/inventory_ssh.py deploy.py

Same hosts and groups as lab/inventory.py (the same containers, by name), reached at each
container's address as `hxadmin` with the lab's generated key; every operation runs with sudo.
"""


from lab.lab import DEFAULT_NAME, Lab, address_of
from lab.ssh import ADMIN, key_paths

_lab = Lab.from_env()
_key, _known_hosts = key_paths(_lab.name)


def _over_ssh(name: str, **data: object) -> tuple[str, dict]:
    return name, {"ssh_hostname": address_of(name, DEFAULT_NAME), "ssh_user": ADMIN, "ssh_key": str(_key),
                  "ssh_known_hosts_file": str(_known_hosts), "ssh_strict_host_key_checking": "accept-new",
                  "_sudo": True, **data}


litellm = [_over_ssh(h.name, gateway_url=f"http://{address_of(h.name, DEFAULT_NAME)}:4000")
           for h in _lab.hosts() if h.role == "gateway"]
llm = [_over_ssh(h.name) for h in _lab.hosts() if h.role == "backend"]
