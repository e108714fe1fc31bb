"""TLS faults: a server that refuses STARTTLS, a self-signed certificate, a private CA.
(The other SMTP faults live in test_send.py: 421 at greeting, 451/452 on RCPT, 552/554 on
DATA, 550 5.1.1, 554 5.7.1, resets in and after DATA, stalls, rejected AUTH.)"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import run_cli, set_smtp_port
from tests.support.smtp import Script, ScriptedServer


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.test-server.example")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def use_starttls(workspace: Path, ca_file: Path | None = None) -> None:
    config = workspace / "campaign.toml"
    text = config.read_text().replace('security = "none"', 'security = "starttls"')
    if ca_file is not None:
        text = text.replace('security = "starttls"', f'security = "starttls"\nca_file = "{ca_file}"')
    config.write_text(text)


def statuses() -> set[str]:
    return {r["status"] for r in json.loads(run_cli("log", "--json").stdout)}


def test_a_self_signed_certificate_is_refused_unless_ca_file_names_it(workspace: Path, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with ScriptedServer(Script(), tls_context=server_context(cert, key), require_starttls=True) as server:
        set_smtp_port(workspace, server.port)
        use_starttls(workspace)
        assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
        refused = run_cli("send", "--yes")
        assert refused.code == 1
        assert "TLS failed" in refused.stderr and "ca_file" in refused.stderr
        assert statuses() == {"queued"} and not server.accepted
        use_starttls(workspace, cert)
        accepted = run_cli("send", "--yes")
        assert accepted.code == 0, accepted.output
        assert len(server.accepted) == 1 and statuses() == {"sent"}


def test_a_server_without_starttls_is_refused(workspace: Path) -> None:
    with ScriptedServer(Script()) as server:
        set_smtp_port(workspace, server.port)
        use_starttls(workspace)
        assert run_cli("queue", "peace-agreement", "--to", "ohchr").code == 0
        result = run_cli("send", "--yes")
        assert result.code == 1 and "STARTTLS" in result.stderr and "clear text" in result.stderr
        assert statuses() == {"queued"} and not server.accepted


def test_the_next_run_after_a_fixed_password_sends(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_SMTP_USERNAME", "letters@campaign.example")
    monkeypatch.setenv("CAMPAIGN_SMTP_PASSWORD", "first-try")
    script = Script(auth_ok=False)
    with ScriptedServer(script, auth=True) as server:
        set_smtp_port(workspace, server.port)
        assert run_cli("queue", "peace-agreement", "--all").code == 0
        assert run_cli("send", "--yes").code == 1
        script.auth_ok = True
        assert run_cli("send", "--yes").code == 0
        assert len(server.accepted) == 5
    assert statuses() == {"sent"}


def test_plaintext_to_a_remote_host_is_refused(workspace: Path) -> None:
    config = workspace / "campaign.toml"
    config.write_text(config.read_text().replace('host = "127.0.0.1"', 'host = "smtp.provider.example"'))
    result = run_cli("send", "--yes")
    assert result.code == 1 and 'security = "none" is allowed only for a loopback host' in result.stderr
