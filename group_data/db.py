# Knobs of the usage database (group `db`, at most one host): PostgreSQL from the OS packages, where the
# gateways record one row per request (client key name, alias, backend, status, tokens, latency).
# Without a `db` group the gateways record nothing (DB-less mode). The gateways' password:
# HX_DB_PASSWORD in the environment or the secrets file (32+ characters).

db_port = 5432
# The one address PostgreSQL listens on besides loopback; None = the address the host's inventory name
# resolves to on the host itself (checked in preflight). Never a wildcard.
db_bind_address = None
# The database and the role the gateways log in as (letters, digits and '_'; lower case).
db_name = "hx_gateway"
db_user = "hx_gateway"
# Rows each gateway worker holds while the database is slow or down; beyond it, new rows are dropped
# and counted in the gateway's journal (requests are never delayed or failed for a row).
db_queue_rows = 10000
