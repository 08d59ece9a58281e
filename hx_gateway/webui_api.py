"""Open WebUI's own API, as its admin, from the control node: signing in, and what its admin panel
changed of the settings the deploy owns (its running values, which a restart puts back to the
deploy's: settings.env with ENABLE_PERSISTENT_CONFIG=False)."""

from __future__ import annotations

from typing import Any

import httpx

from hx_gateway.model.plan import WebuiPlan


class WebuiUnreadable(Exception):
    pass


def signin(http: httpx.Client, email: str, password: str) -> tuple[httpx.Response, str]:
    """The sign-in's response and, for an admin, the token."""
    response = http.post("/api/v1/auths/signin", json={"email": email, "password": password})
    body = response.json() if response.status_code == 200 else {}
    return response, body.get("token", "") if body.get("role") == "admin" else ""


def declared(plan: WebuiPlan) -> dict[str, Any]:
    """The running values the deploy owns, as Open WebUI reports them (settings.env and secrets.env say
    the same to it at every start)."""
    return {"ENABLE_OPENAI_API": True, "OPENAI_API_BASE_URLS": [f"{plan.client.gateway_url}/v1"],
            "OPENAI_API_KEYS": [plan.secrets.client_key], "model_ids": list(plan.client.chat_models),
            "ENABLE_SIGNUP": False}


def running(plan: WebuiPlan, timeout: float = 10) -> dict[str, Any]:
    """What the running Open WebUI uses of those settings (raises WebuiUnreadable)."""
    try:
        with httpx.Client(base_url=plan.settings.webui_url, timeout=timeout) as http:
            response, token = signin(http, plan.settings.webui_admin_email, plan.secrets.admin_password)
            if not token:
                raise WebuiUnreadable(f"the admin cannot sign in (HTTP {response.status_code})")
            auth = {"Authorization": f"Bearer {token}"}
            openai = http.get("/openai/config", headers=auth).raise_for_status().json()
            admin = http.get("/api/v1/auths/admin/config", headers=auth).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as error:
        raise WebuiUnreadable(f"{type(error).__name__}: {error}") from None
    first = (openai.get("OPENAI_API_CONFIGS") or {}).get("0", {})
    return {**{name: openai.get(name) for name in ("ENABLE_OPENAI_API", "OPENAI_API_BASE_URLS", "OPENAI_API_KEYS")},
            "model_ids": first.get("model_ids"), "ENABLE_SIGNUP": admin.get("ENABLE_SIGNUP")}


def drift(plan: WebuiPlan) -> list[str]:
    """The names of the owned settings its admin panel changed (never their values: a key is one)."""
    seen = running(plan)
    return [name for name, value in declared(plan).items() if seen.get(name) != value]
