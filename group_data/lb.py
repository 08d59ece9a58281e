# Knobs of the load balancers (group `lb`, one or more hosts): HAProxy in front of every gateway.

lb_bind_host = "0.0.0.0"
lb_port = 4000
# The URL clients use; None derives http://<inventory name>:<lb_port> (of the first `lb` host).
lb_url = None
# Seconds between health checks (GET /health/readiness) of each gateway; 2 failures take it out.
lb_check_interval = 2
# Seconds a streamed answer may pause, or a plain answer take, before HAProxy gives up on it.
lb_idle_timeout = 600
