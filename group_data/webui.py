# Knobs of Open WebUI (group `webui`, at most one host): the chat interface, installed from the control
# node's wheelhouse like LiteLLM (locks/open-webui.in), a client of the gateways on a client key of its
# own. Its secrets: HX_WEBUI_SECRET_KEY (signs its sessions; keep it stable) and HX_WEBUI_ADMIN_PASSWORD
# (the first admin's, created at its first start), in the environment or the secrets file.

webui_port = 8080
# The one address Open WebUI listens on (it binds one: not loopback besides); None = the address the
# host's inventory name resolves to on the host itself (checked in preflight). Never a wildcard.
webui_bind_address = None
# The URL users open (its origin is the only one Open WebUI's API answers from a browser); None =
# http://<inventory name>:<webui_port>. Verify reaches Open WebUI there.
webui_url = None
# The client key (a name in client_keys, group_data/all.py) Open WebUI uses. It offers that key's chat
# aliases and groups, and embeds documents with its first embedding alias; it needs at least one of each.
webui_client_key = "open-webui"
# The first admin account's e-mail (its password: HX_WEBUI_ADMIN_PASSWORD).
webui_admin_email = "admin@localhost"
# Where its venvs (locked, hash-checked) and its data (SQLite database, uploads) live.
webui_venv_root = "/opt/open-webui"
webui_data_dir = "/var/lib/open-webui"
