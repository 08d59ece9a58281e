"""HTTPS on the gateway in the lab, with the lab's own CA: converge, idempotence, verify over HTTPS,
clients that trust the CA, a rotated certificate shown redacted and served after the deploy, and TLS
switched off again removing what it wrote (the key first of all)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest
from conftest import pyinfra, run_verify

from lab.lab import address_of, exec_in
from lab.tls import ensure_lab_tls, issue, write_private

pytestmark = pytest.mark.lab


def test_the_gateway_serves_https_that_verify_and_clients_trust_and_tls_off_removes_it(converged, lab_secrets,
                                                                                       tmp_path: Path):
    tls_dir = tmp_path / "tls"
    address = address_of("hx-api")
    lab_tls = ensure_lab_tls(tls_dir, [address])
    env = {"HX_LAB_TLS": str(tls_dir)}
    key_text = lab_tls.key.read_text()
    try:
        preview = pyinfra("--dry", "--diff", secrets_env=lab_secrets, extra_env=env)
        assert preview.returncode == 0, preview.output[-4000:]
        assert "TLS certificate (serial " in preview.output and "tls-key.pem (contents hidden)" in preview.output
        assert key_text.splitlines()[1] not in preview.output

        run = pyinfra(secrets_env=lab_secrets, extra_env=env)
        assert run.returncode == 0, run.output[-5000:]
        assert exec_in("hx-api", "stat", "-c", "%U:%G %a", "/etc/litellm/tls-key.pem") == "root:litellm 640"
        trusted = exec_in("hx-api", "cat", "/etc/ssl/certs/ca-certificates.crt")
        assert lab_tls.ca.read_text().splitlines()[1] in trusted  # the lab's CA is in the host's trust store
        again = pyinfra("--dry", secrets_env=lab_secrets, extra_env=env)
        assert "Plan: no changes" in again.output, again.output[-3000:]

        evidence = tmp_path / "evidence"
        proof = run_verify(lab_secrets, evidence, extra_env=env)
        assert proof.returncode == 0, proof.stdout[-5000:] + proof.stderr[-2000:]
        (bundle,) = evidence.iterdir()
        checks = {c["check"]: c for c in json.loads((bundle / "checks.json").read_text())["checks"]}
        served = checks["served_certificate_is_the_declared_one"]
        assert served["ok"] and 360 <= served["figures"]["days_left"] <= 366
        assert checks["plain_http_serves_no_model"]["ok"]
        assert key_text.splitlines()[1] not in "".join(p.read_text() for p in bundle.rglob("*") if p.is_file())

        # A client that trusts the lab's CA: models, chat, stream and embeddings with its own key.
        client_key = {"Authorization": f"Bearer {lab_secrets['HX_CLIENT_KEY_OPEN_WEBUI']}"}
        with httpx.Client(base_url=f"https://{address}:4000", verify=ssl.create_default_context(
                cafile=str(lab_tls.ca)), timeout=60, headers=client_key) as client:
            assert client.get("/v1/models").status_code == 200
            chat = client.post("/v1/chat/completions", json={"model": "phi3-3.8b",
                                                             "messages": [{"role": "user", "content": "hi"}]})
            assert chat.status_code == 200 and chat.json()["choices"]
            with client.stream("POST", "/v1/chat/completions", json={
                    "model": "phi3-3.8b", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as stream:
                assert stream.status_code == 200 and "[DONE]" in "".join(stream.iter_text())
            assert client.post("/v1/embeddings", json={"model": "emb-premium", "input": "hi"}).status_code == 200
        with pytest.raises(httpx.ConnectError):  # without the CA the certificate is not trusted
            httpx.get(f"https://{address}:4000/v1/models", headers=client_key, timeout=10)

        # Rotation: a new certificate from the same CA; the preview names the new serial, never the key.
        chain, key = issue(lab_tls.authority(), [address])
        lab_tls.chain.write_bytes(chain)
        write_private(lab_tls.key, key)
        rotated = pyinfra("--dry", "--diff", secrets_env=lab_secrets, extra_env=env)
        assert "TLS certificate (serial " in rotated.output and key.decode().splitlines()[1] not in rotated.output
        assert pyinfra(secrets_env=lab_secrets, extra_env=env).returncode == 0
        proof = run_verify(lab_secrets, tmp_path / "evidence2", extra_env=env)
        assert proof.returncode == 0, proof.stdout[-5000:]
    finally:
        off = pyinfra(secrets_env=lab_secrets)
    assert off.returncode == 0, off.output[-5000:]
    assert "Remove /etc/litellm/tls-key.pem" in off.output
    left = exec_in("hx-api", "sh", "-c", "ls /etc/litellm /usr/local/share/ca-certificates", check=False)
    assert "tls-" not in left and "hx-gateway-ca" not in left
    assert lab_tls.ca.read_text().splitlines()[1] not in exec_in("hx-api", "cat", "/etc/ssl/certs/ca-certificates.crt")

