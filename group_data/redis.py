# Knobs of the Redis host (group `redis`, at most one host): the gateways' shared limits and router
# state. Without a `redis` group every gateway keeps its own limits (SQLite), as a single gateway does.
# The gateways' password: HX_REDIS_PASSWORD in the environment or the secrets file (32+ characters).

redis_port = 6379
# The one address Redis listens on besides loopback; None = the address the host's inventory name
# resolves to on the host itself (checked in preflight). Never a wildcard.
redis_bind_address = None
# The ACL user the gateways log in as (the default user is switched off).
redis_user = "hx-gateway"
# Memory cap. The policy is fixed to noeviction: a full Redis refuses writes (the gateways log it and
# fall back to their own limits) instead of silently evicting a client's request counts.
redis_maxmemory_mb = 256
# systemd's PrivateUsers= for Redis (the Debian unit turns it on). False only where the kernel or a
# container gives systemd no user namespaces: the unit then fails with status=217/USER (the Docker lab).
redis_private_users = True
