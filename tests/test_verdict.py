"""The preview's verdict and the verification's result, as pure logic (issues 21, 30, 32)."""

from __future__ import annotations

from hx_gateway.proof.checks import Check
from hx_gateway.proof.evidence import overall
from hx_gateway.pyinfra_ext.summary import plan_listing, plan_verdict

A, B = "@docker/hx-api", "@docker/hx-llm01"


def op(name: str, change: list[str] = (), conditional: list[str] = ()) -> dict:
    return {"name": name, "hosts_with_change": list(change), "hosts_with_conditional_change": list(conditional)}


def test_no_operation_changing_is_no_changes():
    assert plan_verdict([op("a"), op("b")], [A, B]) == "Plan: no changes (2 hosts)"
    assert plan_verdict([], [A]) == "Plan: no changes (1 host)"


def test_changes_are_counted_per_host_and_never_called_no_changes():
    """Breakage guarded: a verdict that always says "no changes" (issue 32)."""
    plan = [op("render", [A]), op("unit", [A]), op("restart", conditional=[A]), op("other", [B])]
    assert plan_verdict(plan, [A, B]) == (f"Plan: {A}: 2 change(s) + 1 that follow them (restart, health check, "
                                          f"generation); {B}: 1 change(s)")


def test_only_conditional_operations_still_count_as_changes():
    assert plan_verdict([op("start", conditional=[A])], [A]).startswith(f"Plan: {A}: 0 change(s) + 1 that follow")


def test_a_degraded_run_says_so_with_the_backends_down():
    verdict = plan_verdict([], [A], {A: ["http://hx-llm02:11434"]})
    assert verdict == f"Plan: no changes (1 host) | DEGRADED run, backends down: {A} without http://hx-llm02:11434"


def test_the_listing_shows_every_operation_per_host_in_plan_order():
    plan = [op("render", [A]), op("restart", conditional=[A]), op("other", [B])]
    assert plan_listing(plan, [A, B]) == [f"    {A}:", "        render", "        then: restart", f"    {B}:",
                                          "        other"]


def check(name: str, ok: bool, backends: list[str] = ()) -> Check:
    return Check("h", name, ok, "", "", backends=list(backends))


DOWN = "http://hx-llm02:11434"


def test_every_check_passing_is_healthy_and_no_checks_is_a_failure():
    assert overall([check("x", True)]) == ("healthy", [])
    assert overall([]) == ("failed", [])


def test_failures_explained_by_a_backend_down_alone_are_degraded():
    checks = [check(f"backend_reachable_from_gateway[{DOWN}]", False, [DOWN]), check("chat_completion[a]", True),
              check("ollama_port_listening", False, [DOWN]), check("traffic_reaches_every_backend[a]", False, [DOWN])]
    assert overall(checks) == ("degraded", [DOWN])


def test_a_failure_a_down_backend_does_not_explain_is_a_failure():
    checks = [check(f"backend_reachable_from_gateway[{DOWN}]", False, [DOWN]), check("chat_completion[a]", False)]
    assert overall(checks) == ("failed", [DOWN])
    assert overall([check("ollama_port_listening", False, [DOWN])]) == ("failed", [])  # reachable from the gateway
