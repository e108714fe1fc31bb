"""A self-signed TLS certificate for `campaign serve --lan` (one per workspace).

Contract: :func:`lan_certificate` creates ``cert.pem`` and ``key.pem`` (0600, folder 0700)
once, for the given host names and addresses, valid for 825 days, and returns their
paths with the certificate's SHA-256 fingerprint (colon-separated hex), which the
terminal shows so that supporters can compare it with the browser's warning. An
existing certificate that already names every requested host is reused; otherwise a
new one replaces it. Raises SigningError when the folder cannot be written.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from campaign.errors import SigningError
from campaign.files import write_private


@dataclass(frozen=True)
class LanCertificate:
    cert_file: Path
    key_file: Path
    fingerprint: str


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    found = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    found |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return found


def lan_certificate(folder: Path, hosts: list[str], *, organisation: str) -> LanCertificate:
    cert_file, key_file = folder / "lan.cert.pem", folder / "lan.key.pem"
    now = dt.datetime.now(dt.UTC)
    if cert_file.exists() and key_file.exists():
        try:
            existing = x509.load_pem_x509_certificate(cert_file.read_bytes())
            if set(hosts) <= _names(existing) and existing.not_valid_after_utc > now + dt.timedelta(days=7):
                return LanCertificate(cert_file, key_file, _fingerprint(existing))
        except (OSError, ValueError):
            pass
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation[:40]} signing page"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64] or "campaign"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(
            key_file,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            replace=True,
        )
        write_private(cert_file, cert.public_bytes(serialization.Encoding.PEM), replace=True)
    except OSError as err:
        raise SigningError(f"{folder}: cannot write the LAN certificate: {err.strerror}") from err
    return LanCertificate(cert_file, key_file, _fingerprint(cert))
