"""Checks of HTTPS (a gateway's, or a balancer's), from outside as a client: the certificate served is
the declared one and verifies against the CA the operator named (days left in the figures), and plain
HTTP on the same port never serves a model."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from hx_gateway.model.tls import CertificateSummary, summarize
from hx_gateway.proof.checks import Check

TLS_VALIDATION_PLAN: dict[str, str] = {
    "served_certificate_is_the_declared_one": "the gateway (or balancer) serves the declared certificate, which "
                                              "verifies against ca_bundle for the host in its URL (serial and days "
                                              "left in the figures)",
    "plain_http_serves_no_model": "plain HTTP on the gateway's port never answers with a model list",
}
CA_VALIDATION_PLAN: dict[str, str] = {
    "ca_in_trust_store": "the operator's CA (ca_bundle) is in the host's system trust store",
}
# Debian's trust store, as update-ca-certificates writes it.
TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"


def ca_marker(ca_bundle: str) -> str:
    """A line of the CA's PEM body (64 base64 characters) that no other certificate shares."""
    lines = [line for line in Path(ca_bundle).read_text().splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def trust_store_check(host: str, found: list[str] | None) -> Check:
    """`found`: what pyinfra's FindInFile saw of the CA's marker line in the trust store."""
    return Check(host, "ca_in_trust_store", bool(found), f"the CA in {TRUST_STORE}",
                 "present" if found else "absent",
                 "re-run the deploy (it installs ca_bundle and runs update-ca-certificates); is the "
                 "ca-certificates package installed?")


def served_certificate(url: str, ca_bundle: str | None) -> x509.Certificate:
    """The certificate served at `url`, after the handshake verified it (CA and host name)."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=ca_bundle)
    with socket.create_connection((parts.hostname, parts.port or 443), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")


def tls_checks(url: str, ca_bundle: str | None, declared: CertificateSummary, master_key: str, host: str
               ) -> list[Check]:
    """A gateway's (or a balancer's) HTTPS as clients see it at `url`."""
    try:
        served = summarize(served_certificate(url, ca_bundle))
        seen = served.describe()
        ok = served.serial == declared.serial
        figures = {"serial": served.serial, "not_after": served.not_after.isoformat(),
                   "days_left": served.days_left(dt.datetime.now(dt.timezone.utc))}
    except (OSError, ValueError) as error:  # ssl.SSLError is an OSError: a failed verification lands here
        ok, seen, figures = False, f"{type(error).__name__}: {error}", {}
    checks = [Check(host, "served_certificate_is_the_declared_one", ok, declared.describe(), seen,
                    "another certificate is still served: re-run the deploy (it reloads on a new one); a "
                    "verification error: ca_bundle must be the CA that signed tls_certificate", figures)]
    parts = urlsplit(url)
    plain = f"http://{parts.hostname}:{parts.port or 443}/v1/models"
    try:
        answer = httpx.get(plain, headers={"Authorization": f"Bearer {master_key}"}, timeout=10)
        served_plain = answer.status_code == 200 and "data" in answer.text
        seen = f"HTTP {answer.status_code}"
    except httpx.HTTPError as error:
        served_plain, seen = False, f"no HTTP answer ({type(error).__name__})"
    checks.append(Check(host, "plain_http_serves_no_model", not served_plain, "no model list over plain HTTP", seen,
                        "the port serves plain HTTP: check that tls_certificate and tls_key reached the server"))
    return checks
