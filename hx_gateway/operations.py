"""Operations pyinfra does not have: a file whose contents never appear in any output."""

from __future__ import annotations

import hashlib
import hmac
import secrets as random_source
from io import BytesIO

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.api.util import format_text

from hx_gateway.facts import SecretFileState


class SecretText:
    """A string that pyinfra may hash or label but never print."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


def _entries(text: str, salt: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            found[name.strip()] = hmac.new(salt.encode(), value.strip().encode(), "sha256").hexdigest()
    return found


def changed_names(current: dict[str, str], desired: dict[str, str]) -> list[str]:
    return sorted(n for n in current.keys() | desired.keys() if current.get(n) != desired.get(n))


@operation()
def secret_file(dest: str, content: SecretText, user: str = "root", group: str = "root", mode: str = "600"):
    """
    Keep a KEY=VALUE file of secrets in place without ever showing its contents.

    Compares checksums on the host; in `--diff` and the change ticket it says only
    "contents changed (hidden)" and which names changed. The new file is written next to the
    destination with its final owner and mode first, then renamed over it (never half-written,
    never readable by others).
    """
    salt = random_source.token_hex(16)
    state = host.get_fact(SecretFileState, path=dest, salt=salt)
    text = content.reveal()
    desired_sha = hashlib.sha256(text.encode()).hexdigest()
    want_mode = oct(int(mode, 8))
    exists = bool(state.get("exists"))
    same_content = exists and state.get("sha256") == desired_sha
    if same_content and state.get("mode") == want_mode and state.get("uid") == 0 and user == "root":
        host.noop(f"{dest} is up to date (contents hidden)")
        return
    names = changed_names(state.get("entries", {}) if exists else {}, _entries(text, salt))
    what = "contents unchanged" if same_content else "contents changed (hidden)"
    detail = f"; names changed: {', '.join(names)}" if names and not same_content else ""
    host.log(f"Will {'modify' if exists else 'create'} {format_text(dest, bold=True)}: {what}{detail}", logger.info)
    temp = f"{dest}.hx-new"
    # Create the temp file with its final owner and mode before any secret byte is written to it.
    yield StringCommand("install", "-m", mode, "-o", user, "-g", group, "/dev/null", temp)
    yield FileUploadCommand(BytesIO(text.encode()), temp, remote_temp_filename=temp)
    yield StringCommand("chown", f"{user}:{group}", temp, "&&", "chmod", mode, temp, "&&", "mv", "-f", temp, dest)
