"""`campaign serve` as a real subprocess on loopback: privacy (nothing identifying is
stored or printed, withdrawn names are gone), HTTPS on the LAN, a clean stop."""

from __future__ import annotations

import concurrent.futures
import hashlib
import re
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.support.signing import ServeProcess, signing_workspace

PROBE_ADDRESS = "127.0.0.77"
PROBE_AGENT = "PrivacyProbe/9.9 (unique-agent-5f1c2e)"
PROBE_FORWARDED = "198.51.100.231"


def _form(html: str) -> dict[str, str]:
    return {
        "form_token": re.search(r'name="form_token" value="([^"]+)"', html).group(1),  # type: ignore[union-attr]
        "csrf": re.search(r'name="csrf" value="([^"]+)"', html).group(1),  # type: ignore[union-attr]
    }


def _client(base: str) -> Any:
    import httpx

    return httpx.Client(
        base_url=base,
        transport=httpx.HTTPTransport(local_address=PROBE_ADDRESS),
        headers={"user-agent": PROBE_AGENT, "x-forwarded-for": PROBE_FORWARDED, "x-real-ip": PROBE_FORWARDED},
        timeout=60,
    )


def _sign_one(base: str, path: str, n: int) -> tuple[str, str, str | None]:
    """(name shown, receipt, real name sealed or None)."""
    with _client(base) as client:
        page = client.get(path)
        assert page.status_code == 200
        real = None
        fields = {"lang": "en", "signature_kind": "typed", "consent": "yes", **_form(page.text)}
        if n % 4 == 0:
            real = f"Sealedreal Person{n:04d}"
            shown = f"Resident of Khujand {n}"
            fields.update(name=real, sign_as="pseudonym", pseudonym=shown, real_name=real)
        else:
            shown = f"Openname Supporter{n:04d}"
            fields.update(name=shown)
        done = client.post(path + "/sign?lang=en", data=fields, files={"_": ("", b"", "x/y")})
        assert done.status_code == 200, done.text[:1000]
        receipt = re.search(r">(campaign-sign-v1:[^<]+)<", done.text).group(1)  # type: ignore[union-attr]
        link = re.search(r'href="(/s/[^"]+/download/[^"]+)"', done.text).group(1)  # type: ignore[union-attr]
        assert client.get(link).content.startswith(b"%PDF-")
        return shown, receipt, real


def _withdraw(base: str, path: str, receipt: str) -> None:
    with _client(base) as client:
        page = client.get(path + "/withdraw")
        done = client.post(
            path + "/withdraw",
            data={"lang": "en", "receipt": receipt, **_form(page.text)},
            files={"_": ("", b"", "x/y")},
        )
        assert done.status_code == 200, done.text[:1000]


def _hits(needles: list[str], files: list[Path], texts: dict[str, str]) -> list[str]:
    found = []
    encoded = [(n, n.encode("utf-8")) for n in needles]
    for path in files:
        data = path.read_bytes()
        found += [f"{n!r} in {path}" for n, raw in encoded if raw in data]
    for label, text in texts.items():
        found += [f"{n!r} in {label}" for n, _ in encoded if n in text]
    return found


@pytest.mark.slow
def test_two_hundred_signatures_leave_no_network_identifier_anywhere(tmp_path: Path) -> None:
    ws, drive = signing_workspace(tmp_path / "ws", allow_pseudonyms=True, rate=10_000)
    scratch = tmp_path / "server-tmp"
    scratch.mkdir()
    with ServeProcess(ws, processes=2, env={"TMPDIR": str(scratch)}) as server:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda n: _sign_one(server.url, drive.path, n), range(200)))
        withdrawn = results[1::10]  # 20 supporters change their minds
        for _, receipt, _ in withdrawn:
            _withdraw(server.url, drive.path, receipt)
        code = server.stop()
    assert code == 0, server.output
    assert "stopped" in server.output
    from campaign import api
    from campaign.api import signing as signing_api

    listed = signing_api.list_drives(api.open_workspace(ws))
    assert listed[0].signed == 180
    sealed_real = [real for _, _, real in results if real]
    gone = [shown for shown, _, _ in withdrawn] + [real for _, _, real in withdrawn if real]
    needles = [PROBE_ADDRESS, PROBE_AGENT, "unique-agent-5f1c2e", PROBE_FORWARDED, *sealed_real, *gone]
    files = [p for p in [*ws.rglob("*"), *scratch.rglob("*")] if p.is_file()]
    assert _hits(needles, files, {"the server's output": server.output}) == []
    # the names that stayed are there (the search would have found them)
    kept = next(shown for shown, _, real in results if real is None and (shown, _, real) not in withdrawn)
    assert _hits([kept], files, {}) != []


def test_lan_serves_https_with_the_printed_fingerprint(tmp_path: Path) -> None:
    import httpx

    ws, drive = signing_workspace(tmp_path / "ws", ids=("ohchr",))
    with ServeProcess(ws, processes=0, extra=("--lan", "--host", "127.0.0.2")) as server:
        assert server.url.startswith("https://127.0.0.2:")
        cert = ws / ".campaign" / "lan" / "lan.cert.pem"
        assert cert.exists() and (ws / ".campaign" / "lan" / "lan.key.pem").stat().st_mode & 0o777 == 0o600
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the certificate names the IP address; httpx checks it otherwise
        with httpx.Client(verify=context) as client:
            page = client.get(server.url + drive.path + "?lang=tg")
            assert page.status_code == 200
            assert "Дар бораи огоҳии браузер" in page.text  # the warning explained in Tajik
            assert "Secure" in page.headers["set-cookie"]
        with pytest.raises(httpx.ConnectError):  # the pages are on the LAN address only
            httpx.get(server.url.replace("127.0.0.2", "127.0.0.1"), verify=False)
        # the organisers' area stays on loopback: never on the LAN address, never over the supporters' port
        assert server.admin_url == f"http://127.0.0.1:{server.admin_port}"
        assert httpx.get(server.admin_url + "/admin/login").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{server.admin_port}/admin/login")
        with httpx.Client(verify=context) as client:
            assert client.get(server.url + "/admin/login").status_code == 404
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    fingerprint = hashlib.sha256(der).hexdigest().upper()
    found = re.search(r"fingerprint: ([0-9A-F:]+)", server.output)
    assert found is not None, server.output
    shown = found.group(1)
    assert shown.replace(":", "") == fingerprint, server.output
    assert ":".join(re.findall("..", fingerprint)[:8]) in page.text
    assert "█" in server.output  # the QR code of the address
