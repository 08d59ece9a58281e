"""The operator's TLS material (certificate chain, private key, CA), read and checked on the control node
before any host changes: the key matches the certificate, the certificate names the host clients use,
it is valid now and for long enough, and its chain verifies against the CA the checks will trust.

The private key is a secret like the master key: it travels as `SecretText`, is never printed, and its
file on the control node must be readable by its owner only. What may be shown of a certificate is
`CertificateSummary` (serial, names, expiry).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from hx_gateway.model.secrets import SecretText

# Below this many days left a deploy still runs, but says the certificate must be renewed soon.
WARN_DAYS_LEFT = 30


@dataclass(frozen=True)
class CertificateSummary:
    """What a ticket may say about a certificate: never the key."""

    serial: str
    names: tuple[str, ...]
    not_after: dt.datetime

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def describe(self) -> str:
        return f"serial {self.serial}, expires {self.not_after:%Y-%m-%d}"


@dataclass(frozen=True)
class TlsMaterial:
    """What the deploy installs: the chain (leaf first), its key (secret) and the CA clients trust."""

    chain_pem: str
    key: SecretText
    ca_pem: str  # "" when the chain is trusted by the control node's system store (a public CA)
    certificate: CertificateSummary


@dataclass
class TlsCheck:
    """The outcome of `load_tls`: the material when it may be used, problems that refuse the deploy and
    warnings that do not."""

    material: TlsMaterial | None
    problems: list[str]
    warnings: list[str]


def change_of(current_pem: str | None, declared: CertificateSummary) -> str:
    """A certificate change as a ticket may show it: serials and expiry, never a byte of a key.
    `current_pem`: the host's certificate file (None when not read: a run without --diff)."""
    before = "not read (run with --diff)"
    if current_pem is not None:
        try:
            before = summarize(x509.load_pem_x509_certificates(current_pem.encode())[0]).describe()
        except (ValueError, IndexError):
            before = "none" if not current_pem else "not a certificate"
    return f"certificate: {before} -> {declared.describe()}"


def summarize(certificate: x509.Certificate) -> CertificateSummary:
    return CertificateSummary(f"{certificate.serial_number:x}", subject_names(certificate),
                              certificate.not_valid_after_utc)


def subject_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The certificate's subject alternative names (DNS names and IP addresses), as clients match them."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return (*extension.get_values_for_type(x509.DNSName),
            *(str(a) for a in extension.get_values_for_type(x509.IPAddress)))


def _read(path_text: str, knob: str, problems: list[str], private: bool = False) -> bytes | None:
    path = Path(path_text).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if not path.is_file():
            problems.append(f"{knob}: {path} is not a file; point it at the PEM file")
            return None
        if private and mode & 0o077:
            problems.append(f"{knob}: {path} has mode {mode:04o}, so others on the control node can read the "
                            f"private key; run `chmod 600 {path}`")
            return None
        return path.read_bytes()
    except OSError as error:
        problems.append(f"{knob}: {path} cannot be read ({error.strerror or type(error).__name__}); point it at the "
                        f"PEM file on the control node")
        return None


def _certificates(data: bytes, knob: str, problems: list[str]) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(data)
    except ValueError:
        found = []
    if not found:
        problems.append(f"{knob}: holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the PEM file")
    return found


def _public_key(data: bytes, problems: list[str]) -> bytes | None:
    """The key's public half (to compare with the certificate's), or None with the problem said."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        problems.append("tls_key: the private key is encrypted; the service starts unattended, so give it "
                        "unencrypted in a file only you can read (openssl pkey -in KEY -out NEW)")
        return None
    except (ValueError, AttributeError):
        problems.append("tls_key: holds no PEM private key (-----BEGIN PRIVATE KEY-----); give the key file")
        return None
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: exact (case-insensitive), or a wildcard for exactly the left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def covers(summary: CertificateSummary, host_name: str) -> bool:
    try:
        address = ipaddress.ip_address(host_name)
    except ValueError:
        return any(_name_matches(n, host_name) for n in summary.names if ":" not in n and not _is_address(n))
    return any(_is_address(n) and ipaddress.ip_address(n) == address for n in summary.names)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(ca_data: bytes | None, problems: list[str]) -> list[x509.Certificate]:
    """The roots the chain must verify against: `ca_bundle`, else the control node's system store."""
    if ca_data is not None:
        return _certificates(ca_data, "ca_bundle", problems)
    cafile = ssl.get_default_verify_paths().cafile or ssl.get_default_verify_paths().openssl_cafile
    try:
        return x509.load_pem_x509_certificates(Path(cafile).read_bytes())
    except (OSError, ValueError):
        problems.append("ca_bundle: not set, and the control node has no system trust store to verify the chain "
                        "against; set ca_bundle to the PEM file of the CA that signed the certificate")
        return []


