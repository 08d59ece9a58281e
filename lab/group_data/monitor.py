# The lab's containers give systemd no user namespaces (Prometheus would fail with status=217/USER).
monitor_private_users = False
# Short windows, so a lab test sees an alert fire within a minute.
monitor_scrape_interval = 2
alert_for_seconds = 10
