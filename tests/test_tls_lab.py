"""HTTPS on the gateway in the lab, with the lab's own CA: converge, idempotence, verify over HTTPS,
clients that trust the CA, a rotated certificate shown redacted and served after the deploy, and TLS
switched off again removing what it wrote (the key first of all)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from conftest import main_pid, pyinfra, run_verify, ticket
from cryptography import x509

from hx_gateway.load import chat_body, run_load
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
        assert checks["plain_http_serves_no_model"]["ok"] and checks["ca_in_trust_store"]["ok"]
        assert f"certificate : @docker/hx-api: serial {served['figures']['serial']}, " in proof.stdout
        assert key_text.splitlines()[1] not in "".join(p.read_text() for p in bundle.rglob("*") if p.is_file())

        # The official OpenAI client, trusting the lab's CA: models, chat, stream and embeddings with its own key.
        client_key = lab_secrets["HX_CLIENT_KEY_OPEN_WEBUI"]
        lab_ca = ssl.create_default_context(cafile=str(lab_tls.ca))
        client = openai.OpenAI(base_url=f"https://{address}:4000/v1", api_key=client_key, max_retries=0,
                               http_client=openai.DefaultHttpxClient(verify=lab_ca, timeout=60))
        assert {m.id for m in client.models.list()} == {"phi3-3.8b", "llama3-8b", "emb-premium", "hx-chat"}
        chat = client.chat.completions.create(model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content
        streamed = client.chat.completions.create(model="hx-chat", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert len(client.embeddings.create(model="emb-premium", input="hi").data[0].embedding) > 0
        untrusting = openai.OpenAI(base_url=f"https://{address}:4000/v1", api_key=client_key, max_retries=0)
        with pytest.raises(openai.APIConnectionError):  # without the CA the certificate is not trusted
            untrusting.models.list()
        # TLS 1.2+ with forward secrecy and AEAD ciphers only (templates/gateway/openssl.cnf).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tls_1_1 = ssl.TLSVersion.TLSv1_1
        for weak in (_tls_at_most(tls_1_1, lab_tls.ca),
                     _tls_at_most(ssl.TLSVersion.TLSv1_2, lab_tls.ca, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")):
            with pytest.raises(ssl.SSLError), socket.create_connection((address, 4000), timeout=10) as raw:
                weak.wrap_socket(raw, server_hostname=address)
        with socket.create_connection((address, 4000), timeout=10) as raw, \
                lab_ca.wrap_socket(raw, server_hostname=address) as good:
            assert good.version() == "TLSv1.3"

        # Rotation: a new certificate from the same CA; the preview names the new serial, never the key;
        # the deploy reloads (no restart) while 8 clients run, and none of their requests fails (a request on
        # a keep-alive connection an old worker closed as it stopped is resent, as the OpenAI SDKs do).
        old_serial = served["figures"]["serial"]
        chain, key = issue(lab_tls.authority(), [address])
        lab_tls.chain.write_bytes(chain)
        write_private(lab_tls.key, key)
        serial = f"{x509.load_pem_x509_certificate(chain).serial_number:x}"
        rotated = pyinfra("--dry", "--diff", secrets_env=lab_secrets, extra_env=env)
        assert f"TLS certificate (serial {serial}, expires " in rotated.output
        assert f"certificate: serial {old_serial}, expires " in rotated.output
        assert f" -> serial {serial}, expires " in rotated.output
        markdown, _, said = ticket(lab_secrets, tmp_path / "change.md", extra_env=env)
        assert f"certificate: serial {old_serial}, expires " in markdown and f"-> serial {serial}" in markdown
        assert "reload: new workers on the new certificate" in markdown
        for text in (rotated.output, markdown, said):
            assert key.decode().splitlines()[1] not in text and key_text.splitlines()[1] not in text
        pid, stop = main_pid(), threading.Event()
        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(run_load, f"https://{address}:4000", lab_secrets["HX_MASTER_KEY"],
                               chat_body("phi3-3.8b"), 10**6, 8, max_seconds=300, ca_bundle=str(lab_tls.ca), stop=stop,
                               resend_on_closed=True)
            time.sleep(2)
            try:
                rotation = pyinfra(secrets_env=lab_secrets, extra_env=env)
            finally:
                time.sleep(3)
                stop.set()
        assert rotation.returncode == 0, rotation.output[-3000:]
        assert "Reload litellm (a new certificate" in rotation.output
        during = load.result().summary()
        assert during["errors"] == 0 and during["requests"] > 100, during
        assert main_pid() == pid  # reloaded, not restarted
        proof = run_verify(lab_secrets, tmp_path / "evidence2", extra_env=env)
        assert proof.returncode == 0, proof.stdout[-5000:]
        (bundle,) = (tmp_path / "evidence2").iterdir()
        checks = {c["check"]: c for c in json.loads((bundle / "checks.json").read_text())["checks"]}
        assert checks["served_certificate_is_the_declared_one"]["figures"]["serial"] == serial
    finally:
        off = pyinfra(secrets_env=lab_secrets)
    assert off.returncode == 0, off.output[-5000:]
    assert "Remove /etc/litellm/tls-key.pem" in off.output
    left = exec_in("hx-api", "sh", "-c", "ls /etc/litellm /usr/local/share/ca-certificates", check=False)
    assert "tls-" not in left and "hx-gateway-ca" not in left
    assert lab_tls.ca.read_text().splitlines()[1] not in exec_in("hx-api", "cat", "/etc/ssl/certs/ca-certificates.crt")



def _tls_at_most(version: ssl.TLSVersion, ca: Path, ciphers: str = "") -> ssl.SSLContext:
    """A client offering only what a modern server refuses: old protocols, or CBC/SHA-1 ciphers."""
    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():  # asking for TLS 1.1 on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
    context.set_ciphers(f"{ciphers or 'ALL'}:@SECLEVEL=0")
    return context


def test_uvicorn_serves_https_too(converged, lab_secrets, tmp_path: Path):
    """LiteLLM hands the certificate to uvicorn as well as to gunicorn: verify passes over HTTPS; a
    certificate with under 30 days left deploys with a warning."""
    env = {"HX_LAB_TLS": str(tmp_path / "tls")}
    lab_tls = ensure_lab_tls(tmp_path / "tls", [address_of("hx-api")])
    chain, key = issue(lab_tls.authority(), [address_of("hx-api")], days=20)  # under 30 days: a warning
    lab_tls.chain.write_bytes(chain)
    write_private(lab_tls.key, key)
    data = tmp_path / "group_data"
    data.mkdir()
    (data / "litellm.py").write_text('server = "uvicorn"\n')
    try:
        run = pyinfra(secrets_env=lab_secrets, extra_env=env, group_data=data)
        assert run.returncode == 0, run.output[-5000:]
        assert "@docker/hx-api: tls_certificate: expires in 19 days" in run.output
        assert "--ssl_certfile_path" in exec_in("hx-api", "systemctl", "cat", "litellm")
        assert "--run_gunicorn" not in exec_in("hx-api", "systemctl", "cat", "litellm")
        proof = run_verify(lab_secrets, tmp_path / "evidence", extra_env=env, group_data=data)
        assert proof.returncode == 0, proof.stdout[-5000:] + proof.stderr[-2000:]
        (bundle,) = (tmp_path / "evidence").iterdir()
        checks = {c["check"]: c for c in json.loads((bundle / "checks.json").read_text())["checks"]}
        assert checks["served_certificate_is_the_declared_one"]["ok"] and checks["plain_http_serves_no_model"]["ok"]
    finally:
        assert pyinfra(secrets_env=lab_secrets).returncode == 0
