"""The lab inventory over SSH as production runs it: an admin account with sudo, keys only.

    python -m lab.ssh enable && pyinfra lab/inventory_ssh.py deploy.py

Same hosts and groups as lab/inventory.py (the same containers, by name), reached at each
container's address as `hxadmin` with the lab's generated key; every operation runs with sudo.
"""


from lab.lab import Lab, addresses_of
from lab.ssh import ADMIN, key_paths

_lab = Lab.from_env()
_key, _known_hosts = key_paths(_lab.name)
_address = addresses_of([h.name for h in _lab.hosts()])


def _over_ssh(name: str, **data: object) -> tuple[str, dict]:
    return name, {"ssh_hostname": _address[name], "ssh_user": ADMIN, "ssh_key": str(_key),
                  "ssh_known_hosts_file": str(_known_hosts), "ssh_strict_host_key_checking": "accept-new",
                  "_sudo": True, **data}


litellm = [_over_ssh(h.name, gateway_url=f"http://{_address[h.name]}:4000")
           for h in _lab.hosts() if h.role == "gateway"]
llm = [_over_ssh(h.name) for h in _lab.hosts() if h.role == "backend"]
