"""The evidence bundle (.evidence/<UTC timestamp>/summary.md + checks.json) and the run's outputs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hx_gateway.model.settings import Settings
from hx_gateway.proof.redaction import redact

if TYPE_CHECKING:  # a deploy imports this module (health redacts journal lines); checks bring httpx, ~20 ms
    from hx_gateway.proof.checks import Check

def overall(checks: list[Check]) -> tuple[str, list[str]]:
    """("healthy" | "degraded" | "failed", the backends down). Degraded: some backend does not
    answer from a gateway, and every failed check is explained by such a backend alone."""
    down = sorted({b for c in checks if not c.ok and c.check.startswith("backend_reachable_from_gateway")
                   for b in c.backends})
    failed = [c for c in checks if not c.ok]
    if checks and not failed:
        return "healthy", []
    if down and all(c.backends and set(c.backends) <= set(down) for c in failed):
        return "degraded", down
    return "failed", down


def result_line(checks: list[Check]) -> str:
    result, down = overall(checks)
    return result.upper() + (f" (backends down: {', '.join(down)})" if down else "")


def _table(checks: list[Check]) -> list[str]:
    rows = ["| result | host | check | expected | seen |", "|---|---|---|---|---|"]
    for c in checks:
        seen = c.seen.replace("|", "\\|")[:160]
        rows.append(f"| {'PASS' if c.ok else 'FAIL'} | {c.host} | {c.check} | {c.expected[:80]} | {seen} |")
    return rows


def summary_markdown(checks: list[Check], settings: list[Settings], stamp: str, action: str = "verification") -> str:
    failed = [c for c in checks if not c.ok]
    lines = [f"# hx-gateway {action} {stamp}", "", f"Result: **{result_line(checks)}**", "",
             f"**{'ALL CHECKS PASSED' if not failed else f'{len(failed)} CHECK(S) FAILED'}** "
             f"({len(checks) - len(failed)}/{len(checks)} passed)", ""]
    for s in settings:
        lines += [f"- gateway: {s.gateway_url}/v1", f"- models: {', '.join(s.public_models)}",
                  f"- backends: {', '.join(s.backends)}"]
    lines += ["", "## Checks", "", *_table(checks)]
    if failed:
        lines += ["", "## How to fix", ""]
        lines += [f"- **{c.host}** `{c.check}`: expected {c.expected}, saw {c.seen}. Fix: {c.fix}" for c in failed]
    figures = [(c, c.figures) for c in checks if c.figures]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"- {c.host} {c.check}: {json.dumps(f)}" for c, f in figures]
    return "\n".join(lines) + "\n"


def write_evidence(root: Path, checks: list[Check], settings: list[Settings], secrets: list[str],
                   action: str = "verification") -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    bundle = root / stamp
    bundle.mkdir(parents=True, exist_ok=False)
    (bundle / "summary.md").write_text(redact(summary_markdown(checks, settings, stamp, action), secrets))
    payload = {"action": action, "timestamp": stamp, "passed": all(c.ok for c in checks) and bool(checks),
               "result": result_line(checks),
               "gateways": [s.gateway_url for s in settings], "checks": [c.as_dict() for c in checks]}
    (bundle / "checks.json").write_text(redact(json.dumps(payload, indent=2), secrets))
    return bundle


def print_outputs(checks: list[Check], settings: list[Settings], bundle: Path) -> None:
    """Pulumi-style outputs at the end of a run."""
    print("\nOutputs:")
    for s in settings:
        print(f"  gateway_url : {s.gateway_url}/v1")
        print(f"  models      : {', '.join(s.public_models)}")
    for c in checks:
        if c.check == "served_certificate_is_the_declared_one" and c.figures:
            print(f"  certificate : {c.host}: serial {c.figures['serial']}, {c.figures['days_left']} days left "
                  f"(until {c.figures['not_after'][:10]})")
    width = max((len(c.check) for c in checks), default=10)
    print("  checks      :")
    for c in checks:
        mark = "PASS" if c.ok else "FAIL"
        print(f"    {mark}  {c.host:<22} {c.check:<{width}}  {c.seen[:70] if not c.ok else ''}")
        if not c.ok:
            print(f"          expected {c.expected}; fix: {c.fix}")
    print(f"  result      : {result_line(checks)}")
    print(f"  evidence    : {bundle}")
