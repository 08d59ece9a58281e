# Knobs of the monitoring host (group `monitor`, at most one host): Prometheus from the OS packages,
# scraping every host the deploy manages (the OS packages' node exporter on each), the gateways'
# LiteLLM metrics, and HAProxy, Redis and PostgreSQL where those groups exist; with the project's
# alert rules (templates/monitor/rules.yml.j2). Without a `monitor` group nothing is exported.

monitor_port = 9090
# The one address Prometheus listens on (its API and web UI; not loopback besides, Prometheus 2.42
# takes one); None = the address the host's inventory name resolves to on the host itself (checked in
# preflight). Never a wildcard.
monitor_bind_address = None
# How long Prometheus keeps samples, and how often it scrapes every target.
monitor_retention_days = 15
monitor_scrape_interval = 15
# Where each gateway serves its metrics (LiteLLM's own metrics process, beside the gateway), and each
# managed host its node exporter. Both answer only the monitoring host and loopback.
gateway_metrics_port = 9464
node_exporter_port = 9100
# Where the parts around the gateways answer, where those groups exist (same rule): HAProxy's own
# exporter on each `lb` host, the OS packages' Redis and PostgreSQL exporters on the `redis` and `db` hosts.
haproxy_exporter_port = 8405
redis_exporter_port = 9121
postgres_exporter_port = 9187
# Alert thresholds. An alert fires once its condition held for alert_for_seconds.
alert_for_seconds = 300
# Share of a gateway's requests answered with a 5xx, over 5 minutes.
alert_5xx_ratio = 0.05
# Requests per second refused with 429 for one client key, over 5 minutes.
alert_429_per_second = 0.5
# 99th percentile of a request's total time through the gateway, in seconds, over 5 minutes.
alert_p99_seconds = 60
# Days before a served certificate (TLS) expires.
alert_certificate_days = 14
# systemd's PrivateUsers= for Prometheus (the Debian unit turns it on). False only where the kernel or
# a container gives systemd no user namespaces: the unit then fails with status=217/USER (the Docker lab).
monitor_private_users = True
