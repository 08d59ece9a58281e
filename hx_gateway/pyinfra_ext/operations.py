"""Operations pyinfra does not have: a managed file that is written atomically, shows a readable
diff (or, for a secret, only which names changed), and records the change for the ticket."""

from __future__ import annotations

import difflib
import hashlib
import secrets as random_source
from io import BytesIO

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand, operation
from pyinfra.api.util import format_text
from pyinfra.context import state
from pyinfra.operations import files, server

from hx_gateway.host.facts import dotenv_entries
from hx_gateway.model.secrets import SecretText
from hx_gateway.model.tls import TlsMaterial, change_of
from hx_gateway.pyinfra_ext import changes
from hx_gateway.pyinfra_ext.fact_cache import cached_fact
from hx_gateway.pyinfra_ext.facts import FileStates
from hx_gateway.pyinfra_ext.render import CA, ManagedDirectory, ManagedFile

# One salt per run: the secret files' per-name hashes are comparable within a run and useless after.
RUN_SALT = random_source.token_hex(16)


def file_states_arguments(every: list[ManagedFile]) -> dict:
    """The FileStates fact's arguments for these files. Secrets never come back as text, only as
    salted per-name hashes; the text of the others only when the run shows diffs."""
    ordered = sorted(every, key=lambda f: f.path)
    return {"paths": [f.path for f in ordered], "secret_paths": [f.path for f in ordered if f.secret],
            "salt": RUN_SALT, "with_text": bool(state.config.DIFF),
            "dotenv_paths": [f.path for f in ordered if f.secret and f.dotenv]}


def ensure_directory(directory: ManagedDirectory, seen: dict[str, dict | None]) -> None:
    """files.directory, only where the GatewayHost fact (`seen`: path -> state) differs from the
    declaration: its own fact would be one more round trip per directory on every run."""
    if not directory.matches(seen.get(directory.path)):
        files.directory(name=f"Directory {directory.path}", path=directory.path, user=directory.user,
                        group=directory.group, mode=directory.mode)




def changed_names(current: dict[str, str], desired: dict[str, str]) -> list[str]:
    return sorted(n for n in current.keys() | desired.keys() if current.get(n) != desired.get(n))


def unified_diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"{path} (on host)", tofile=f"{path} (declared)"))


def describe_change(file: ManagedFile, current: dict, desired: str) -> tuple[str, str]:
    """A one-line summary and a diff that is safe to print and paste (never a secret's value)."""
    exists = bool(current.get("exists"))
    same_content = exists and current.get("sha256") == hashlib.sha256(desired.encode()).hexdigest()
    parts = []
    if not exists:
        parts.append("create (contents hidden)" if file.secret else "create")
    elif not same_content:
        parts.append("contents changed (hidden)" if file.secret else "contents changed")
    if file.secret and file.dotenv and not same_content:
        names = changed_names(current.get("entries", {}) if exists else {}, dotenv_entries(desired, RUN_SALT))
        if names:
            parts.append(f"names changed: {', '.join(names)}")
    if exists and (current.get("user"), current.get("group")) != (file.user, file.group):
        parts.append(f"owner {current.get('user')}:{current.get('group')} -> {file.user}:{file.group}")
    if exists and current.get("mode") != file.mode.lstrip("0").rjust(3, "0"):
        parts.append(f"mode {current.get('mode')} -> {file.mode}")
    diff = ""
    if not file.secret and not same_content:
        diff = unified_diff(file.path, current.get("text", "") if exists else "", desired)
    return "; ".join(parts), diff


def private_directory(key: str) -> str:
    """Where this run uploads `key`'s payload first. Over SSH with sudo, pyinfra uploads as the SSH
    account, then copies with sudo: that first copy goes into a directory only the uploading account
    can enter (0700; $SUDO_USER is that account, root without sudo), so no other account can read the
    payload at any moment."""
    return f"/tmp/hx-upload-{hashlib.sha256((RUN_SALT + key).encode()).hexdigest()[:16]}"


def prepare_private_directory(private: str) -> StringCommand:
    return StringCommand("sh", "-c", QuoteString(f'rm -rf {private} && install -d -m 700 -o "${{SUDO_USER:-root}}" '
                                                 f"{private}"))


@operation(is_idempotent=False)
def run_sql(sql: str | SecretText, port: int, database: str = "postgres", single_transaction: bool = False):
    """
    Run SQL as PostgreSQL's `postgres` superuser on the local socket; the caller plans it only when
    the facts say it is needed.

    + sql: the statements (`SecretText` when they hold a password verifier)
    + port: the server's port
    + database: where to run them
    + single_transaction: all of them or none

    The SQL travels as a file (through a private upload directory, into root's home, which only root
    enters, and off /tmp, which Debian 13 mounts as a tmpfs) and reaches psql on stdin, opened by
    root: it is in no command line, and removed at once.
    """
    text = sql.reveal() if isinstance(sql, SecretText) else sql
    private = private_directory(f"sql:{database}:{text}")
    script = f"/root/.{private.rsplit('/', 1)[-1]}.sql"
    yield prepare_private_directory(private)
    yield FileUploadCommand(BytesIO(text.encode()), script, remote_temp_filename=f"{private}/payload")
    once = " --single-transaction" if single_transaction else ""
    yield StringCommand("sh", "-c", QuoteString(
        f"runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1{once} -p {int(port)} -d {database} -f - "
        f"< {script}; rc=$?; rm -rf {script} {private}; exit $rc"))


