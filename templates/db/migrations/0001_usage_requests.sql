-- One row per request a gateway answered or refused (templates/gateway/hx_usage.py writes them with
-- COPY; the gateways' role may INSERT and nothing else). Read by `python -m hx_gateway.usage`.
CREATE TABLE usage_requests (
    at timestamptz NOT NULL,
    call_id text,                       -- LiteLLM's call id: the x-litellm-call-id a client saw
    gateway text NOT NULL,              -- host name of the gateway that served it
    client_key text NOT NULL,           -- the client key's name, never the key; (master) for the master key
    alias text,                         -- the model alias or group asked for
    backend text,                       -- the backend that answered, as the settings name it; (cache) for a cached answer
    status smallint NOT NULL,           -- HTTP status the client got
    prompt_tokens integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    latency_ms integer,                 -- NULL for a refused or failed request
    streamed boolean NOT NULL DEFAULT false
);
-- Rows arrive in time order: a BRIN index answers "since ..." at a fraction of a B-tree's size.
CREATE INDEX usage_requests_at ON usage_requests USING brin (at);
CREATE INDEX usage_requests_call_id ON usage_requests (call_id);