def _chain_problem(chain: list[x509.Certificate], roots: list[x509.Certificate], host_name: str,
                   now: dt.datetime, ca_named: bool) -> str | None:
    try:
        subject = IPAddress(ipaddress.ip_address(host_name)) if _is_address(host_name) else DNSName(host_name)
        verifier = PolicyBuilder().store(Store(roots)).time(now).build_server_verifier(subject)
        verifier.verify(chain[0], chain[1:])
    except (VerificationError, ValueError) as error:
        where = "the CA in ca_bundle" if ca_named else "the control node's system trust store (ca_bundle not set)"
        return (f"tls_certificate: its chain does not verify against {where} ({error}); put the intermediate "
                f"certificates after the server certificate in tls_certificate, or set ca_bundle to the CA that "
                f"signed it")
    return None


def load_ca(ca_path: str) -> tuple[str, list[str]]:
    """`ca_bundle` alone (HTTPS served elsewhere, or not at all): its PEM text, or the problems."""
    problems: list[str] = []
    data = _read(ca_path, "ca_bundle", problems)
    if data is not None and _certificates(data, "ca_bundle", problems):
        return data.decode(), problems
    return "", problems


def load_tls(certificate_path: str, key_path: str, ca_path: str | None, host_name: str, min_days_left: int,
             now: dt.datetime | None = None) -> TlsCheck:
    """Read and check the operator's TLS files for clients reaching `host_name` (the host in the URL they
    use). Every problem names the knob and the fix."""
    now = now or dt.datetime.now(dt.timezone.utc)
    problems: list[str] = []
    warnings: list[str] = []
    chain_data = _read(certificate_path, "tls_certificate", problems)
    key_data = _read(key_path, "tls_key", problems, private=True)
    ca_data = _read(ca_path, "ca_bundle", problems) if ca_path else None
    chain = _certificates(chain_data, "tls_certificate", problems) if chain_data is not None else []
    public = _public_key(key_data, problems) if key_data is not None else None
    roots = _trusted(ca_data, problems) if not (ca_path and ca_data is None) else []
    if not chain:
        return TlsCheck(None, problems, warnings)
    leaf = chain[0]
    summary = summarize(leaf)
    leaf_public = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    if public is not None and public != leaf_public:
        problems.append(f"tls_key: does not match the certificate in tls_certificate ({summary.describe()}); give the "
                        f"key the certificate was issued for, or the certificate of this key")
    if not covers(summary, host_name):
        problems.append(f"tls_certificate: is for {', '.join(summary.names) or 'no subject alternative name'}, not "
                        f"{host_name!r}, the host clients use; issue it with {host_name} as a subject alternative "
                        f"name, or set the URL to a name it covers")
    days = summary.days_left(now)
    if leaf.not_valid_before_utc > now:
        problems.append(f"tls_certificate: is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check "
                        f"the clocks, or use a certificate valid now")
    elif days < 0:
        problems.append(f"tls_certificate: expired on {summary.not_after:%Y-%m-%d} ({summary.describe()}); renew it")
    elif days < min_days_left:
        problems.append(f"tls_certificate: expires in {days} days ({summary.not_after:%Y-%m-%d}), fewer than "
                        f"tls_min_days_left ({min_days_left}); renew it before deploying")
    elif days < WARN_DAYS_LEFT:
        warnings.append(f"tls_certificate: expires in {days} days ({summary.not_after:%Y-%m-%d}); renew it soon")
    if not problems and roots:
        chain_problem = _chain_problem(chain, roots, host_name, now, ca_data is not None)
        if chain_problem:
            problems.append(chain_problem)
    if problems or key_data is None:
        return TlsCheck(None, problems, warnings)
    return TlsCheck(TlsMaterial(chain_data.decode(), SecretText(key_data.decode()),  # type: ignore[union-attr]
                                ca_data.decode() if ca_data else "", summary), problems, warnings)
