"""The Redis component (group `redis`, one host): the gateways' shared limits and router state.

preflight (facts only: the address to bind, the package) -> install (the OS package) -> configure
(redis.conf checked by redis-server itself before it replaces the old one, the ACL file with the
gateways' user, a hardening drop-in) -> activate (restart only when one of them changed, then Redis
must answer and refuse a client without a password). Knobs: group_data/redis.py, typed in
hx_gateway/model/fleet.py; templates: templates/redis/.
"""

from __future__ import annotations

import hashlib

from pyinfra.api import deploy
from pyinfra.operations import apt

from hx_gateway.model.fleet import host_part
from hx_gateway.model.plan import RedisPlan
from hx_gateway.model.secrets import SecretText, derived_secret
from hx_gateway.pyinfra_ext.operations import ensure_directory, managed_file
from hx_gateway.pyinfra_ext.render import ManagedDirectory, ManagedFile, template_environment
from tasks.component import activate, bind_address, read_component_host, refuse, reload_units

PACKAGE = "redis-server"
UNIT = "redis-server.service"
DROPIN_DIR = f"/etc/systemd/system/{UNIT}.d"
DROPIN = ManagedDirectory(DROPIN_DIR, "root", "root", "755")
FILES = {
    "acl": ManagedFile("/etc/redis/users.acl", "root", "redis", "640", secret=True),
    "conf": ManagedFile("/etc/redis/redis.conf", "root", "redis", "640"),
    "hardening": ManagedFile(f"{DROPIN_DIR}/hx-hardening.conf", "root", "root", "644"),
}
# redis-server has no "check the config" flag: start the candidate for 2 s on a socket of its own in
# a scratch directory (no TCP port, no persistence, never the data directory). A bad file makes it
# exit at once (exit 1, its reason on stderr); a good one is still running when `timeout` stops it (124).
CHECK = ("d=$(mktemp -d) && out=$(timeout 2 redis-server {} --port 0 --unixsocket \"$d/check.sock\" --dir \"$d\" "
         "--save '' --appendonly no --daemonize no --supervised no --logfile '' 2>&1); rc=$?; rm -rf \"$d\"; "
         "[ $rc -eq 124 ] || { echo \"$out\" | tail -5 >&2; false; }")
ANSWERS = ("for i in $(seq 1 50); do r=$(redis-cli -h 127.0.0.1 -p {port} ping 2>&1); "
           "case \"$r\" in *NOAUTH*) exit 0;; esac; sleep 0.2; done; "
           "echo \"Redis does not answer with NOAUTH on port {port} (got: $r)\" >&2; "
           "journalctl -u redis-server -n 20 --no-pager >&2; exit 1")

# With a `monitor` host, the Redis exporter (tasks/monitor/exporters.py) logs in as this user: it may read
# INFO and a few statistics, no key and no channel.
EXPORTER_USER = "hx-exporter"

_env = template_environment("redis")


def exporter_password(password: SecretText) -> SecretText:
    return derived_secret(password.reveal(), "hx-gateway redis exporter")


def render(name: str, **values: object) -> str:
    return _env.get_template(name).render(**values)


@deploy("Redis")
def redis(plan: RedisPlan) -> None:
    settings = plan.settings
    facts = read_component_host("redis", host_part(settings.host), UNIT, PACKAGE, list(FILES.values()), (DROPIN,))
    address, problems = bind_address(settings.redis_bind_address, "redis_bind_address", settings.host, facts)
    refuse("redis", problems)
    if not facts["versions"][PACKAGE]:
        apt.packages(name="Install redis-server (OS package)", packages=[PACKAGE], update=True)
    digest = hashlib.sha256(plan.password.reveal().encode()).hexdigest()
    exporter = exporter_password(plan.password) if plan.fleet.monitor else None
    exporter_digest = hashlib.sha256(exporter.reveal().encode()).hexdigest() if exporter else ""
    contents = {
        "acl": SecretText(render("users.acl.j2", r=settings, password_sha256=digest, exporter_user=EXPORTER_USER,
                                 exporter_sha256=exporter_digest)),
        "conf": render("redis.conf.j2", r=settings, bind_address=address, acl_path=FILES["acl"].path),
        "hardening": render("hardening.conf.j2", r=settings),
    }
    batch = tuple(FILES.values())
    ensure_directory(DROPIN, facts["directories"])
    ops = {key: managed_file(name=f"Redis {file.path}" + (" (contents hidden)" if file.secret else ""), file=file,
                             content=contents[key], batch=batch, check=CHECK if key == "conf" else None)
           for key, file in FILES.items()}
    reload_units(FILES["hardening"], ops["hardening"], facts["units"][UNIT], "Redis")
    activate(UNIT, facts["units"][UNIT], list(ops.values()), reload=False,
             check=ANSWERS.format(port=settings.redis_port),
             check_name="Redis answers and refuses a client without a password",
             installed_now=not facts["versions"][PACKAGE])
