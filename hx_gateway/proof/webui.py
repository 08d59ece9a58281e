"""Open WebUI proven from outside (seed 003's tasks 8 and 9): through its own API as its admin, and
the gateway through the Python `openai` SDK on Open WebUI's client key, as any client would."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from hx_gateway import webui_api
from hx_gateway.model.plan import WebuiPlan
from hx_gateway.proof.checks import Check, trust

WEBUI_VALIDATION_PLAN: dict[str, str] = {
    "webui_healthy": "Open WebUI answers /health at webui_url",
    "webui_admin_signs_in": "the first admin signs in with HX_WEBUI_ADMIN_PASSWORD and is an admin",
    "webui_signup_closed": "nobody else can sign up",
    "webui_lists_the_keys_chat_models": "Open WebUI's model list (its API) is its key's chat aliases and groups",
    "webui_chat_answers": "a chat through Open WebUI's API comes back from the gateway",
    "webui_key_sdk_lists_models": "the openai SDK on Open WebUI's key lists the key's models at the gateway",
    "webui_key_sdk_chat": "the openai SDK on Open WebUI's key gets a chat completion",
    "webui_key_sdk_stream": "the openai SDK on Open WebUI's key streams a chat completion to its end",
    "webui_key_sdk_embedding": "the openai SDK on Open WebUI's key gets an embedding (what its documents use)",
}
FIX = "journalctl -u open-webui on the webui host; re-run the deploy"


def _answer(body: Any) -> str:
    try:
        return str(body["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return ""


def webui_checks(plan: WebuiPlan, timeout: float = 60) -> list[Check]:
    w, client, host = plan.settings, plan.client, plan.settings.host
    checks: list[Check] = []
    with httpx.Client(base_url=w.webui_url, timeout=timeout) as http:
        try:
            health = http.get("/health")
            status = f"HTTP {health.status_code}"
        except httpx.HTTPError as error:
            health, status = None, f"{type(error).__name__}: {error}"
        checks.append(Check(host, "webui_healthy", bool(health and health.status_code == 200), "HTTP 200", status, FIX))
        if not checks[-1].ok:
            return checks
        signin, token = webui_api.signin(http, w.webui_admin_email, plan.secrets.admin_password)
        checks.append(Check(host, "webui_admin_signs_in", bool(token), "HTTP 200, role admin",
                            f"HTTP {signin.status_code}" + (", an admin" if token else ""),
                            "the admin is created only at the first start, with the password of that time: sign in "
                            "with it and change it in Open WebUI, or set HX_WEBUI_ADMIN_PASSWORD to it"))
        signup = http.post("/api/v1/auths/signup", json={"email": "hx-verify@localhost", "name": "hx-verify",
                                                         "password": "hx-verify-" + "x" * 16})
        checks.append(Check(host, "webui_signup_closed", signup.status_code == 403, "HTTP 403",
                            f"HTTP {signup.status_code}", "ENABLE_SIGNUP must be False in settings.env"))
        if not token:
            return checks
        auth = {"Authorization": f"Bearer {token}"}
        listing = http.get("/api/models", headers=auth)
        listed = [m["id"] for m in listing.json().get("data", [])] if listing.status_code == 200 else []
        seen = ", ".join(sorted(listed)) or f"HTTP {listing.status_code}"
        checks.append(Check(host, "webui_lists_the_keys_chat_models", sorted(listed) == sorted(client.chat_models),
                            ", ".join(sorted(client.chat_models)), seen,
                            "OPENAI_API_CONFIGS in settings.env names them; re-run the deploy"))
        model = client.chat_models[0]
        chat = http.post("/api/chat/completions", headers=auth, json={
            "model": model, "stream": False, "messages": [{"role": "user", "content": "hx verify through Open WebUI"}]})
        answer = _answer(chat.json()) if chat.status_code == 200 else ""
        checks.append(Check(host, f"webui_chat_answers[{model}]", bool(answer), "HTTP 200 with an answer",
                            f"HTTP {chat.status_code}: {answer[:80]!r}",
                            "Open WebUI reaches the gateway with its key: OPENAI_API_BASE_URL and the key in "
                            "secrets.env; the gateway's journal says why it refused"))
    return checks + sdk_checks(plan, timeout)


def sdk_checks(plan: WebuiPlan, timeout: float = 60) -> list[Check]:
    """The gateway as Open WebUI's key sees it, through the pinned `openai` SDK (task 9)."""
    client, host = plan.client, plan.settings.host
    http = httpx.Client(verify=trust(client.ca_bundle), timeout=timeout)
    sdk = openai.OpenAI(base_url=f"{client.gateway_url}/v1", api_key=plan.secrets.client_key, http_client=http,
                        max_retries=0)
    fix = "the gateway's journal says why it refused Open WebUI's key"
    checks = []
    model = client.chat_models[0]

    def attempt(name: str, expected: str, call) -> None:
        try:
            ok, seen = call()
        except openai.OpenAIError as error:
            ok, seen = False, f"{type(error).__name__}: {str(error)[:200]}"
        checks.append(Check(host, name, ok, expected, seen, fix))

    def listed() -> tuple[bool, str]:
        ids = {m.id for m in sdk.models.list()}
        return set(client.chat_models) <= ids and client.embedding_model in ids, ", ".join(sorted(ids))

    def chat() -> tuple[bool, str]:
        done = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hx verify sdk"}])
        text = done.choices[0].message.content or ""
        return bool(text), repr(text[:80])

    def stream() -> tuple[bool, str]:
        parts, finished = [], None
        for chunk in sdk.chat.completions.create(model=model, stream=True,
                                                 messages=[{"role": "user", "content": "hx verify stream"}]):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finished = chunk.choices[0].finish_reason or finished
        return bool("".join(parts)) and finished is not None, f"{len(parts)} chunks, finish_reason {finished}"

    def embed() -> tuple[bool, str]:
        vector = sdk.embeddings.create(model=client.embedding_model, input="hx verify").data[0].embedding
        return len(vector) > 0, f"{len(vector)} dimensions"

    with http:
        attempt("webui_key_sdk_lists_models", "the key's chat models and its embedding alias", listed)
        attempt(f"webui_key_sdk_chat[{model}]", "an answer", chat)
        attempt(f"webui_key_sdk_stream[{model}]", "chunks, then a finish_reason", stream)
        attempt(f"webui_key_sdk_embedding[{client.embedding_model}]", "a vector", embed)
    return checks
