# The lab's containers give systemd no user namespaces (Redis would fail with status=217/USER).
redis_private_users = False
