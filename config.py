"""pyinfra's run-wide configuration, read before it connects to any host (`pyinfra inventory.py deploy.py`
from this directory)."""

from hx_gateway.patches import ssh_stalls

ssh_stalls.install()  # SSH without Nagle stalls: ~50 ms less per connection and per command (see the module)
