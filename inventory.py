"""Production inventory (the seed documents' hosts). Reached over SSH as an admin with sudo:

    pyinfra inventory.py deploy.py --dry --diff      # preview, for the change ticket
    pyinfra inventory.py deploy.py                   # apply

SSH user and key come from your SSH config or --user/--key; nothing here is secret.
"""

_ssh = {"_sudo": True}

litellm = [
    ("hx-api-server.dev-test.hana-x.ai", _ssh),
]

llm = [
    ("hx-llm01-server.dev-test.hana-x.ai", _ssh),
    ("hx-llm02-server.dev-test.hana-x.ai", _ssh),
]
