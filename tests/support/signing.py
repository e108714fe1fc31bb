"""Signing drives in tests: a workspace with keys and an open drive, and the real
`campaign serve` started as a subprocess on a free loopback port.

    ws, drive = signing_workspace(tmp_path / "ws", allow_pseudonyms=True)
    with ServeProcess(ws, processes=1) as server:
        page = httpx.get(server.url + drive.path)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_workspace

ROOT = Path(__file__).resolve().parents[2]
KEY = "organisation-pass-1"
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("CAMPAIGN_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def signing_workspace(
    target: Path,
    *,
    ids: tuple[str, ...] = ("tj-embassy",),
    names_key: Path | None = None,
    **open_args: Any,
) -> tuple[Path, Any]:
    """A workspace with the organisation's keys and one open drive (api calls, fast)."""
    from campaign import api
    from campaign.api import signing as signing_api

    ws_path = make_workspace(target)
    ws = api.open_workspace(ws_path)
    api.keys_init(ws, KEY)
    if open_args.get("allow_pseudonyms"):
        signing_api.names_keygen(ws, names_key or target.parent / "names.key")
    drive = signing_api.open_drive(ws, signing_api.OpenRequest(letter="peace-agreement", ids=list(ids), **open_args))
    return ws_path, drive


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def chromium_or_skip() -> str:
    """Debian's Chromium: skip with a reason when it is absent, fail under CI=true."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    reason = f"{CHROMIUM} not found: install Debian's chromium (scripts/system-deps.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class ServeProcess:
    """`campaign serve` in a subprocess; its whole output is kept in ``self.output``."""

    def __init__(
        self, ws: Path, *, port: int | None = None, processes: int = 1, extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.ws = ws
        self.port = port or free_port()
        self.admin_port = free_port()
        self.args = [
            sys.executable,
            "-m",
            "campaign",
            "serve",
            "--port",
            str(self.port),
            "--processes",
            str(processes),
            *extra,
        ]
        if "--admin-port" not in extra:
            self.args += ["--admin-port", str(self.admin_port)]
        self.signing = "--admin-only" not in extra
        self.admin = "--no-admin" not in extra
        self.admin_url = ""  # http://127.0.0.1:PORT of the organisers' area
        self.admin_token = ""
        self.env = {**os.environ, "CAMPAIGN_WORKSPACE": str(ws), "CAMPAIGN_KEY_PASSPHRASE": KEY, **(env or {})}
        self.output = ""
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServeProcess:
        import queue
        import threading

        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        # One thread reads the output from the start, line by line, into a queue. (select()
        # on the pipe beside readline() misses lines already in the text buffer: when the
        # server's first lines arrived in one write, the start used to wait out its deadline.)
        lines: queue.Queue[str | None] = queue.Queue()
        self._lines: list[str] = []

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.output += line
            found = re.search(r"serving the signing page on (\S+)", line)
            if found:
                self.url = found.group(1)
            admin = re.search(r"sign in: (http://\S+)/admin/login#token=(\S+)", line)
            if admin:
                self.admin_url, self.admin_token = admin.group(1), admin.group(2)
            if (self.url or not self.signing) and (self.admin_url or not self.admin):
                self._keep_reading(lines)
                return self
        self.stop()
        raise RuntimeError(f"campaign serve did not start:\n{self.output}")

    def _keep_reading(self, lines: Any) -> None:
        """After the start, move the rest of the output into ``_lines`` as it comes (a full
        pipe would block the server)."""
        import threading

        def move() -> None:
            while (line := lines.get()) is not None:
                self._lines.append(line)

        self._mover = threading.Thread(target=move, daemon=True)
        self._mover.start()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for thread in (getattr(self, "_reader", None), getattr(self, "_mover", None)):
            if thread is not None:
                thread.join(timeout=10)
        self.output += "".join(self._lines)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        code = self.proc.returncode
        self.proc = None
        return code

    def __exit__(self, *exc: object) -> None:
        self.stop()


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


class AppClient:
    """A synchronous client for an ASGI app in this process (httpx over ASGITransport,
    one event loop, cookies kept), like a browser that does not run scripts."""

    def __init__(self, app: Any, base_url: str = "http://127.0.0.1:8470") -> None:
        import asyncio

        import httpx

        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
