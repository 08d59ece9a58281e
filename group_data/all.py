# Every knob of the gateway, with its default. The README's "Variables" table lists each one.
# Typed and validated by hx_gateway/model/settings.py before any host is touched; the lab overrides
# some of them in lab/group_data/ (names of the backends, environment).

# "production" enforces strong secrets; "lab" is the Docker lab (lab/).
environment = "production"

# --- Ollama backends ------------------------------------------------------------------------
# Every alias is spread over all of these (one router deployment per backend).
backends = [
    "http://hx-llm01-server.dev-test.hana-x.ai:11434",
    "http://hx-llm02-server.dev-test.hana-x.ai:11434",
]

# --- Model aliases --------------------------------------------------------------------------
# name: what clients ask for; ollama_model: what the backends serve; kind: chat | embedding.
# An alias may carry `backends: [...]` to run on a subset of the backends above, and `cache_ttl: N`
# to keep its answers N seconds in the shared Redis cache (needs a `redis` host; off by default).
model_aliases = [
    {"name": "phi3-3.8b", "ollama_model": "phi3:3.8b-mini-128k-instruct-q8_0", "kind": "chat"},
    {"name": "llama3-8b", "ollama_model": "llama3:8b-instruct-q8_0", "kind": "chat"},
    {"name": "emb-premium", "ollama_model": "mxbai-embed-large", "kind": "embedding"},
]
# A group is an alias of its own that load-balances over several chat aliases.
model_groups = {"hx-chat": ["phi3-3.8b", "llama3-8b"]}

# --- Client keys ----------------------------------------------------------------------------
# Named keys handed to clients (the master key never is). The secret of key NAME comes from
# the operator's environment: HX_CLIENT_KEY_<NAME> (upper case, '-' -> '_'), or the secrets file.
# models: aliases or groups the key may use ([] = all); rpm: requests per minute;
# max_concurrent: requests in flight; expires: "YYYY-MM-DD" or None.
client_keys = [
    {"name": "open-webui", "models": [], "rpm": 60, "max_concurrent": 10, "expires": None},
]

# --- TLS for clients ------------------------------------------------------------------------
# Paths on the control node. With tls_certificate (the chain, server certificate first) and tls_key
# (its private key, mode 0600: a secret like the master key) set, the gateway serves HTTPS on
# bind_port and gateway_url is https://; None serves plain HTTP.
tls_certificate = None
tls_key = None
# The CA (PEM) that signed the certificate: the deploy installs it into every managed host's trust
# store and every check trusts it. None: the chain must verify against the control node's system store.
ca_bundle = None
# A certificate with fewer days left refuses the deploy (below 30 it warns).
tls_min_days_left = 14