@operation()
def managed_file(file: ManagedFile, content: str | SecretText, batch: tuple[ManagedFile, ...] = (),
                 check: str | None = None, about: str = ""):
    """
    Keep a file's contents, owner and mode as declared.

    + file: where, owner, mode, and whether the contents are secret
    + content: the declared contents (`SecretText` for a secret)
    + batch: every managed file on this host, so one fact reads them all in one round trip
    + check: a shell command that must accept the new file before it replaces the old one (`{}` is
      the new file's path, e.g. `haproxy -c -f {}`); if it fails the old file stays and the run fails
    + about: what the change means, in place of a diff (a certificate: its serial before and after)

    The new file is created next to the destination with its final owner and mode before a byte is
    written, then renamed over it: never half-written, never readable by anyone it should not be.
    `--diff` shows a unified diff; for a secret only "contents changed (hidden)" and which names
    changed. Either way the change is recorded for the change ticket.
    """
    # One reading for all of them (preflight usually made it already): not one round trip per file.
    states = cached_fact(FileStates, **file_states_arguments(list(set(batch) | {file})))
    text = content.reveal() if isinstance(content, SecretText) else content
    summary, diff = describe_change(file, states.get(file.path, {}), text)
    if summary and about:
        summary, diff = f"{summary}; {about}", ""
    if not summary:
        host.noop(f"{file.path} is up to date" + (" (contents hidden)" if file.secret else ""))
        return
    host.log(f"Will change {format_text(file.path, bold=True)}: {summary}", logger.info)
    if diff and state.config.DIFF:
        for line in diff.splitlines():
            logger.info("    %s", line)
    changes.record("file", file.path, summary, diff=diff, secret=file.secret)
    temp = f"{file.path}.hx-new"
    private = private_directory(file.path)
    yield prepare_private_directory(private)
    yield StringCommand("install", "-m", file.mode, "-o", file.user, "-g", file.group, "/dev/null", temp)
    yield FileUploadCommand(BytesIO(text.encode()), temp, remote_temp_filename=f"{private}/payload")
    if check:
        yield StringCommand("sh", "-c", QuoteString(f"{check.replace('{}', temp)} || {{ rm -f {temp}; exit 1; }}"))
    yield StringCommand("chown", f"{file.user}:{file.group}", temp, "&&", "chmod", file.mode, temp,
                        "&&", "mv", "-f", temp, file.path, "&&", "rm", "-rf", private)


def certificate_change(chain: ManagedFile, tls: TlsMaterial, batch: tuple[ManagedFile, ...]) -> str:
    """"certificate: serial A, expires ... -> serial B, expires ...", for the preview and the ticket
    (the host's certificate is read with the other files; its text only comes with --diff)."""
    seen = cached_fact(FileStates, **file_states_arguments(list(batch))).get(chain.path, {})
    return change_of(seen.get("text") if seen.get("exists") else "", tls.certificate)


def remove_if_present(managed: list[ManagedFile], states: dict, why: str) -> dict:
    """Files a part now switched off had written (`states`: FileStates of them), removed: by file name."""
    ops = {}
    for file in managed:
        if states.get(file.path, {}).get("exists"):
            changes.record("file", file.path, f"remove ({why})", secret=file.secret)
            ops[file.name] = files.file(name=f"Remove {file.path} ({why})", path=file.path, present=False)
    return ops


def refresh_trust_store(ca_op: object | None) -> None:
    """After the operator's CA file changed (written or removed): the trust store the host's own clients
    read (curl, Python's ssl) is rebuilt from it."""
    if ca_op is not None and ca_op.will_change:  # type: ignore[attr-defined]
        server.shell(name="update-ca-certificates (the operator's CA changed)", commands=["update-ca-certificates"],
                     _if=ca_op.did_change)  # type: ignore[attr-defined]


def trust_ca(ca_pem: str, states: dict, batch: tuple[ManagedFile, ...]) -> dict:
    """The operator's CA in the trust store of a host that is no gateway (the gateways keep it among
    their managed files); removed when ca_bundle is no longer declared."""
    if ca_pem:
        ops = {CA.name: managed_file(name=f"The operator's CA for the trust store {CA.path}", file=CA, content=ca_pem,
                                     batch=batch)}
    else:
        ops = remove_if_present([CA], states, "ca_bundle no longer declared")
    refresh_trust_store(ops.get(CA.name))
    return ops


def stale_reason(paths: list[str], verb: str = "restart") -> str:
    """Why a unit restarts or reloads although nothing it reads changes in this run."""
    return f"{', '.join(paths)} written by an earlier run that stopped before the {verb}"


@operation(is_idempotent=False)
def restart_service(service: str, verb: str = "restart"):
    """
    Restart (or reload) a systemd unit; the caller decides when, with `_if`.

    + service: the unit's name
    + verb: restart, or reload (the unit's ExecReload)

    No facts: systemd.service reads the unit's state first, and a dry run plans every operation
    without evaluating `_if`, so that read was one more round trip per host on every `--dry`.

    A start that fails (a failing ExecStartPre, a binary that cannot run) makes `systemctl restart`
    exit non-zero; that must not end the run there, with the service down and nothing rolled back:
    the health check that follows sees the failed unit and restores the previous generation.
    """
    yield StringCommand("systemctl", verb, QuoteString(service), "||",
                        "echo", QuoteString(f"the {verb} failed: the health check decides"), ">&2")
