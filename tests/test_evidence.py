"""The evidence bundle: what it says, and that no secret leaves in it (issue 32: redaction)."""

from __future__ import annotations

import json

from conftest import defaults, random_key

from hx_gateway.model.settings import load_settings
from hx_gateway.proof.checks import Check
from hx_gateway.proof.evidence import write_evidence
from hx_gateway.proof.redaction import REDACTED, redact, redact_keys


def test_redact_replaces_every_occurrence_of_every_secret():
    """Breakage guarded: redaction that does nothing (issue 32)."""
    a, b = random_key(), random_key()
    assert redact(f"x {a} y {b} z {a}", [a, b, ""]) == f"x {REDACTED} y {REDACTED} z {REDACTED}"


def test_redact_keys_removes_anything_shaped_like_a_key():
    assert redact_keys("Bearer sk-abcdEFGH1234_-xyz and sk-short") == f"Bearer {REDACTED} and sk-short"
    assert redact_keys("no keys here") == "no keys here"


def test_the_bundle_never_carries_a_secret_even_when_a_check_saw_one(tmp_path):
    secret, shaped = "a-secret-not-shaped-like-a-key-42", "sk-" + "q" * 20
    checks = [Check("gw", "leaky", False, "401", f"saw {secret} and {shaped}", f"fix with {secret}"),
              Check("gw", "fine", True, "200", "HTTP 200")]
    bundle = write_evidence(tmp_path, checks, [load_settings(defaults(), "hx-api")], [secret, shaped])
    for name in ("summary.md", "checks.json"):
        text = (bundle / name).read_text()
        assert secret not in text and shaped not in text and REDACTED in text
    data = json.loads((bundle / "checks.json").read_text())
    assert data["passed"] is False and data["result"] == "FAILED"
    assert "Result: **FAILED**" in (bundle / "summary.md").read_text()


def test_a_key_shape_starts_at_eight_characters_after_sk_dash():
    assert redact_keys("sk-abcdefgh sk-abcdefg xsk-abcdefgh") == f"{REDACTED} sk-abcdefg xsk-abcdefgh"
    assert redact_keys("(sk-ABC_def-123)") == f"({REDACTED})"


def test_redact_leaves_text_without_secrets_alone():
    assert redact("nothing here", ["absent", ""]) == "nothing here"
    assert redact("", ["x"]) == ""
