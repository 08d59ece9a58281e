# Knobs of the gateway hosts (group `litellm`). Defaults; see the README's "Variables" table.

bind_host = "0.0.0.0"
bind_port = 4000
# The URL clients use; None derives http://<inventory name>:<bind_port>.
gateway_url = None

# Router: how requests spread over the backends and what happens when one fails.
routing_strategy = "least-busy"
request_timeout = 30  # seconds, per request to a backend
# Seconds a stop or restart gives in-flight requests to finish (LiteLLM's GRACEFUL_SHUTDOWN_TIMEOUT; the
# unit's TimeoutStopSec is 15 s more). Must be longer than request_timeout, so a request a restart
# catches is not cut; None = request_timeout + 15.
drain_timeout = None
num_retries = 2  # retries on another deployment of the same alias
allowed_fails = 1  # failures within a minute before a deployment is cooled down
cooldown_time = 30  # seconds a failed deployment is taken out of rotation

# Server processes; None = one per core of the target (read from a fact).
workers = None
# gunicorn: the master imports LiteLLM once and forks the workers (starts in ~9 s, shares memory);
# uvicorn: every worker imports LiteLLM itself (~17 s to start with 2 workers, twice the memory).
server = "gunicorn"
# How chat aliases reach Ollama: ollama_chat (its /api/chat; Ollama applies the model's chat template),
# openai (its OpenAI-compatible /v1), or ollama (/api/generate; LiteLLM flattens the prompt itself).
chat_route = "ollama_chat"

# Paths and identity.
venv_root = "/opt/litellm"
config_dir = "/etc/litellm"
service_name = "litellm"
service_user = "litellm"
service_group = "litellm"

# The secrets file (dotenv format, mode 0600, outside the repository). Environment variables
# HX_MASTER_KEY / HX_CLIENT_KEY_<NAME> win over it.
secrets_file = "~/.config/hx-gateway/secrets.env"

# Identity guard: the target must own one of these addresses or have one of these host names
# (empty = the inventory name must match the host name or resolve to an address it owns).
# Override for a rebuild: HX_SKIP_IDENTITY_GUARD=1.
expected_identity = []

# How long the deploy waits for /health/liveliness after a (re)start; without it, or when the
# smoke check fails, the deploy restores the previous generation.
health_timeout = 90
# Generations (config, env, unit, venv) kept on the host for rollback, newest first.
keep_generations = 5

# LiteLLM settings this deploy does not model, passed through as they are (router_settings and
# litellm_settings). A setting LiteLLM rejects makes the deploy roll back to the previous generation.
extra_router_settings = {}
extra_litellm_settings = {}

# Optional systemd IP allow-lists (IPAddressAllow=); empty keeps them off.
allowed_client_networks = []
