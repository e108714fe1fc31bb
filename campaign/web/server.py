"""Running listeners: each an ASGI app on its own address and port, all in one task group.

Contract: :func:`serve` binds every listener's socket first (an address in use is a
one-line ``CampaignError`` before anything runs), calls ``on_ready`` once every listener
accepts connections, and returns when all have stopped: after SIGINT/SIGTERM, or when
one fails (the others are stopped, and the failure is raised). uvicorn runs with access
logs off, no ``Server`` header, proxy headers ignored, and its log messages reduced to
their first line (no tracebacks, which could quote what a supporter typed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from campaign.errors import CampaignError


@dataclass(frozen=True)
class Listener:
    """One application on one address: e.g. the supporters' pages, or (later) the
    organisers' area, always on loopback."""

    name: str
    app: ASGIApp
    host: str
    port: int
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.cert_file else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


class _OneLine(logging.Handler):
    """uvicorn's messages as one line each on stderr: no traceback, no client address."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().splitlines()[0][:200]
        except Exception:  # noqa: BLE001 - a log line must never take the server down
            text = record.msg if isinstance(record.msg, str) else "log message"
        if record.exc_info and record.exc_info[0] is not None:
            text += f" ({record.exc_info[0].__name__})"
        sys.stderr.write(f"server: {text}\n")


def _quiet_logs() -> None:
    handler = _OneLine(level=logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve() handles the signals for every listener at once


def _bind(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host, listener.port))
    except OSError as err:
        sock.close()
        raise CampaignError(
            f"{listener.host}:{listener.port}: cannot listen there ({err.strerror})",
            hint="choose another --port, or stop the program that uses it",
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _config(listener: Listener) -> uvicorn.Config:
    config = uvicorn.Config(
        listener.app,
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        date_header=False,
        lifespan="off",
        ssl_certfile=str(listener.cert_file) if listener.cert_file else None,
        ssl_keyfile=str(listener.key_file) if listener.key_file else None,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return config


def serve(listeners: list[Listener], *, on_ready: Callable[[list[Listener]], None] | None = None) -> None:
    """Run every listener until SIGINT/SIGTERM. Raises CampaignError (address in use...)."""
    _quiet_logs()
    sockets = [_bind(listener) for listener in listeners]
    try:
        asyncio.run(_run(listeners, sockets, on_ready))
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


async def _run(
    listeners: list[Listener], sockets: list[socket.socket], on_ready: Callable[[list[Listener]], None] | None
) -> None:
    servers = [_Server(_config(listener)) for listener in listeners]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)

    async def announce() -> None:
        while not all(server.started for server in servers):
            if any(server.should_exit for server in servers):
                return
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready(listeners)

    try:
        async with asyncio.TaskGroup() as group:
            for server, sock in zip(servers, sockets, strict=True):
                group.create_task(_watch(server.serve(sockets=[sock]), stop))
            group.create_task(announce())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _watch(run: object, stop: Callable[[], None]) -> None:
    """Run one server; if it ends with an error, stop the others (the group re-raises)."""
    try:
        await run  # type: ignore[misc]
    except BaseException:
        stop()
        raise
