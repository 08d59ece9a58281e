"""The lab's own CA and server certificates, made once per lab outside the repository (beside the lab's
secrets), and certificates with chosen faults for the tests (expired, another name, another key).

    python -m lab.tls DIRECTORY NAME...   a CA (ca.pem) and a certificate for NAMEs (chain.pem, key.pem)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Authority:
    certificate: x509.Certificate
    key: Key

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(common_name: str = "hx-gateway lab CA", days: int = 3650) -> Authority:
    key = new_key()
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .sign(key, hashes.SHA256()))
    return Authority(certificate, key)


def _alternative(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(ca: Authority, names: list[str], key: Key | None = None, days: int = 365,
          not_before: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A server certificate for `names` signed by `ca`: (certificate PEM, key PEM)."""
    key = key or new_key()
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    certificate = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.certificate.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
                   .add_extension(x509.SubjectAlternativeName([_alternative(n) for n in names]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                                  critical=False)
                   .sign(ca.key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem(key)


def write_private(path: Path, data: bytes) -> None:
    """Created with mode 0600 before a byte is written."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class LabTls:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def chain(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    def authority(self) -> Authority:
        """The lab's CA, to issue another certificate (a rotation)."""
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        return Authority(x509.load_pem_x509_certificate(self.ca.read_bytes()), key)  # type: ignore[arg-type]

    def knobs(self) -> dict[str, str]:
        return {"tls_certificate": str(self.chain), "tls_key": str(self.key), "ca_bundle": str(self.ca)}


def ensure_lab_tls(directory: Path, names: list[str]) -> LabTls:
    """The lab's CA and a certificate for `names`, made once (again when the names change)."""
    lab = LabTls(directory)
    names_file = directory / "names"
    if lab.ca_key.exists() and lab.chain.exists() and lab.key.exists() and names_file.exists() \
            and names_file.read_text().split() == names:
        return lab
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = make_ca()
    chain, key = issue(ca, names)
    lab.ca.write_bytes(ca.pem)
    write_private(lab.ca_key, key_pem(ca.key))
    lab.chain.write_bytes(chain)
    write_private(lab.key, key)
    names_file.write_text(" ".join(names))
    return lab


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    print(ensure_lab_tls(Path(sys.argv[1]), sys.argv[2:]).knobs())
