# The lab's differences from group_data/all.py: backend names, and the lab environment.
environment = "lab"
backends = ["http://hx-llm01:11434", "http://hx-llm02:11434"]
